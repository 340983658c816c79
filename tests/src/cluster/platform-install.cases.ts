// kubefn on a real cluster, end to end: `fn install` puts deploy/ on the shared cluster of
// cluster.test.ts (platform image built by kubefn's builder, pods run by its node: the real kubelet
// with kube-proxy, or the podman node agent, as KUBEFN_TEST_NODE says), then the CLI deploys an example
// through a gateway pod, it answers through both gateways, scales to zero and back, its logs are
// read, and deleting it takes its Deployment and Service along.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import YAML from 'yaml';
import { tarOf } from '@kubefn/builder/testing';
import { renderKustomization } from '@kubefn/cli';
import { waitFor } from '@kubefn/platform/testing';
import { ensureBinaries } from '../support/control-plane.js';
import type { TestCluster } from '../support/cluster.js';
import { isReadyPod, natsClaim, type InstalledPlatform } from '../support/platform-install.js';
import { examplesDir } from '../support/podman.js';

const exec = promisify(execFile);
const timeout = 900_000;
const deployDir = path.resolve(examplesDir, '..', 'deploy');

let sharedCluster: () => TestCluster;
let sharedPlatform: () => Promise<InstalledPlatform>;

/**
 * Registers the suite on the cluster `cluster()` returns once the enclosing suite has started it,
 * with kubefn as `platform()` installs it there (once, for every topic).
 */
export function platformInstallCases(cluster: () => TestCluster, platform: () => Promise<InstalledPlatform>): void {
  sharedCluster = cluster;
  sharedPlatform = platform;
  describe('kubefn installed on the test cluster', { timeout }, suite);
}

function suite(): void {
  let p: InstalledPlatform;
  let gateway: string;
  let fnDir: string;

  before(async () => {
    p = await sharedPlatform();
    assert.equal(p.cluster, sharedCluster());
    gateway = (await p.gateways())[0]!;
    // The hello example with a short stable window and grace, so scale to zero takes seconds.
    fnDir = await mkdtemp(path.join(tmpdir(), 'kubefn-e2e-hello-'));
    await cp(path.join(examplesDir, 'hello'), fnDir, { recursive: true });
    const spec = YAML.parse(await readFile(path.join(fnDir, 'fn.yaml'), 'utf8')) as Record<string, unknown>;
    await writeFile(path.join(fnDir, 'fn.yaml'), YAML.stringify({ ...spec, scale: { stableWindow: '6s', scaleToZeroGrace: '2s' } }));
  });

  const fn = (...args: string[]) => p.fn(['--gateway', gateway, ...args], { KUBEFN_TOKEN: p.token });
  const apps = () => p.cluster.kc.makeApiClient(p.cluster.k8s.AppsV1Api);
  const core = () => p.cluster.kc.makeApiClient(p.cluster.k8s.CoreV1Api);

  it('runs every component of deploy/: two gateways, two autoscalers (one leads), the builder and NATS with JetStream', async () => {
    const ready = async (kind: 'Deployment' | 'StatefulSet', name: string) => {
      const live = kind === 'Deployment' ? await apps().readNamespacedDeployment({ name, namespace: p.namespace }) : await apps().readNamespacedStatefulSet({ name, namespace: p.namespace });
      return live.status?.readyReplicas ?? 0;
    };
    assert.equal(await ready('Deployment', 'kubefn-gateway'), 2);
    assert.equal(await ready('Deployment', 'kubefn-autoscaler'), 2, 'the leader and a standby');
    assert.equal(await ready('Deployment', 'kubefn-builder'), 1);
    assert.equal(await ready('StatefulSet', 'kubefn-nats'), 1);
    const nats = (await core().listNamespacedPod({ namespace: p.namespace, labelSelector: 'app.kubernetes.io/name=kubefn-nats' })).items[0]!;
    const jsz = (await (await fetch(`http://${nats.status!.podIP}:8222/jsz`)).json()) as { config?: { store_dir?: string } };
    assert.equal(jsz.config?.store_dir, '/data/jetstream', 'JetStream is enabled on the /data volume');
    const claim = await core().readNamespacedPersistentVolumeClaim({ name: natsClaim, namespace: p.namespace });
    assert.equal(claim.status?.phase, 'Bound', "NATS's store is on its claim");
    assert.equal(nats.spec?.volumes?.find((v) => v.name === 'data')?.persistentVolumeClaim?.claimName, natsClaim);
    const info = (await (await fetch(`${gateway}/system/info`, { headers: { authorization: `Bearer ${p.token}` } })).json()) as { kubefn: Record<string, unknown> };
    assert.equal(info.kubefn.driver, 'kubernetes');
    assert.equal(info.kubefn.registry, p.registry.host);
    assert.equal(info.kubefn.base, p.base);
    const anonymous = await fetch(`${gateway}/system/functions`);
    assert.equal(anonymous.status, 401, 'the management API needs the token from the kubefn-token Secret');
  });

  it('the API server accepts every manifest of deploy/ in a server-side dry run', async () => {
    const out = await p.fn(['install', '--dry-run', '--image', `${p.registry.host}/kubefn/platform:0.1.0`, '--registry', p.registry.host]);
    let documents = 0;
    for (const file of [...(await readdir(deployDir)).map((f) => path.join(deployDir, f)), path.join(deployDir, 'crd', 'function.yaml')]) {
      if (file.endsWith('.yaml') && !file.endsWith('kustomization.yaml')) documents += YAML.parseAllDocuments(await readFile(file, 'utf8')).length;
    }
    assert.match(out, new RegExp(`accepted all ${documents} objects`));
    const kustomization = YAML.parse(await readFile(path.join(deployDir, 'kustomization.yaml'), 'utf8')) as { resources: string[] };
    const listed = new Set(kustomization.resources);
    for (const f of await readdir(deployDir)) if (f.endsWith('.yaml') && f !== 'kustomization.yaml') assert.ok(listed.has(f), `${f} is in kustomization.yaml`);
  });

  it('kubectl kustomize renders deploy/ exactly as fn install does, and kubectl apply -k passes a server dry run', async () => {
    const kubectl = (await ensureBinaries()).kubectl;
    const run = async (...args: string[]) => (await exec(kubectl, ['--kubeconfig', p.cluster.cp.kubeconfig, ...args], { maxBuffer: 16 * 1024 * 1024 })).stdout;
    const byKey = (objects: { kind?: string; metadata?: { name?: string; namespace?: string } }[]) =>
      new Map(objects.map((o) => [`${o.kind}/${o.metadata?.namespace ?? ''}/${o.metadata?.name}`, o]));
    const theirs = byKey(YAML.parseAllDocuments(await run('kustomize', deployDir)).map((d) => d.toJS() as { kind?: string }));
    const ours = byKey((await renderKustomization(deployDir)).objects);
    assert.deepEqual([...ours.keys()].sort(), [...theirs.keys()].sort());
    for (const [key, object] of ours) assert.deepEqual(object, theirs.get(key), key);
    const out = await run('apply', '-k', deployDir, '--dry-run=server');
    assert.equal(out.trim().split('\n').length, ours.size, out);
    assert.match(out, /\(server dry run\)/);
  });

  it('a manifest the API server refuses fails the dry run with its name and the reason', async () => {
    const bad = await mkdtemp(path.join(tmpdir(), 'kubefn-bad-deploy-'));
    await writeFile(path.join(bad, 'kustomization.yaml'), YAML.stringify({ namespace: p.namespace, resources: ['bad.yaml'] }));
    await writeFile(
      path.join(bad, 'bad.yaml'),
      YAML.stringify({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'broken' }, spec: { ports: [{ port: 70000 }] } }),
    );
    await assert.rejects(p.fn(['install', '--dry-run', '--from', bad, '--image', 'x/y:z']), /Service kubefn\/broken was refused: .*70000/s);
    await assert.rejects(core().readNamespacedService({ name: 'broken', namespace: p.namespace }), (err: { code?: number }) => err.code === 404);
  });

  it('fn deploy builds the example, pushes it to the platform registry and it answers through both gateways', async () => {
    const out = JSON.parse(await fn('deploy', fnDir, ...p.insecure, '--json')) as { mode: string; image: string };
    assert.equal(out.mode, 'image');
    assert.ok(out.image.startsWith(`${p.registry.host}/hello@sha256:`), out.image);
    for (const gw of await p.gateways()) {
      const res = await fetch(`${gw}/function/hello?name=Cluster`);
      assert.equal(res.status, 200, gw);
      assert.equal(await res.text(), 'Hello, Cluster!\n');
    }
    const d = await apps().readNamespacedDeployment({ name: 'hello', namespace: p.functionNamespace });
    assert.equal(d.metadata?.ownerReferences?.[0]?.kind, 'Function');
    assert.equal(d.spec?.template.spec?.containers[0]?.image, out.image);
  });

  it('scales to zero when idle and back from zero on a request through a gateway', async () => {
    await waitFor(
      async () => {
        const d = await apps().readNamespacedDeployment({ name: 'hello', namespace: p.functionNamespace });
        const pods = await core().listNamespacedPod({ namespace: p.functionNamespace, labelSelector: 'kubefn.dev/function=hello' });
        return d.spec?.replicas === 0 && pods.items.length === 0;
      },
      { timeoutMs: 180_000, what: 'hello scaled to zero by the autoscaler' },
    );
    const listed = JSON.parse(await fn('list', '--json')) as { name: string; replicas: number }[];
    assert.equal(listed.find((f) => f.name === 'hello')?.replicas, 0);
    const res = await fetch(`${(await p.gateways())[1]}/function/hello?name=again`);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'Hello, again!\n');
    // A warm pool pod may have answered; the poke scales the Deployment up once it serves.
    const replicas = async () => (await apps().readNamespacedDeployment({ name: 'hello', namespace: p.functionNamespace })).spec?.replicas ?? 0;
    await waitFor(async () => (await replicas()) >= 1, { timeoutMs: 30_000, what: 'the poke scaling the Deployment up' });
    // Then hello's own pod takes over from the pool pod, if one answered: the next case starts
    // from that rest, not from a pool pod still serving hello or a poke still on its way.
    await waitFor(
      async () => {
        const own = (await core().listNamespacedPod({ namespace: p.functionNamespace, labelSelector: 'kubefn.dev/function=hello' })).items;
        const pooled = (await core().listNamespacedPod({ namespace: p.functionNamespace, labelSelector: 'kubefn.dev/warm-for=hello' })).items;
        return own.some(isReadyPod) && pooled.length === 0;
      },
      { timeoutMs: 120_000, what: "hello's own pod ready and no pool pod left serving it" },
    );
  });

  it('with no autoscaler running, a request to a function at zero still starts it: the gateway scales it itself', async () => {
    const scaleAutoscaler = (replicas: number) =>
      apps().patchNamespacedDeploymentScale(
        { name: 'kubefn-autoscaler', namespace: p.namespace, body: { spec: { replicas } } },
        p.cluster.k8s.setHeaderOptions('Content-Type', p.cluster.k8s.PatchStrategy.MergePatch),
      );
    const podsOf = async (selector: string, namespace = p.namespace) => (await core().listNamespacedPod({ namespace, labelSelector: selector })).items.length;
    // A timeout says less than what hello's pods, its events and the gateways' logs say about it.
    const explained = async (err: unknown): Promise<never> => {
      const pods = (await core().listNamespacedPod({ namespace: p.functionNamespace })).items.filter((pod) => /hello/.test(JSON.stringify(pod.metadata?.labels)));
      const d = await apps().readNamespacedDeployment({ name: 'hello', namespace: p.functionNamespace });
      const described = pods.map((pod) => `${pod.metadata?.name} ${pod.status?.phase} deleting=${pod.metadata?.deletionTimestamp ?? '-'} labels=${JSON.stringify(pod.metadata?.labels)}`);
      const events = (await core().listNamespacedEvent({ namespace: p.functionNamespace, fieldSelector: 'involvedObject.name=hello' })).items.map(
        (e) => `${e.lastTimestamp?.toISOString() ?? e.eventTime ?? '-'} ${e.source?.component ?? e.reportingComponent ?? '-'} ${e.involvedObject.kind} ${e.reason}: ${e.message}`,
      );
      const said: string[] = [];
      for (const gw of (await core().listNamespacedPod({ namespace: p.namespace, labelSelector: 'app.kubernetes.io/name=kubefn-gateway' })).items) {
        const log = await core().readNamespacedPodLog({ name: gw.metadata!.name!, namespace: p.namespace, container: 'gateway', sinceSeconds: 300 });
        said.push(`${gw.metadata!.name}:`, ...log.split('\n').filter((l) => l.includes('hello')).slice(-40));
      }
      throw new Error(`${(err as Error).message}; Deployment replicas ${d.spec?.replicas}; pods of hello:\n${described.join('\n')}\nevents of hello:\n${events.join('\n')}\ngateway logs:\n${said.join('\n')}`);
    };
    await scaleAutoscaler(0);
    try {
      await waitFor(async () => (await podsOf('app.kubernetes.io/name=kubefn-autoscaler')) === 0, { timeoutMs: 120_000, what: 'the autoscaler gone' });
      await fn('scale', 'hello', '0');
      await waitFor(async () => (await podsOf('kubefn.dev/function=hello', p.functionNamespace)) === 0, { timeoutMs: 120_000, what: 'hello at zero' }).catch(explained);
      const res = await fetch(`${gateway}/function/hello?name=alone`);
      assert.equal(res.status, 200, await res.clone().text());
      assert.equal(await res.text(), 'Hello, alone!\n');
      // A warm pool pod may have answered; the gateway scales the Deployment once it serves.
      const replicas = async () => (await apps().readNamespacedDeployment({ name: 'hello', namespace: p.functionNamespace })).spec?.replicas ?? 0;
      await waitFor(async () => (await replicas()) >= 1, { timeoutMs: 30_000, what: 'the gateway scaling the Deployment up' }).catch(explained);
      assert.equal(await replicas(), 1, 'the gateway scaled it 0 -> 1, no further');
      // And said so, as a Kubernetes Event on the Function.
      await waitFor(
        async () =>
          (await core().listNamespacedEvent({ namespace: p.functionNamespace, fieldSelector: 'involvedObject.kind=Function,involvedObject.name=hello' })).items.some(
            (e) => e.reason === 'Scaled' && e.source?.component === 'kubefn-gateway' && /from 0 to 1/.test(e.message ?? ''),
          ),
        { timeoutMs: 30_000, what: 'a Scaled Event from the gateway' },
      );
    } finally {
      await scaleAutoscaler(2);
      await waitFor(async () => ((await apps().readNamespacedDeployment({ name: 'kubefn-autoscaler', namespace: p.namespace })).status?.availableReplicas ?? 0) >= 2, {
        timeoutMs: 180_000,
        what: 'the autoscaler back',
      });
    }
  });

  it('fn deploy --remote-build: the builder pod builds the source, pushes the image, and it runs', async () => {
    const out = JSON.parse(await fn('deploy', path.join(examplesDir, 'ts-greeter'), '--remote-build', '--json')) as { mode: string; image: string };
    assert.equal(out.mode, 'remote');
    assert.ok(out.image.startsWith(`${p.registry.host}/kubefn/ts-greeter@sha256:`), out.image);
    const res = await fetch(`${gateway}/function/ts-greeter?lang=fr&name=Ada`);
    assert.equal(res.status, 200);
    assert.match(await res.text(), /Ada/);
    await fn('delete', 'ts-greeter');
  });

  it('fn logs reads the replica output from its pod', async () => {
    // hello has been idle through the remote build, so it is at zero or on its way there (a
    // kubelet removes a stopped container at once, and its logs with it): calls bring a replica
    // back, until one is ready and not on its way out.
    await waitFor(
      async () => {
        const res = await fetch(`${gateway}/function/hello?name=logs`);
        assert.equal(res.status, 200);
        await res.text();
        const pods = await core().listNamespacedPod({ namespace: p.functionNamespace, labelSelector: 'kubefn.dev/function=hello' });
        return pods.items.some(isReadyPod);
      },
      { timeoutMs: 60_000, what: 'a ready replica of hello that is not terminating' },
    );
    const out = await fn('logs', 'hello');
    assert.match(out, /ready/);
  });

  it('the build service answers through the gateway: a hostile archive is refused by the builder pod', async () => {
    const archive = await tarOf([{ name: '../escape.js', body: 'x' }]);
    const res = await fetch(`${gateway}/system/builds?name=evil&handler=handler.js`, {
      method: 'POST',
      headers: { authorization: `Bearer ${p.token}`, 'content-type': 'application/x-tar' },
      body: archive,
    });
    assert.equal(res.status, 400);
    assert.match(await res.text(), /\.\./);
  });

  it('fn secret create keeps a Secret through the gateway pod; a function reads it as /var/openfaas/secrets/<name> and as env', async () => {
    const created = await fn('secret', 'create', 'db-password', 'hunter2');
    assert.match(created, /created secret "db-password"/);
    assert.match(await fn('secret', 'list'), /^db-password\s*$/m);
    const dir = await mkdtemp(path.join(tmpdir(), 'kubefn-e2e-secrets-'));
    await cp(path.join(examplesDir, '..', 'tests', 'fixtures', 'secrets', 'handler.js'), path.join(dir, 'handler.js'));
    await writeFile(path.join(dir, 'fn.yaml'), YAML.stringify({ name: 'reads-secret', handler: 'handler.js', secrets: ['db-password'], secretEnv: { DB_PASSWORD: 'db-password' } }));
    await fn('deploy', dir, ...p.insecure, '--json');
    const res = await fetch(`${gateway}/function/reads-secret`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { dir: '/var/openfaas/secrets', files: { 'db-password': 'hunter2' }, env: 'hunter2', writable: false });
    await fn('delete', 'reads-secret');
    assert.match(await fn('secret', 'delete', 'db-password'), /deleted secret "db-password"/);
    await assert.rejects(core().readNamespacedSecret({ name: 'db-password', namespace: p.functionNamespace }), (err: { code?: number }) => err.code === 404);
  });

  it('fn delete removes the Function, and its Deployment and Service go with it', async () => {
    await fn('delete', 'hello');
    const gone = (err: { code?: number }) => err.code === 404;
    await assert.rejects(apps().readNamespacedDeployment({ name: 'hello', namespace: p.functionNamespace }), gone);
    await assert.rejects(core().readNamespacedService({ name: 'hello', namespace: p.functionNamespace }), gone);
    const res = await fetch(`${gateway}/function/hello`);
    assert.equal(res.status, 404);
  });
}
