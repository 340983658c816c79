// The Function CRD on a real control plane (kube-apiserver built from k8s.io/kubernetes, etcd from
// Debian): the API server accepts it, applies its defaults, enforces its rules, prints its columns.
// Runs first on the shared cluster of cluster.test.ts: it creates the CRD itself, so it removes
// one left by an earlier suite (and with it every Function) before it starts.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Agent, fetch } from 'undici';
import { activationCondition, functionCrd, parseFunctionSpec } from '@kubefn/platform';
import { waitFor } from '@kubefn/platform/testing';
import type { TestCluster } from '../support/cluster.js';
import type { ControlPlane } from '../support/control-plane.js';

const namespace = 'kubefn-crd';
const functions = `/apis/kubefn.dev/v1alpha1/namespaces/${namespace}/functions`;

let sharedCluster: () => TestCluster;

/** Registers the suite on the cluster `cluster()` returns once the enclosing suite has started it. */
export function functionCrdCases(cluster: () => TestCluster): void {
  sharedCluster = cluster;
  describe('Function CRD on a real kube-apiserver', suite);
}

function suite(): void {
  let cp: ControlPlane;
  let agent: Agent;

  before(async () => {
    const cluster = sharedCluster();
    cp = cluster.cp;
    await cluster.removeFunctionCrd();
    await cluster.createNamespace(namespace);
    agent = new Agent({ connect: { ca: cp.ca } });
  });

  after(async () => {
    await agent?.close();
  });

  async function api(method: string, path: string, body?: unknown, accept?: string): Promise<{ status: number; json: Record<string, unknown> }> {
    const headers: Record<string, string> = { authorization: `Bearer ${cp.token}`, 'content-type': 'application/json' };
    if (accept) headers.accept = accept;
    const res = await fetch(cp.server + path, { method, headers, body: body === undefined ? null : JSON.stringify(body), dispatcher: agent });
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  }

  it('accepts the CRD on a server-side dry run, then creates it and reports it established', { timeout: 120_000 }, async () => {
    const dry = await api('POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions?dryRun=All', functionCrd());
    assert.equal(dry.status, 201, JSON.stringify(dry.json));
    const created = await api('POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', functionCrd());
    assert.equal(created.status, 201, JSON.stringify(created.json));
    await waitFor(
      async () => {
        const crd = await api('GET', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions/functions.kubefn.dev');
        const conditions = (crd.json.status as { conditions?: { type: string; status: string }[] } | undefined)?.conditions ?? [];
        return conditions.some((c) => c.type === 'Established' && c.status === 'True');
      },
      { timeoutMs: 60_000, what: 'the CRD established' },
    );
    await waitFor(async () => (await api('GET', functions)).status === 200, { timeoutMs: 60_000, what: 'the functions resource served' });
  });

  it('fills in the same defaults as parseFunctionSpec', { timeout: 60_000 }, async () => {
    const image = `registry.example/hello@sha256:${'a'.repeat(64)}`;
    const res = await api('POST', functions, { apiVersion: 'kubefn.dev/v1alpha1', kind: 'Function', metadata: { name: 'hello' }, spec: { image } });
    assert.equal(res.status, 201, JSON.stringify(res.json));
    const { name: _name, ...expected } = parseFunctionSpec({ name: 'hello', image });
    assert.deepEqual(res.json.spec, expected);
  });

  it('refuses what parseFunctionSpec refuses: scale.min > scale.max, a bad name, a bad trigger', { timeout: 60_000 }, async () => {
    const fn = (name: string, spec: unknown) => ({ apiVersion: 'kubefn.dev/v1alpha1', kind: 'Function', metadata: { name }, spec });
    const minMax = await api('POST', functions, fn('minmax', { image: 'x', scale: { min: 5, max: 2 } }));
    assert.equal(minMax.status, 422);
    assert.match(String(minMax.json.message), /spec\.scale\.min.*must be <= scale\.max/);
    const badName = await api('POST', functions, fn('Not_A_Name', { image: 'x' }));
    assert.equal(badName.status, 422);
    const nats = await api('POST', functions, fn('natsless', { image: 'x', triggers: [{ type: 'nats' }] }));
    assert.equal(nats.status, 422);
    assert.match(String(nats.json.message), /is required for a nats trigger/);
  });

  it('prints its columns, status included, for kubectl get', { timeout: 60_000 }, async () => {
    const status = await api('PUT', `${functions}/hello/status`, {
      apiVersion: 'kubefn.dev/v1alpha1',
      kind: 'Function',
      metadata: { name: 'hello', resourceVersion: ((await api('GET', `${functions}/hello`)).json.metadata as { resourceVersion: string }).resourceVersion },
      status: {
        replicas: 2,
        readyReplicas: 1,
        observedGeneration: 1,
        conditions: [
          { type: 'Ready', status: 'True', reason: 'Ready', message: 'ok', lastTransitionTime: new Date().toISOString().replace(/\.\d+Z$/, 'Z') },
          // As the controller writes a stalled activation (FunctionStatus.activation).
          activationCondition({ reason: 'no replica became ready within 4.2 s', since: new Date().toISOString() }),
        ],
      },
    });
    assert.equal(status.status, 200, JSON.stringify(status.json));
    const table = await api('GET', functions, undefined, 'application/json;as=Table;v=v1;g=meta.k8s.io');
    assert.equal(table.status, 200);
    const columns = (table.json.columnDefinitions as { name: string }[]).map((c) => c.name);
    assert.deepEqual(columns, ['Name', 'Ready', 'Replicas', 'Status', 'Stalled', 'Image', 'Digest', 'Age']);
    const row = (table.json.rows as { cells: unknown[] }[])[0]!.cells;
    assert.deepEqual(row.slice(0, 5), ['hello', 1, 2, 'True', 'no replica became ready within 4.2 s']);
    const conditions = ((await api('GET', `${functions}/hello`)).json.status as { conditions: { type: string }[] }).conditions;
    assert.deepEqual(conditions.map((c) => c.type), ['Ready', 'ActivationStalled'], 'the schema kept the condition');
  });
}
