import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { V1EndpointSlice } from '@kubernetes/client-node';
import { parseFunctionSpec } from '../spec.js';
import { endpointsOf } from './endpoints.js';
import { deploymentFor, imageDigest, initialReplicas, serviceFor } from './manifests.js';
import { readyCondition } from './status.js';

const owner = { apiVersion: 'kubefn.dev/v1alpha1', kind: 'Function', name: 'hello', uid: 'u-1' };
const digest = `sha256:${'a'.repeat(64)}`;

describe('deploymentFor', () => {
  const spec = parseFunctionSpec({
    name: 'hello',
    image: `registry.example/hello@${digest}`,
    env: { GREETING: 'hi', PRICE: '$(NOT_A_VAR)' },
    secrets: ['db', 'api-key'],
    secretEnv: { DB_PASSWORD: 'db' },
    resources: { cpu: '500m', memory: '256Mi', gpu: 1 },
    placement: { nodeSelector: { pool: 'gpu' }, tolerations: [{ key: 'gpu', operator: 'Exists', effect: 'NoSchedule' }] },
    timeout: '45s',
    scale: { min: 2, initial: 1, containerConcurrency: 4 },
    labels: { team: 'a' },
  });
  const d = deploymentFor(spec, 'fns', owner);
  const pod = d.spec!.template.spec!;
  const c = pod.containers[0]!;

  it('labels everything and is owned by the Function', () => {
    const labels = { 'app.kubernetes.io/name': 'hello', 'app.kubernetes.io/managed-by': 'kubefn', 'kubefn.dev/function': 'hello' };
    assert.deepEqual(d.metadata!.labels, labels);
    assert.deepEqual(d.spec!.template.metadata!.labels, { team: 'a', ...labels });
    assert.deepEqual(d.spec!.selector.matchLabels, { 'kubefn.dev/function': 'hello' });
    assert.deepEqual(d.metadata!.ownerReferences, [{ ...owner, controller: true, blockOwnerDeletion: true }]);
    assert.equal(d.metadata!.namespace, 'fns');
  });

  it('leaves replicas out unless asked (they belong to the autoscaler after creation)', () => {
    assert.equal('replicas' in d.spec!, false);
    assert.equal(initialReplicas(spec), 2, 'max(min 2, initial 1)');
    assert.equal(deploymentFor(spec, 'fns', owner, { replicas: 2 }).spec!.replicas, 2);
  });

  it('sets the runtime contract env, secrets, ports and probes', () => {
    const env = Object.fromEntries(c.env!.map((e) => [e.name, e.value ?? e.valueFrom]));
    assert.deepEqual(env, {
      POD_NAME: { fieldRef: { fieldPath: 'metadata.name' } },
      GREETING: 'hi',
      PRICE: '$$(NOT_A_VAR)',
      KUBEFN_FUNCTION: 'hello',
      KUBEFN_INSTANCE: { fieldRef: { fieldPath: 'metadata.name' } },
      KUBEFN_TIMEOUT_MS: '45000',
      KUBEFN_CONCURRENCY: '4',
      DB_PASSWORD: { secretKeyRef: { name: 'db', key: 'db' } },
      PORT: '8080',
      ADMIN_PORT: '8081',
      KUBEFN_HOST: '0.0.0.0',
    });
    // Each secret as the file /var/openfaas/secrets/<name>, from the key named like it (as OpenFaaS keeps them).
    assert.equal(c.envFrom, undefined);
    assert.deepEqual(c.volumeMounts, [
      { name: 'tmp', mountPath: '/tmp' },
      { name: 'openfaas-secrets', mountPath: '/var/openfaas/secrets', readOnly: true },
    ]);
    assert.deepEqual(pod.volumes, [
      { name: 'tmp', emptyDir: { sizeLimit: '256Mi' } },
      {
        name: 'openfaas-secrets',
        projected: {
          defaultMode: 0o444,
          sources: [
            { secret: { name: 'db', items: [{ key: 'db', path: 'db' }] } },
            { secret: { name: 'api-key', items: [{ key: 'api-key', path: 'api-key' }] } },
          ],
        },
      },
    ]);
    const bare = deploymentFor(parseFunctionSpec({ name: 'plain', image: 'i' }), 'fns', owner).spec!.template.spec!;
    // Without secrets, /tmp alone; never root, whatever the image's user.
    assert.deepEqual(bare.volumes, [{ name: 'tmp', emptyDir: { sizeLimit: '256Mi' } }]);
    assert.deepEqual(bare.containers[0]!.volumeMounts, [{ name: 'tmp', mountPath: '/tmp' }]);
    assert.deepEqual(bare.securityContext, { runAsNonRoot: true, runAsUser: 65534, runAsGroup: 65534, seccompProfile: { type: 'RuntimeDefault' } });
    assert.deepEqual(c.ports!.map((p) => [p.name, p.containerPort]), [['http', 8080], ['admin', 8081]]);
    assert.equal(c.image, `registry.example/hello@${digest}`);
  });

  it('probes readiness and liveness separately: /readyz for calls, /healthz with its own thresholds for restarts', () => {
    assert.deepEqual(c.readinessProbe, { httpGet: { path: '/readyz', port: 8081 }, periodSeconds: 1, timeoutSeconds: 1, failureThreshold: 1 });
    assert.deepEqual(c.livenessProbe, { httpGet: { path: '/healthz', port: 8081 }, periodSeconds: 2, timeoutSeconds: 2, failureThreshold: 3 });
    // A wedged replica is restarted within seconds, not the 30 s of the defaults (10 s x 3).
    const p = c.livenessProbe!;
    assert.ok(p.periodSeconds! * p.failureThreshold! + p.timeoutSeconds! <= 10);
    // Liveness waits for the runtime to answer once, so a slow handler import is not a wedge.
    assert.deepEqual(c.startupProbe, { httpGet: { path: '/healthz', port: 8081 }, periodSeconds: 1, timeoutSeconds: 1, failureThreshold: 60 });
    assert.notDeepEqual(c.livenessProbe!.httpGet, c.readinessProbe!.httpGet);
  });

  it('maps resources, placement, grace period and security', () => {
    const limits = { cpu: '500m', memory: '256Mi', 'nvidia.com/gpu': '1' };
    assert.deepEqual(c.resources, { limits, requests: limits });
    assert.deepEqual(pod.nodeSelector, { pool: 'gpu' });
    assert.deepEqual(pod.tolerations, [{ key: 'gpu', operator: 'Exists', effect: 'NoSchedule' }]);
    assert.equal(pod.enableServiceLinks, false);
    assert.equal(pod.automountServiceAccountToken, false, 'no service-account token in a function pod');
    assert.equal(pod.terminationGracePeriodSeconds, 58, 'the preStop sleep 3 s + timeout 45 s + 10 s');
    assert.deepEqual(c.lifecycle, { preStop: { sleep: { seconds: 3 } } }, 'serves while its endpoint removal reaches the gateways');
    assert.equal(c.securityContext!.allowPrivilegeEscalation, false);
  });

  it('runs a function that names a ServiceAccount as it, with its token; refuses the platform\'s own', () => {
    const own = deploymentFor(parseFunctionSpec({ name: 'lister', image: 'i', serviceAccount: 'pod-reader' }), 'fns', owner).spec!.template.spec!;
    assert.equal(own.serviceAccountName, 'pod-reader');
    assert.equal(own.automountServiceAccountToken, true);
    assert.throws(() => parseFunctionSpec({ name: 'sneaky', image: 'i', serviceAccount: 'kubefn-gateway' }), /platform's own service accounts/);
  });

  it('omits what the spec does not set', () => {
    const bare = deploymentFor(parseFunctionSpec({ name: 'bare', image: 'x' }), 'fns', owner);
    const bc = bare.spec!.template.spec!.containers[0]!;
    assert.equal(bc.resources, undefined);
    assert.equal(bc.envFrom, undefined);
    assert.equal(bare.spec!.template.spec!.nodeSelector, undefined);
    assert.equal(bare.spec!.template.spec!.terminationGracePeriodSeconds, 43);
  });

  it('pulls with the platform-wide Secrets, then the spec\'s own, each once', () => {
    const s = parseFunctionSpec({ name: 'p', image: 'x', imagePullSecrets: ['team', 'shared'] });
    const pod = deploymentFor(s, 'fns', owner, { imagePullSecrets: ['shared'] }).spec!.template.spec!;
    assert.deepEqual(pod.imagePullSecrets, [{ name: 'shared' }, { name: 'team' }]);
    assert.equal(deploymentFor(parseFunctionSpec({ name: 'q', image: 'x' }), 'fns', owner).spec!.template.spec!.imagePullSecrets, undefined);
  });

  it('keeps a user POD_NAME and does not add a second one', () => {
    const s = parseFunctionSpec({ name: 'p', image: 'x', env: { POD_NAME: 'mine' } });
    const env = deploymentFor(s, 'fns', owner).spec!.template.spec!.containers[0]!.env!;
    assert.deepEqual(env.filter((e) => e.name === 'POD_NAME'), [{ name: 'POD_NAME', value: 'mine' }]);
  });
});

describe('serviceFor', () => {
  it('is a ClusterIP on port 80 to the http port, owned by the Function', () => {
    const s = serviceFor(parseFunctionSpec({ name: 'hello', image: 'x' }), 'fns', owner);
    assert.equal(s.spec!.type, 'ClusterIP');
    assert.deepEqual(s.spec!.ports, [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }]);
    assert.deepEqual(s.spec!.selector, { 'kubefn.dev/function': 'hello' });
    assert.equal(s.metadata!.ownerReferences![0]!.uid, 'u-1');
  });
});

describe('imageDigest', () => {
  it('reads the digest of a pinned reference only', () => {
    assert.equal(imageDigest(`r/x@${digest}`), digest);
    assert.equal(imageDigest('r/x:1.0'), undefined);
    assert.equal(imageDigest(undefined), undefined);
  });
});

describe('endpointsOf', () => {
  it('takes every ready endpoint of the slices, pod name as id', () => {
    const slice = (endpoints: object[]): V1EndpointSlice => ({ addressType: 'IPv4', endpoints } as V1EndpointSlice);
    const eps = endpointsOf([
      slice([
        { addresses: ['10.0.0.2'], conditions: { ready: true }, targetRef: { kind: 'Pod', name: 'hello-b' } },
        { addresses: ['10.0.0.3'], conditions: { ready: false }, targetRef: { kind: 'Pod', name: 'hello-c' } },
      ]),
      slice([{ addresses: ['fd00::1'], conditions: {}, targetRef: { kind: 'Pod', name: 'hello-a' } }]),
    ]);
    assert.deepEqual(eps, [
      { id: 'hello-a', url: 'http://[fd00::1]:8080', adminUrl: 'http://[fd00::1]:8081' },
      { id: 'hello-b', url: 'http://10.0.0.2:8080', adminUrl: 'http://10.0.0.2:8081' },
    ]);
  });
});

describe('readyCondition', () => {
  const now = new Date('2025-01-01T00:00:00.500Z');
  const dep = (replicas: number, ready: number) => ({ spec: { replicas, selector: {}, template: {} }, status: { readyReplicas: ready } });
  it('is True when a replica is ready or when scaled to zero, False while none is', () => {
    assert.equal(readyCondition({}, dep(2, 1), undefined, now).reason, 'Ready');
    assert.equal(readyCondition({}, dep(0, 0), undefined, now).reason, 'ScaledToZero');
    const c = readyCondition({}, dep(2, 0), undefined, now);
    assert.deepEqual([c.status, c.reason, c.lastTransitionTime], ['False', 'ReplicasNotReady', '2025-01-01T00:00:00Z']);
  });
  it('keeps lastTransitionTime while the status stays', () => {
    const previous = { conditions: [{ type: 'Ready', status: 'True' as const, reason: 'Ready', message: '', lastTransitionTime: '2024-12-31T00:00:00Z' }] };
    assert.equal(readyCondition(previous, dep(3, 3), undefined, now).lastTransitionTime, '2024-12-31T00:00:00Z');
    assert.equal(readyCondition(previous, dep(3, 0), undefined, now).lastTransitionTime, '2025-01-01T00:00:00Z');
  });
});
