// The cluster's warm pool (deploy/pool.yaml), as `fn install` sets it up: a function at zero is
// served by a claimed pool pod as soon as it is specialized, the pod hands over to the
// function's own pod and is deleted, a specialized pod never serves another function, 200
// concurrent first calls claim at most one pod per gateway, a pod killed while it specializes
// leaves its request to the function's own pod, and functions the pool cannot honour (or a
// pool of 0) start as new pods, as their status says.

import assert from 'node:assert/strict';
import { cp, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { Agent, fetch } from 'undici';
import YAML from 'yaml';
import { waitFor } from '@kubefn/platform/testing';
import { Api } from '../support/api.js';
import { isReadyPod as isReady, type InstalledPlatform } from '../support/platform-install.js';
import { whoamiDir, type Whoami } from '../support/whoami.js';

const timeout = 600_000;
const poolSelector = 'app.kubernetes.io/name=kubefn-pool';

let sharedPlatform: () => Promise<InstalledPlatform>;

export function warmPoolCases(platform: () => Promise<InstalledPlatform>): void {
  sharedPlatform = platform;
  describe('the warm pool on the test cluster', { timeout }, suite);
}


function suite(): void {
  let p: InstalledPlatform;
  let api: Api;
  let image: string;
  const core = () => p.cluster.kc.makeApiClient(p.cluster.k8s.CoreV1Api);
  const apps = () => p.cluster.kc.makeApiClient(p.cluster.k8s.AppsV1Api);
  const poolPods = async (extra = '') => (await core().listNamespacedPod({ namespace: p.functionNamespace, labelSelector: `${poolSelector}${extra}` })).items;
  const idlePool = async () => (await poolPods(',kubefn.dev/pool=warm')).filter(isReady);
  const fullPool = () => waitFor(async () => (await idlePool()).length >= 2, { timeoutMs: 120_000, what: 'two warm pool pods ready' });
  const call = async (gateway: string, name: string): Promise<{ status: number; body: Whoami | string }> => {
    const res = await fetch(`${gateway}/function/${name}`, { signal: AbortSignal.timeout(60_000) });
    const text = await res.text();
    return { status: res.status, body: res.status === 200 ? (JSON.parse(text) as Whoami) : text };
  };
  const whoami = async (gateway: string, name: string): Promise<Whoami> => {
    const r = await call(gateway, name);
    assert.equal(r.status, 200, `${name}: ${String(r.body)}`);
    return r.body as Whoami;
  };
  const ownPods = async (name: string) =>
    (await core().listNamespacedPod({ namespace: p.functionNamespace, labelSelector: `kubefn.dev/function=${name}` })).items.filter(isReady);
  const podGone = (name: string) =>
    waitFor(async () => !(await core().listNamespacedPod({ namespace: p.functionNamespace, fieldSelector: `metadata.name=${name}` })).items.length, {
      timeoutMs: 120_000,
      what: `pod ${name} deleted`,
    });
  const deploy = (name: string, env: Record<string, string> = {}) => api.deploy({ name, image, env, scale: { initial: 0, max: 1 } });
  const path_ = async (name: string) => {
    await waitFor(async () => !/not been looked at/.test(JSON.stringify((await api.status(name)).coldStart)), { timeoutMs: 30_000, what: `${name}'s image looked at` });
    return (await api.status(name)).coldStart;
  };

  before(async () => {
    p = await sharedPlatform();
    api = new Api((await p.gateways())[0]!, p.token);
    const dir = await mkdtemp(path.join(tmpdir(), 'kubefn-pool-whoami-'));
    await cp(whoamiDir, dir, { recursive: true });
    await writeFile(path.join(dir, 'fn.yaml'), YAML.stringify({ name: 'pool-first', handler: 'handler.js', scale: { initial: 0 } }));
    const out = JSON.parse(await p.fn(['--gateway', api.url, 'deploy', dir, ...p.insecure, '--json'], { KUBEFN_TOKEN: p.token })) as { image: string };
    image = out.image;
    await fullPool();
  });

  it('serves a function at zero from a claimed pool pod, hands over to its own pod, and never gives that pod another function', async () => {
    await deploy('pool-a', { MARKER: 'a', MARKER_A: '1' });
    await deploy('pool-b', { MARKER: 'b' });
    assert.deepEqual(await path_('pool-a'), { path: 'warm-pool' });
    const [gw1, gw2] = await p.gateways();

    const a = await whoami(gw1!, 'pool-a');
    assert.match(a.host, /^kubefn-pool-/, 'answered by a pool pod');
    assert.equal(a.fn, 'pool-a');
    assert.equal(a.marker, 'a');
    assert.equal(a.uid, 65534);
    assert.equal(a.calls, 1, 'a fresh runtime');
    const claimed = (await core().readNamespacedPod({ name: a.host, namespace: p.functionNamespace })).metadata!;
    assert.equal(claimed.labels?.['kubefn.dev/pool'], 'claimed');
    assert.equal(claimed.labels?.['kubefn.dev/warm-for'], 'pool-a');
    // Serving, it leaves the pool's ReplicaSet (its pool-member label removed), which replaces it.
    await waitFor(
      async () => {
        const pod = (await core().readNamespacedPod({ name: a.host, namespace: p.functionNamespace })).metadata!;
        return pod.labels?.['kubefn.dev/pool-member'] === undefined && !pod.ownerReferences?.some((o) => o.kind === 'ReplicaSet');
      },
      { timeoutMs: 30_000, what: "the claimed pod out of the pool's ReplicaSet" },
    );
    // The other gateway routes to it too once it is marked serving, until the own pod is ready.
    const viaOther = await whoami(gw2!, 'pool-a');
    assert.equal(viaOther.fn, 'pool-a');

    // Handed over: the function's own pod serves, the pool pod is deleted, the pool refills.
    await waitFor(async () => (await ownPods('pool-a')).length >= 1, { timeoutMs: 120_000, what: "pool-a's own pod ready" });
    await podGone(a.host);
    await waitFor(async () => (await whoami(gw1!, 'pool-a')).host !== a.host, { timeoutMs: 30_000, what: 'pool-a answered by its own pod' });
    await fullPool();

    const b = await whoami(gw2!, 'pool-b');
    assert.match(b.host, /^kubefn-pool-/);
    assert.notEqual(b.host, a.host);
    assert.equal(b.fn, 'pool-b');
    assert.deepEqual(b.markers, ['MARKER'], "none of pool-a's environment");
    assert.equal(b.calls, 1);
    await api.client.deleteFunction('pool-a');
    await api.client.deleteFunction('pool-b');
  });

  it('answers 200 concurrent first calls with at most one pool pod claimed per gateway', async () => {
    await fullPool();
    await deploy('pool-burst');
    await path_('pool-burst');
    const gateways = await p.gateways();
    const claimed = new Set<string>();
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        for (const pod of await poolPods(',kubefn.dev/warm-for=pool-burst')) claimed.add(pod.metadata!.name!);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    const agent = new Agent({ connections: 256 });
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        fetch(`${gateways[i % gateways.length]}/function/pool-burst`, { dispatcher: agent, signal: AbortSignal.timeout(90_000) }).then(
          async (r) => ({ status: r.status, text: await r.text() }),
          (err: unknown) => ({ status: 0, text: String(err) }),
        ),
      ),
    );
    watching = false;
    await watcher;
    await agent.close();
    const failed = results.filter((r) => r.status !== 200);
    assert.equal(failed.length, 0, `failed: ${failed.slice(0, 5).map((r) => `${r.status} ${r.text}`).join('; ')}`);
    const hosts = new Set(results.map((r) => (JSON.parse(r.text) as Whoami).host));
    for (const h of hosts) if (h.startsWith('kubefn-pool-')) assert.ok(claimed.has(h), `pool pod ${h} answered and was seen claimed`);
    assert.ok(claimed.size >= 1 && claimed.size <= gateways.length, `${claimed.size} pool pods claimed by ${gateways.length} gateways: ${[...claimed].join(', ')}`);
    process.stderr.write(`# 200 first calls: ${claimed.size} pool pod(s) claimed, answered by ${hosts.size} pod(s)\n`);
    await api.client.deleteFunction('pool-burst');
  });

  it('a pool pod killed while it specializes leaves its request to the function\'s own pod: answered, not hung', async () => {
    await fullPool();
    // init() takes 4 s, in the pool pod as in the function's own pod.
    await deploy('pool-killed', { INIT_DELAY_MS: '4000' });
    await path_('pool-killed');
    const [gw] = await p.gateways();
    const started = Date.now();
    const pending = call(gw!, 'pool-killed');
    let victim = '';
    await waitFor(async () => {
      victim = (await poolPods(',kubefn.dev/warm-for=pool-killed'))[0]?.metadata?.name ?? '';
      return victim !== '';
    }, { timeoutMs: 30_000, what: 'a pool pod claimed for pool-killed' });
    await core().deleteNamespacedPod({ name: victim, namespace: p.functionNamespace, gracePeriodSeconds: 0 });
    const r = await pending;
    assert.equal(r.status, 200, String(r.body));
    assert.notEqual((r.body as Whoami).host, victim);
    process.stderr.write(`# pool pod killed while specializing: answered 200 by ${(r.body as Whoami).host} after ${Date.now() - started} ms\n`);
    await api.client.deleteFunction('pool-killed');
  });

  it('starts functions the pool cannot honour, and every function when the pool is at 0, as new pods, and says why', async () => {
    await deploy('pool-node-env', { NODE_NO_WARNINGS: '1' });
    const why = await path_('pool-node-env');
    assert.equal(why?.path, 'pod-start');
    assert.match((why as { reason: string }).reason, /NODE_NO_WARNINGS is read only when node starts/);
    const [gw] = await p.gateways();
    const own = await whoami(gw!, 'pool-node-env');
    assert.doesNotMatch(own.host, /^kubefn-pool-/);
    await api.client.deleteFunction('pool-node-env');

    await apps().patchNamespacedDeploymentScale(
      { name: 'kubefn-pool', namespace: p.functionNamespace, body: { spec: { replicas: 0 } } },
      p.cluster.k8s.setHeaderOptions('Content-Type', 'application/merge-patch+json'),
    );
    try {
      await waitFor(async () => (await poolPods(',kubefn.dev/pool=warm')).length === 0, { timeoutMs: 120_000, what: 'no pool pods' });
      await deploy('pool-off');
      await waitFor(async () => /no pods/.test(JSON.stringify((await api.status('pool-off')).coldStart)), { timeoutMs: 30_000, what: 'pool-off: the pool has no pods' });
      const plain = await whoami(gw!, 'pool-off');
      assert.doesNotMatch(plain.host, /^kubefn-pool-/);
      assert.equal((await poolPods(',kubefn.dev/warm-for=pool-off')).length, 0);
      await api.client.deleteFunction('pool-off');
    } finally {
      await apps().patchNamespacedDeploymentScale(
        { name: 'kubefn-pool', namespace: p.functionNamespace, body: { spec: { replicas: 2 } } },
        p.cluster.k8s.setHeaderOptions('Content-Type', 'application/merge-patch+json'),
      );
    }
    await fullPool();
  });
}
