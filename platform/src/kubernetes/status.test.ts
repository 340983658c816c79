import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { V1Deployment, V1Pod } from '@kubernetes/client-node';
import { rolloutState } from '../rollout.js';
import { formatLoadFailure } from '../runtime-contract.js';
import { parseFunctionSpec } from '../spec.js';
import { deploymentFor, kubefnAnnotations } from './manifests.js';
import { functionStatusOf, loadErrorOf, unschedulableOf, type FunctionResource } from './status.js';

const owner = { apiVersion: 'kubefn.dev/v1alpha1', kind: 'Function', name: 'hello', uid: 'u-1' };
const spec = parseFunctionSpec({ name: 'hello', image: 'registry.example/hello:v2' });

const fnAt = (generation: number, observed: number): FunctionResource => ({
  metadata: { name: 'hello', generation, creationTimestamp: new Date('2026-01-01T00:00:00Z') },
  status: { observedGeneration: observed },
});

/** The Deployment as the API server would have it after kubefn applied `applied`, with `status`. */
function deployment(applied: number, status: NonNullable<V1Deployment['status']>, replicas = 1): V1Deployment {
  const d = deploymentFor(spec, 'fns', owner, { generation: applied });
  d.metadata!.generation = 4;
  d.spec!.replicas = replicas;
  d.status = { observedGeneration: 4, ...status };
  return d;
}

const rollout = (fn: FunctionResource, d: V1Deployment | undefined) => {
  const s = functionStatusOf(fn, spec, d);
  return { s, state: rolloutState({ ...s, updatedReplicas: s.updatedReplicas!, generation: s.generation!, observedGeneration: s.observedGeneration! }).state };
};

describe('functionStatusOf: the rollout of a Function', () => {
  it('counts only ready pods that can be of the current template', () => {
    // One old ready pod and one new ready pod: at least 1 of the 2 ready runs the new spec.
    const { s, state } = rollout(fnAt(3, 3), deployment(3, { replicas: 2, updatedReplicas: 1, readyReplicas: 2 }));
    assert.deepEqual([s.readyReplicas, s.updatedReplicas, s.generation, s.observedGeneration], [2, 1, 3, 3]);
    assert.equal(state, 'progressing', 'the old pod still answers');
    assert.equal(rollout(fnAt(3, 3), deployment(3, { replicas: 1, updatedReplicas: 1, readyReplicas: 1 })).state, 'done');
  });

  it('is not applied until the controller wrote this generation and the Deployment controller observed it', () => {
    const ready = { replicas: 1, updatedReplicas: 1, readyReplicas: 1 };
    assert.equal(rollout(fnAt(3, 2), deployment(3, ready)).s.observedGeneration, 2, 'the Function status is behind');
    assert.equal(rollout(fnAt(3, 3), deployment(2, ready)).s.observedGeneration, 2, 'the Deployment is from the last generation');
    const unobserved = deployment(3, { ...ready, observedGeneration: 3 });
    const behind = rollout(fnAt(3, 3), unobserved);
    assert.deepEqual([behind.s.observedGeneration, behind.s.updatedReplicas, behind.state], [2, 0, 'progressing']);
  });

  it('is done at zero once the spec is applied: the next call starts the new version', () => {
    assert.equal(rollout(fnAt(5, 5), deployment(5, { replicas: 0 }, 0)).state, 'done');
    assert.equal(rollout(fnAt(5, 4), deployment(4, { replicas: 0 }, 0)).state, 'progressing');
  });
});

describe('loadErrorOf', () => {
  const d = deployment(3, { replicas: 1, updatedReplicas: 1, readyReplicas: 0 });
  const revision = d.spec!.template.metadata!.annotations![kubefnAnnotations.specRevision]!;
  const line = formatLoadFailure({ stage: 'import', message: 'boom', location: 'handler.js:4:7' });
  const pod = (rev: string, terminated: { message?: string; exitCode: number }, where: 'state' | 'lastState'): V1Pod => ({
    metadata: { name: `hello-${rev}`, annotations: { [kubefnAnnotations.specRevision]: rev } },
    status: { containerStatuses: [{ name: 'function', ready: false, restartCount: 1, image: '', imageID: '', [where]: { terminated } }] },
  });

  it("reads the load-failed line from a current pod's termination message, now or from its last run", () => {
    for (const where of ['state', 'lastState'] as const) {
      const e = loadErrorOf('hello', d, [pod(revision, { exitCode: 78, message: `${line}\n` }, where)]);
      assert.deepEqual([e?.code, e?.message, e?.location], ['LOAD_FAILED', 'the handler module threw while loading: boom', 'handler.js:4:7']);
    }
  });

  it('ignores pods of another template and terminations without the line', () => {
    assert.equal(loadErrorOf('hello', d, [pod('0ldrevision', { exitCode: 78, message: line }, 'lastState')]), undefined);
    assert.equal(loadErrorOf('hello', d, [pod(revision, { exitCode: 137, message: 'OOMKilled' }, 'lastState')]), undefined);
  });
});

describe('deploymentFor: what a rollout is read from', () => {
  it('annotates the generation on the Deployment and a template hash on the pods, and falls back to logs for termination messages', () => {
    const a = deploymentFor(spec, 'fns', owner, { generation: 7 });
    assert.equal(a.metadata!.annotations![kubefnAnnotations.functionGeneration], '7');
    assert.equal(a.spec!.template.spec!.containers[0]!.terminationMessagePolicy, 'FallbackToLogsOnError');
    const revision = (s: typeof spec) => deploymentFor(s, 'fns', owner, { generation: 1 }).spec!.template.metadata!.annotations![kubefnAnnotations.specRevision];
    assert.match(revision(spec)!, /^[0-9a-f]{16}$/);
    assert.equal(revision(spec), deploymentFor(spec, 'fns', owner, { generation: 9 }).spec!.template.metadata!.annotations![kubefnAnnotations.specRevision], 'the generation alone does not roll pods');
    assert.equal(revision({ ...spec, scale: { ...spec.scale, max: 50 } }), revision(spec), 'scale bounds do not roll pods');
    assert.notEqual(revision({ ...spec, image: 'registry.example/hello:v3' }), revision(spec));
  });
});

describe('unschedulableOf', () => {
  it('counts the pods the scheduler marked Unschedulable, and not those being deleted or placed', () => {
    const cond = (status: string, reason?: string) => ({ status: { conditions: [{ type: 'PodScheduled', status, ...(reason ? { reason } : {}) }] } });
    const pods = [
      cond('False', 'Unschedulable'),
      cond('False', 'Unschedulable'),
      { ...cond('False', 'Unschedulable'), metadata: { deletionTimestamp: new Date() } },
      cond('True'),
      cond('False', 'SchedulingGated'),
      {},
    ];
    assert.equal(unschedulableOf(pods), 2);
    assert.equal(unschedulableOf([]), 0);
  });
});
