// The kubernetes driver against a real control plane (kube-apiserver, controller-manager with its
// garbage collector and EndpointSlice controller, scheduler): the objects it writes, server-side
// apply leaving replicas to the scaler, status, removal by owner references, endpoints from
// EndpointSlices. No pod of these functions ever runs: the shared cluster's node does not match
// their nodeSelector (pool: fns), and by-kubectl starts at zero.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
// Types only: the client itself is loaded through the driver's loader, which fills in what its
// undici needs on Node 20 before it loads.
import type { AppsV1Api, CoreV1Api, CustomObjectsApi, KubeConfig, V1PodSpec } from '@kubernetes/client-node';
import {
  ConfigMapWatch,
  KubernetesDriver,
  LeaderElection,
  parseFunctionSpec,
  type Endpoint,
  type KubernetesClient,
} from '@kubefn/platform';
import { expectCode, waitFor } from '@kubefn/platform/testing';
import type { TestCluster } from '../support/cluster.js';
import type { ControlPlane } from '../support/control-plane.js';
import { startTcpProxy } from '../support/tcp-proxy.js';

const namespace = 'kubefn-test';
const image = `registry.example/hello@sha256:${'a'.repeat(64)}`;
const fnApi = { group: 'kubefn.dev', version: 'v1alpha1', namespace, plural: 'functions' };

let sharedCluster: () => TestCluster;

/** Registers the suite on the cluster `cluster()` returns once the enclosing suite has started it. */
export function kubernetesDriverCases(cluster: () => TestCluster): void {
  sharedCluster = cluster;
  describe('kubernetes driver on a real control plane', suite);
}

function suite(): void {
  let cluster: TestCluster;
  let cp: ControlPlane;
  let k8s: KubernetesClient;
  let kc: KubeConfig;
  let apps: AppsV1Api;
  let core: CoreV1Api;
  let custom: CustomObjectsApi;
  let driver: KubernetesDriver;
  const warnings: string[] = [];

  before(async () => {
    cluster = sharedCluster();
    await cluster.installFunctionCrd();
    await cluster.createNamespace(namespace);
    ({ cp, k8s, kc } = cluster);
    apps = kc.makeApiClient(k8s.AppsV1Api);
    core = kc.makeApiClient(k8s.CoreV1Api);
    custom = kc.makeApiClient(k8s.CustomObjectsApi);
    driver = await KubernetesDriver.open({ kubeconfig: cp.kubeconfig, namespace, onWarning: (m, e) => warnings.push(`${m}: ${String(e)}`) });
    // hello names it: a deploy naming a missing secret is refused.
    await driver.secrets.create('db', Buffer.from('x'));
  });

  after(async () => {
    await driver?.close();
    if (warnings.length) console.log(`# driver warnings:\n# ${warnings.join('\n# ')}`);
  });

  const readDeployment = (name: string) => apps.readNamespacedDeployment({ name, namespace });

  it('deploy creates a Function, and a Deployment and a Service it owns', { timeout: 60_000 }, async () => {
    const status = await driver.deploy(
      parseFunctionSpec({
        name: 'hello',
        image,
        env: { GREETING: 'hi' },
        secrets: ['db'],
        resources: { cpu: '250m', memory: '128Mi' },
        placement: { nodeSelector: { pool: 'fns' } },
        timeout: '20s',
        scale: { min: 2, initial: 1, containerConcurrency: 3 },
      }),
    );
    assert.equal(status.spec.name, 'hello');
    assert.equal(status.replicas, 2, 'created with max(min, initial)');
    assert.equal(status.readyReplicas, 0);
    assert.ok(!Number.isNaN(Date.parse(status.createdAt)));

    const fn = (await custom.getNamespacedCustomObject({ ...fnApi, name: 'hello' })) as { metadata: { uid: string }; spec: { image: string } };
    assert.equal(fn.spec.image, image);
    const d = await readDeployment('hello');
    const svc = await core.readNamespacedService({ name: 'hello', namespace });
    for (const obj of [d, svc]) {
      const ref = obj.metadata?.ownerReferences?.[0];
      assert.equal(ref?.uid, fn.metadata.uid, `${obj.kind ?? 'object'} owned by the Function`);
      assert.equal(ref?.kind, 'Function');
      assert.equal(ref?.controller, true);
      assert.equal(obj.metadata?.labels?.['app.kubernetes.io/managed-by'], 'kubefn');
    }
    assert.equal(d.spec?.replicas, 2);
    const pod = d.spec!.template.spec!;
    const c = pod.containers[0]!;
    assert.equal(pod.enableServiceLinks, false);
    assert.equal(pod.terminationGracePeriodSeconds, 33, 'the preStop sleep 3 s + timeout 20 s + 10 s');
    assert.equal(pod.automountServiceAccountToken, false);
    assert.deepEqual(pod.nodeSelector, { pool: 'fns' });
    const env = Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value ?? e.valueFrom?.fieldRef?.fieldPath]));
    assert.equal(env.GREETING, 'hi');
    assert.equal(env.PORT, '8080');
    assert.equal(env.ADMIN_PORT, '8081');
    assert.equal(env.KUBEFN_HOST, '0.0.0.0');
    assert.equal(env.KUBEFN_CONCURRENCY, '3');
    assert.equal(env.KUBEFN_INSTANCE, 'metadata.name');
    assert.deepEqual(d.spec?.template.spec?.volumes?.find((v) => v.projected)?.projected?.sources?.map((s) => s.secret?.name), ['db']);
    assert.equal(c.readinessProbe?.httpGet?.path, '/readyz');
    assert.equal(c.readinessProbe?.httpGet?.port, 8081);
    assert.equal(c.livenessProbe?.httpGet?.path, '/healthz');
    assert.deepEqual(c.resources?.limits, { cpu: '250m', memory: '128Mi' });
    assert.equal(svc.spec?.type, 'ClusterIP');
    assert.deepEqual(svc.spec?.ports?.map((p) => [p.name, p.port, p.targetPort]), [['http', 80, 8080]]);

    assert.equal((await driver.get('hello')).replicas, 2);
    assert.ok((await driver.list()).some((s) => s.spec.name === 'hello'));
  });

  it('writes the status: observedGeneration, replicas, digest, Ready condition', { timeout: 60_000 }, async () => {
    const fn = await waitFor(
      async () => {
        const f = (await custom.getNamespacedCustomObject({ ...fnApi, name: 'hello' })) as {
          metadata: { generation: number };
          status?: { observedGeneration?: number; replicas?: number; imageDigest?: string; url?: string; conditions?: { type: string; status: string; reason: string }[] };
        };
        return f.status?.observedGeneration === f.metadata.generation ? f : undefined;
      },
      { what: 'status.observedGeneration = metadata.generation' },
    );
    assert.equal(fn.status?.replicas, 2);
    assert.equal(fn.status?.imageDigest, `sha256:${'a'.repeat(64)}`);
    assert.equal(fn.status?.url, `http://kubefn-gateway.${namespace}.svc:8080/function/hello`, 'through the gateway, not the function\'s own Service');
    const ready = fn.status?.conditions?.find((c) => c.type === 'Ready');
    assert.deepEqual([ready?.status, ready?.reason], ['False', 'ReplicasNotReady'], 'no node, so no replica is ready');
  });

  it('redeploying the same spec changes nothing', { timeout: 60_000 }, async () => {
    const spec = (await driver.get('hello')).spec;
    const before = await readDeployment('hello');
    const fnBefore = (await custom.getNamespacedCustomObject({ ...fnApi, name: 'hello' })) as { metadata: { resourceVersion: string } };
    await driver.deploy(spec);
    const afterDeploy = await readDeployment('hello');
    const fnAfter = (await custom.getNamespacedCustomObject({ ...fnApi, name: 'hello' })) as { metadata: { resourceVersion: string } };
    assert.equal(afterDeploy.metadata?.resourceVersion, before.metadata?.resourceVersion, 'Deployment untouched');
    assert.equal(fnAfter.metadata.resourceVersion, fnBefore.metadata.resourceVersion, 'Function untouched');
  });

  it('scale() goes through the scale subresource and a later deploy does not reset it', { timeout: 60_000 }, async () => {
    await driver.scale('hello', 3);
    const scaled = await readDeployment('hello');
    assert.equal(scaled.spec?.replicas, 3);
    assert.ok(
      scaled.metadata?.managedFields?.some((m) => m.subresource === 'scale' && m.manager === 'kubefn-scale'),
      'a managedFields entry of the scale subresource',
    );
    assert.equal((await driver.get('hello')).replicas, 3);

    const spec = (await driver.get('hello')).spec;
    await driver.deploy({ ...spec, env: { GREETING: 'hello again' } });
    const redeployed = await readDeployment('hello');
    assert.equal(redeployed.spec?.replicas, 3, 'replicas kept');
    const env = redeployed.spec!.template.spec!.containers[0]!.env!;
    assert.equal(env.find((e) => e.name === 'GREETING')?.value, 'hello again');

    await driver.scale('hello', 1000);
    assert.equal((await readDeployment('hello')).spec?.replicas, 10, 'clamped to scale.max');
    await expectCode(driver.scale('hello', -1), 'BAD_REQUEST');
    await expectCode(driver.scale('hello', 1.5), 'BAD_REQUEST');
  });

  it('a field dropped from the spec is dropped from the Deployment', { timeout: 60_000 }, async () => {
    const spec = (await driver.get('hello')).spec;
    const { env: _env, ...withoutEnv } = spec;
    await driver.deploy(withoutEnv);
    const d = await readDeployment('hello');
    assert.equal(d.spec!.template.spec!.containers[0]!.env!.find((e) => e.name === 'GREETING'), undefined);
    assert.equal(d.spec?.replicas, 10, 'replicas still kept');
  });

  it('a deleted Service is put back at once (the controller watches Services)', { timeout: 60_000 }, async () => {
    const before = await core.readNamespacedService({ name: 'hello', namespace });
    await core.deleteNamespacedService({ name: 'hello', namespace });
    const again = await waitFor(
      async () => {
        const svc = await core.readNamespacedService({ name: 'hello', namespace }).catch(() => undefined);
        return svc && svc.metadata?.uid !== before.metadata?.uid ? svc : undefined;
      },
      { what: 'the Service of hello made again', timeoutMs: 20_000 },
    );
    assert.deepEqual(again.spec?.selector, before.spec?.selector);
  });

  it('a Function created through the API (kubectl apply) is reconciled into a Deployment', { timeout: 60_000 }, async () => {
    await custom.createNamespacedCustomObject({
      ...fnApi,
      body: { apiVersion: 'kubefn.dev/v1alpha1', kind: 'Function', metadata: { name: 'by-kubectl' }, spec: { image, scale: { initial: 0 } } },
    });
    const d = await waitFor(() => readDeployment('by-kubectl'), { what: 'the Deployment of by-kubectl' });
    assert.equal(d.spec?.replicas, 0);
    await waitFor(() => core.readNamespacedService({ name: 'by-kubectl', namespace }), { what: 'the Service of by-kubectl' });
    const got = await waitFor(() => driver.get('by-kubectl'), { what: 'by-kubectl in the cache' });
    assert.equal(got.spec.image, image);
    await waitFor(
      async () => {
        const f = (await custom.getNamespacedCustomObject({ ...fnApi, name: 'by-kubectl' })) as { status?: { conditions?: { reason: string }[] } };
        return f.status?.conditions?.[0]?.reason === 'ScaledToZero';
      },
      { what: 'by-kubectl Ready with reason ScaledToZero' },
    );
  });

  it('endpoints() follows the EndpointSlices of the Service', { timeout: 60_000 }, async () => {
    const discovery = kc.makeApiClient(k8s.DiscoveryV1Api);
    // The EndpointSlice controller copies the Service's labels onto its (empty, no pods) slice:
    // that is what lets the driver watch only managed-by=kubefn slices.
    await waitFor(
      async () => {
        const slices = await discovery.listNamespacedEndpointSlice({ namespace, labelSelector: 'kubernetes.io/service-name=hello' });
        return slices.items.some((s) => s.metadata?.labels?.['app.kubernetes.io/managed-by'] === 'kubefn');
      },
      { what: "the EndpointSlice controller's slice for hello, with the Service's labels" },
    );
    const set = driver.endpoints('hello');
    assert.deepEqual(set.current(), []);
    const seen: (readonly Endpoint[])[] = [];
    const unsubscribe = set.subscribe((e) => seen.push(e));
    // What the EndpointSlice controller writes once a pod is ready.
    await discovery.createNamespacedEndpointSlice({
      namespace,
      body: {
        metadata: { name: 'hello-manual', labels: { 'kubernetes.io/service-name': 'hello', 'app.kubernetes.io/managed-by': 'kubefn' } },
        addressType: 'IPv4',
        ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
        endpoints: [
          { addresses: ['10.1.0.5'], conditions: { ready: true }, targetRef: { kind: 'Pod', name: 'hello-abc', namespace } },
          { addresses: ['10.1.0.6'], conditions: { ready: false }, targetRef: { kind: 'Pod', name: 'hello-def', namespace } },
        ],
      },
    });
    await waitFor(() => set.current().length === 1, { what: 'one ready endpoint' });
    assert.deepEqual(set.current(), [{ id: 'hello-abc', url: 'http://10.1.0.5:8080', adminUrl: 'http://10.1.0.5:8081' }]);
    assert.equal(seen.at(-1)?.length, 1, 'subscribers hear about it');
    await discovery.deleteNamespacedEndpointSlice({ name: 'hello-manual', namespace });
    await waitFor(() => set.current().length === 0, { what: 'no endpoints after the slice goes' });
    unsubscribe();
    assert.deepEqual(driver.endpoints('not-deployed-yet').current(), []);
  });

  it('logs of a function with no started pod are empty; of an unknown one NOT_FOUND', { timeout: 60_000 }, async () => {
    const lines = [];
    for await (const line of driver.logs('hello', {}, AbortSignal.timeout(10_000))) lines.push(line);
    assert.deepEqual(lines, []);
    const drain = async () => {
      for await (const _ of driver.logs('nope', {}, AbortSignal.timeout(10_000)));
    };
    await expectCode(drain(), 'NOT_FOUND');
  });

  it('remove deletes the Function, and the garbage collector its Deployment and Service', { timeout: 120_000 }, async () => {
    await driver.remove('hello');
    await expectCode(driver.get('hello'), 'NOT_FOUND');
    await assert.rejects(custom.getNamespacedCustomObject({ ...fnApi, name: 'hello' }), (err: { code?: number }) => err.code === 404);
    // Foreground deletion: the Function goes only after its dependents.
    await assert.rejects(readDeployment('hello'), (err: { code?: number }) => err.code === 404);
    await waitFor(
      () => core.readNamespacedService({ name: 'hello', namespace }).then(() => false, (err: { code?: number }) => err.code === 404),
      { what: 'the Service of hello deleted' },
    );
    assert.ok(!(await driver.list()).some((s) => s.spec.name === 'hello'));
    await expectCode(driver.remove('hello'), 'NOT_FOUND');
  });

  it('unknown names are NOT_FOUND', { timeout: 30_000 }, async () => {
    await expectCode(driver.get('nobody'), 'NOT_FOUND');
    await expectCode(driver.remove('nobody'), 'NOT_FOUND');
    await expectCode(driver.scale('nobody', 1), 'NOT_FOUND');
  });

  it('keeps secrets as labelled Secrets, touches no other Secret, and mounts them into the Deployment', { timeout: 180_000 }, async () => {
    const store = driver.secrets;
    // A Secret of the namespace kubefn did not make (the platform's token, say): never listed, changed or handed out.
    await core.createNamespacedSecret({ namespace, body: { metadata: { name: 'platform-token' }, stringData: { 'platform-token': 'x' } } });
    await store.create('db-password', Buffer.from('hunter2'));
    assert.deepEqual(await store.list(), ['db', 'db-password']);
    const live = await core.readNamespacedSecret({ name: 'db-password', namespace });
    assert.equal(live.metadata?.labels?.['kubefn.dev/secret'], 'true');
    assert.equal(live.metadata?.labels?.['app.kubernetes.io/managed-by'], 'kubefn');
    assert.equal(Buffer.from(live.data?.['db-password'] ?? '', 'base64').toString(), 'hunter2');
    await expectCode(store.create('db-password', Buffer.from('again')), 'ALREADY_EXISTS');
    await store.update('db-password', Buffer.from('rotated'));
    assert.equal((await store.read(['db-password'])).get('db-password')?.toString(), 'rotated');
    await expectCode(store.update('platform-token', Buffer.from('y')), 'NOT_FOUND');
    await expectCode(store.remove('platform-token'), 'NOT_FOUND');
    assert.equal((await store.read(['platform-token'])).size, 0);
    await expectCode(driver.deploy(parseFunctionSpec({ name: 'steals-token', image, secrets: ['platform-token'] })), 'BAD_REQUEST');
    await expectCode(driver.deploy(parseFunctionSpec({ name: 'needs-missing', image, secrets: ['nope'] })), 'BAD_REQUEST');
    await expectCode(driver.get('needs-missing'), 'NOT_FOUND');

    await driver.deploy(
      parseFunctionSpec({ name: 'with-secret', image, secrets: ['db-password'], secretEnv: { DB_PASSWORD: 'db-password' }, placement: { nodeSelector: { pool: 'fns' } } }),
    );
    // Plain JSON: the client's model classes do not deep-equal object literals.
    const pod = JSON.parse(JSON.stringify((await readDeployment('with-secret')).spec!.template.spec!)) as V1PodSpec;
    assert.deepEqual(pod.volumes?.find((v) => v.projected)?.projected?.sources, [{ secret: { name: 'db-password', items: [{ key: 'db-password', path: 'db-password' }] } }]);
    assert.deepEqual(pod.containers[0]!.volumeMounts, [
      { name: 'tmp', mountPath: '/tmp' },
      { name: 'openfaas-secrets', mountPath: '/var/openfaas/secrets', readOnly: true },
    ]);
    assert.deepEqual(pod.containers[0]!.env?.find((e) => e.name === 'DB_PASSWORD')?.valueFrom?.secretKeyRef, { name: 'db-password', key: 'db-password' });
    await driver.remove('with-secret');

    await store.remove('db-password');
    await expectCode(store.remove('db-password'), 'NOT_FOUND');
    assert.deepEqual(await store.list(), ['db']);
    await core.readNamespacedSecret({ name: 'platform-token', namespace });
  });

  // Pods running, answering and logging: kubernetes-conformance.cases.ts.

  it('ConfigMapWatch follows one ConfigMap by name: created, changed across a watch timeout, deleted', { timeout: 60_000 }, async () => {
    const name = 'kubefn-autoscaler-watch';
    const seen: (Record<string, string> | undefined)[] = [];
    // A 1 s watch: the API server ends it during the case, and it must be started again.
    const watch = await ConfigMapWatch.open({ kubeconfig: kc, namespace, name, timeoutSeconds: 1, onWarning: (m, e) => warnings.push(`${m}: ${String(e)}`) });
    try {
      watch.onChange((data) => seen.push(data));
      assert.equal(watch.data(), undefined, 'none yet');
      await core.createNamespacedConfigMap({ namespace, body: { metadata: { name: 'not-this-one' }, data: { 'stable-window': '9s' } } });
      await core.createNamespacedConfigMap({ namespace, body: { metadata: { name }, data: { 'stable-window': '30s' } } });
      await waitFor(() => watch.data()?.['stable-window'] === '30s', { timeoutMs: 20_000, what: 'the created ConfigMap seen' });
      // The API server ends the 1 s watch; the change below goes to the watch started after it.
      const before = watch.watchesStarted;
      await waitFor(() => watch.watchesStarted > before, { timeoutMs: 20_000, what: 'the watch started again after its timeout' });
      await core.patchNamespacedConfigMap({ namespace, name, body: { data: { 'stable-window': '45s' } } }, k8s.setHeaderOptions('Content-Type', 'application/merge-patch+json'));
      await waitFor(() => watch.data()?.['stable-window'] === '45s', { timeoutMs: 20_000, what: 'the change seen after the watch timed out' });
      await core.deleteNamespacedConfigMap({ namespace, name });
      await waitFor(() => watch.data() === undefined, { timeoutMs: 20_000, what: 'the deletion seen' });
      assert.deepEqual(seen, [{ 'stable-window': '30s' }, { 'stable-window': '45s' }, undefined], 'only this ConfigMap, each change once');
    } finally {
      await watch.close();
      await core.deleteNamespacedConfigMap({ namespace, name: 'not-this-one' }).catch(() => {});
    }
  });

  it('LeaderElection: one leader of two; a clean stop hands over at once; a leader cut off from the API server stands down before the other takes over', { timeout: 90_000 }, async () => {
    const name = 'kubefn-test-election';
    // The second candidate reaches the API server through a proxy the case can blackhole.
    const proxy = await startTcpProxy({ host: '127.0.0.1', port: cp.port });
    const kcVia = new k8s.KubeConfig();
    kcVia.loadFromOptions({
      clusters: kc.clusters.map((c) => ({ ...c, server: `https://127.0.0.1:${proxy.port}` })),
      users: kc.users,
      contexts: kc.contexts,
      currentContext: kc.currentContext,
    });
    const timeline: string[] = [];
    const candidate = (identity: string, kubeconfig: KubeConfig) =>
      LeaderElection.start({
        kubeconfig,
        namespace,
        name,
        identity,
        leaseDurationMs: 3000,
        renewDeadlineMs: 2000,
        retryPeriodMs: 300,
        onStartedLeading: () => timeline.push(`${identity} leads`),
        onStoppedLeading: () => timeline.push(`${identity} stops`),
        onWarning: () => {},
      });
    const leaders = (...all: LeaderElection[]) => all.filter((e) => e.leading).map((e) => e.identity);
    const a = await candidate('a', kc);
    let b: LeaderElection | undefined;
    let c: LeaderElection | undefined;
    try {
      await waitFor(() => a.leading, { timeoutMs: 10_000, what: 'a leads (it was alone)' });
      b = await candidate('b', kcVia);
      // Several of b's rounds: it must never lead while a renews.
      const until = Date.now() + 2000;
      while (Date.now() < until) {
        assert.deepEqual(leaders(a, b), ['a']);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      const lease = await kc.makeApiClient(k8s.CoordinationV1Api).readNamespacedLease({ name, namespace });
      assert.equal(lease.spec?.holderIdentity, 'a');
      // A clean stop releases the Lease: b leads well before a lease duration (3 s).
      const stoppedAt = Date.now();
      await a.stop();
      await waitFor(() => b!.leading, { timeoutMs: 10_000, what: 'b leads after a released the Lease' });
      const handover = Date.now() - stoppedAt;
      assert.ok(handover < 2500, `b took over ${handover} ms after a stopped: before the lease expired`);
      // b loses the API server: it stands down after the renew deadline, and only then may c lead.
      c = await candidate('c', kc);
      await new Promise((resolve) => setTimeout(resolve, 1000));
      assert.deepEqual(leaders(b, c), ['b'], 'c waits while b renews');
      proxy.cut();
      await waitFor(() => c!.leading, { timeoutMs: 15_000, what: 'c leads after b was cut off' });
      const order = timeline.filter((t) => t.startsWith('b stops') || t.startsWith('c leads'));
      assert.deepEqual(order, ['b stops', 'c leads'], `b stood down before c led: ${timeline.join(', ')}`);
      // b back on the API server: it sees c's Lease and stays a candidate.
      proxy.restore();
      await new Promise((resolve) => setTimeout(resolve, 1500));
      assert.deepEqual(leaders(b, c), ['c']);
    } finally {
      await Promise.all([a.stop(), b?.stop(), c?.stop()]);
      await proxy.close();
    }
  });
}
