// kubefn on the test cluster under failure, with load running: a gateway killed, the autoscaler
// leader killed, replicas scaled down under POST load, a containerConcurrency 1 function behind
// two gateways, the API server hung for 30 s. Each case counts every call
// it made and says which failed and why.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { cp, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { Agent, fetch } from 'undici';
import YAML from 'yaml';
import { parseFunctionSpec } from '@kubefn/platform';
import { waitFor } from '@kubefn/platform/testing';
import { Api } from '../support/api.js';
import { applyManyFunctions, removeManyFunctions } from '../support/many-functions.js';
import { isReadyPod, type InstalledPlatform } from '../support/platform-install.js';
import { examplesDir } from '../support/podman.js';

const timeout = 900_000;
const counterDir = path.resolve(examplesDir, '..', 'tests', 'fixtures', 'counter');

let sharedPlatform: () => Promise<InstalledPlatform>;

export function failureCases(platform: () => Promise<InstalledPlatform>): void {
  sharedPlatform = platform;
  describe('kubefn on the test cluster under failure', { timeout }, suite);
}

interface Call {
  gateway: string;
  startedAt: number;
  endedAt: number;
  status: number;
  retryAfter: string | null;
  error?: string;
  body?: { pod: string; seen: number; most: number; bytes: number };
}

interface Load {
  calls: Call[];
  /** Stops the callers on `gateway` (its pod is about to go); none when omitted: all stop. */
  stop(gateway?: string): Promise<void>;
}

/**
 * `perGateway` callers on each gateway, each sending one call after another to `fn` (a POST of
 * `bodyBytes` when given), until stopped. A call that gets no answer is recorded with its error.
 */
function load(gateways: string[], fn: string, options: { perGateway: number; bodyBytes?: number; ms?: number }): Load {
  const calls: Call[] = [];
  const stopped = new Set<string>();
  let all = false;
  const agent = new Agent({ connections: options.perGateway * gateways.length + 4, headersTimeout: 60_000, connect: { timeout: 5000 } });
  const body = options.bodyBytes === undefined ? undefined : Buffer.alloc(options.bodyBytes, 'k');
  const caller = async (gateway: string): Promise<void> => {
    while (!all && !stopped.has(gateway)) {
      const startedAt = Date.now();
      try {
        const res = await fetch(`${gateway}/function/${fn}?ms=${options.ms ?? 20}`, {
          method: body ? 'POST' : 'GET',
          dispatcher: agent,
          ...(body ? { body, headers: { 'content-type': 'application/octet-stream' } } : {}),
          signal: AbortSignal.timeout(60_000),
        });
        const text = await res.text();
        const call: Call = { gateway, startedAt, endedAt: Date.now(), status: res.status, retryAfter: res.headers.get('retry-after') };
        if (res.status === 200) call.body = JSON.parse(text) as Call['body'];
        else call.error = text.slice(0, 300);
        calls.push(call);
      } catch (err) {
        calls.push({ gateway, startedAt, endedAt: Date.now(), status: 0, retryAfter: null, error: String((err as Error).cause ?? err) });
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  };
  const running = new Map(gateways.map((g) => [g, Promise.all(Array.from({ length: options.perGateway }, () => caller(g)))]));
  return {
    calls,
    async stop(gateway) {
      if (gateway) {
        stopped.add(gateway);
        await running.get(gateway);
        return;
      }
      all = true;
      await Promise.all(running.values());
      await agent.close();
    },
  };
}

const failures = (calls: Call[]) => calls.filter((c) => c.status !== 200);
const describeCalls = (calls: Call[]) => calls.slice(0, 8).map((c) => `${c.gateway} ${c.status} ${c.error ?? ''}`).join('; ');

function suite(): void {
  let p: InstalledPlatform;
  const apps = () => p.cluster.kc.makeApiClient(p.cluster.k8s.AppsV1Api);
  const core = () => p.cluster.kc.makeApiClient(p.cluster.k8s.CoreV1Api);
  const coordination = () => p.cluster.kc.makeApiClient(p.cluster.k8s.CoordinationV1Api);
  const fn = async (...args: string[]) => p.fn(['--gateway', (await p.gateways())[0]!, ...args], { KUBEFN_TOKEN: p.token });

  /** Deploys tests/fixtures/counter as `name` with `scale`. */
  const deployCounter = async (name: string, scale: Record<string, unknown>) => {
    const dir = await mkdtemp(path.join(tmpdir(), `kubefn-e2e-${name}-`));
    await cp(counterDir, dir, { recursive: true });
    await writeFile(path.join(dir, 'fn.yaml'), YAML.stringify({ name, handler: 'handler.js', timeout: '30s', scale }));
    await fn('deploy', dir, ...p.insecure, '--json');
  };
  /** Function pods are in the functions' namespace, the platform's in its own. */
  const nsOf = (selector: string) => (selector.startsWith('kubefn.dev/function') ? p.functionNamespace : p.namespace);
  const readyPods = async (selector: string) =>
    (await core().listNamespacedPod({ namespace: nsOf(selector), labelSelector: selector })).items.filter(isReadyPod);
  const waitReady = (selector: string, n: number, what: string) =>
    waitFor(async () => (await readyPods(selector)).length === n, { timeoutMs: 180_000, what });
  /** Changes `name`'s scale bounds through the management API (the same image and spec otherwise). */
  const setScale = async (name: string, scale: { min: number; max: number }) => {
    const api = new Api((await p.gateways())[0]!, p.token);
    const { spec } = await api.status(name);
    await api.client.deployFunction(parseFunctionSpec({ ...spec, scale: { ...spec.scale, ...scale } }));
  };
  const gatewaysBack = () => waitReady('app.kubernetes.io/name=kubefn-gateway', 2, 'two ready gateways');
  const leaseHolder = async () => (await coordination().readNamespacedLease({ name: 'kubefn-autoscaler', namespace: p.namespace })).spec?.holderIdentity ?? '';

  before(async () => {
    p = await sharedPlatform();
    await gatewaysBack();
    // echo: 3 replicas to start, no cap. cc-one: exactly 2 replicas of containerConcurrency 1.
    await deployCounter('echo', { min: 1, max: 3 });
    await deployCounter('cc-one', { min: 2, max: 2, containerConcurrency: 1 });
    await waitReady('kubefn.dev/function=cc-one', 2, 'cc-one at 2 ready replicas');
  });

  it('isolation: a function naming kubefn-token is refused; function pods run as nobody, without a service-account token', async () => {
    const gw = (await p.gateways())[0]!;
    const res = await fetch(`${gw}/system/functions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${p.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'thief', image: `${p.registry.host}/x@sha256:${'c'.repeat(64)}`, secrets: ['kubefn-token'] }),
    });
    const text = await res.text();
    assert.equal(res.status, 400, text);
    assert.match(text, /kubefn-token.*platform's own Secrets/);
    const pod = (await readyPods('kubefn.dev/function=echo'))[0]!;
    assert.equal(pod.spec?.automountServiceAccountToken, false);
    assert.deepEqual(pod.spec?.volumes?.filter((v) => v.projected?.sources?.some((src) => src.serviceAccountToken)) ?? [], [], 'no service-account token volume');
    assert.equal(pod.spec?.securityContext?.runAsUser, 65534);
    assert.equal(pod.spec?.securityContext?.runAsNonRoot, true);
    // The NetworkPolicies are in place as installed (the test CNI, the bridge plugin, does not
    // enforce them; docs/kubernetes.md says which do): function pods take connections from the
    // gateways alone, and NATS, the autoscaler and the builder only from pods of the platform's
    // own namespace, so never from a function's.
    // Read as JSON from the API server: client-node's NetworkPolicy model drops a rule's `from`.
    type Peer = { podSelector?: { matchLabels?: Record<string, string> }; namespaceSelector?: unknown; ipBlock?: unknown };
    type Policy = { spec: { podSelector: { matchLabels?: unknown; matchExpressions?: { values: string[] }[] }; ingress: { from?: Peer[] }[] } };
    const apiServer = new Agent({ connect: { ca: p.cluster.cp.ca } });
    const policy = async (namespace: string, name: string): Promise<Policy> => {
      const res = await fetch(`${p.cluster.cp.server}/apis/networking.k8s.io/v1/namespaces/${namespace}/networkpolicies/${name}`, {
        headers: { authorization: `Bearer ${p.cluster.cp.token}` },
        dispatcher: apiServer,
      });
      assert.equal(res.status, 200, `NetworkPolicy ${namespace}/${name}`);
      return (await res.json()) as Policy;
    };
    const fnPolicy = await policy(p.functionNamespace, 'kubefn-functions');
    assert.ok(!fnPolicy.spec.podSelector.matchLabels && !fnPolicy.spec.podSelector.matchExpressions, 'every function pod');
    assert.deepEqual(fnPolicy.spec.ingress.flatMap((r) => r.from ?? []).map((f) => f.podSelector?.matchLabels?.['app.kubernetes.io/name']), ['kubefn-gateway']);
    const platformPolicy = await policy(p.namespace, 'kubefn-platform');
    assert.deepEqual(platformPolicy.spec.podSelector.matchExpressions?.[0]?.values, ['kubefn-autoscaler', 'kubefn-builder', 'kubefn-nats']);
    const from = platformPolicy.spec.ingress.flatMap((r) => r.from ?? []);
    await apiServer.close();
    assert.ok(from.length > 0 && from.every((f) => f.podSelector && !f.namespaceSelector && !f.ipBlock), 'only pods of the platform\'s namespace');
    // The namespace admits only what Pod Security `restricted` allows: a root pod is refused.
    await assert.rejects(
      core().createNamespacedPod({
        namespace: p.functionNamespace,
        dryRun: 'All',
        body: { metadata: { name: 'root-probe' }, spec: { containers: [{ name: 'c', image: 'x', securityContext: { runAsUser: 0 } }] } },
      }),
      (err: { code?: number; body?: unknown }) => err.code === 403 && /restricted/.test(String(err.body)),
    );
  });

  it('a containerConcurrency 1 function behind two gateways: never more than 1 in its handler, no 503', async () => {
    const gateways = await p.gateways();
    assert.equal(gateways.length, 2);
    const pods = await readyPods('kubefn.dev/function=cc-one');
    const waited = async () =>
      Promise.all(
        pods.map(async (pod) => {
          const metrics = await (await fetch(`http://${pod.status!.podIP}:8081/metrics`)).text();
          return Number(/^kubefn_runtime_waited_calls_total\{[^}]*\} (\d+)$/m.exec(metrics)?.[1] ?? NaN);
        }),
      );
    // Each gateway routes to the replica it was dealt (CC 1, two replicas, two gateways): between
    // them both replicas answer once each gateway sees both, before the count starts.
    const podOf = async (gw: string) => ((await (await fetch(`${gw}/function/cc-one?ms=1`)).json()) as { pod: string }).pod;
    await waitFor(async () => new Set(await Promise.all(gateways.flatMap((gw) => [podOf(gw), podOf(gw), podOf(gw)]))).size === 2, {
      timeoutMs: 30_000,
      what: 'the two gateways routing to the two replicas between them',
    });
    const waitedBefore = await waited();
    const l = load(gateways, 'cc-one', { perGateway: 4, bodyBytes: 2048, ms: 30 });
    await waitFor(() => l.calls.length >= 300, { timeoutMs: 120_000, what: '300 calls answered' });
    await l.stop();
    assert.deepEqual(failures(l.calls), [], `every call answered 200: ${describeCalls(failures(l.calls))}`);
    assert.equal(Math.max(...l.calls.map((c) => c.body!.seen)), 1, 'one call in a replica\'s handler at a time');
    assert.equal(new Set(l.calls.map((c) => c.body!.pod)).size, 2, 'both replicas served');
    // The gateways split the two replicas' slots: no call even had to wait in a runtime.
    assert.deepEqual(await waited(), waitedBefore, 'no call arrived at a replica past its cap');
    console.log(`# CC=1 behind two gateways: ${l.calls.length} calls, most in a handler ${Math.max(...l.calls.map((c) => c.body!.most))}`);
  });

  it('a scale-down under POST load fails no call', async () => {
    // Held at 3 by its bounds; then its bounds drop to 1 and the autoscaler takes two away.
    await setScale('echo', { min: 3, max: 3 });
    await waitReady('kubefn.dev/function=echo', 3, 'echo at 3 ready replicas');
    const gateways = await p.gateways();
    const l = load(gateways, 'echo', { perGateway: 3, bodyBytes: 64 * 1024, ms: 50 });
    await waitFor(() => l.calls.length >= 100, { timeoutMs: 60_000, what: 'load running' });
    await setScale('echo', { min: 1, max: 1 });
    // Until the two pods that go are gone entirely (preStop, drain, exit), and a little after.
    await waitFor(async () => (await core().listNamespacedPod({ namespace: p.functionNamespace, labelSelector: 'kubefn.dev/function=echo' })).items.length === 1, {
      timeoutMs: 120_000,
      what: 'echo down to one pod',
    });
    const seen = l.calls.length;
    await waitFor(() => l.calls.length >= seen + 100, { timeoutMs: 60_000, what: '100 more calls on the one replica left' });
    await l.stop();
    assert.deepEqual(failures(l.calls), [], `no call failed: ${describeCalls(failures(l.calls))}`);
    assert.ok(l.calls.every((c) => c.body!.bytes === 64 * 1024), 'every body arrived whole');
    console.log(`# scale-down 3 -> 1 under POST load: ${l.calls.length} calls of 64 KiB, none failed`);
    await setScale('echo', { min: 1, max: 3 });
  });

  it('killing one gateway under load fails only the calls in flight on it', async () => {
    const gateways = await p.gateways();
    const pods = await readyPods('app.kubernetes.io/name=kubefn-gateway');
    const victim = pods.find((pod) => `http://${pod.status!.podIP}:8080` === gateways[0])!;
    const l = load(gateways, 'echo', { perGateway: 3, ms: 200 });
    await waitFor(() => l.calls.length >= 60, { timeoutMs: 60_000, what: 'load running' });
    const killedAt = Date.now();
    await core().deleteNamespacedPod({ name: victim.metadata!.name!, namespace: p.namespace, gracePeriodSeconds: 0 });
    // Its callers stop once their calls fail (a client would go to another gateway).
    await waitFor(() => l.calls.some((c) => c.gateway === gateways[0] && c.status !== 200 && c.startedAt < killedAt) || l.calls.filter((c) => c.gateway === gateways[0] && c.startedAt > killedAt).length > 0, {
      timeoutMs: 60_000,
      what: 'the calls in flight on the killed gateway ended',
    });
    await l.stop(gateways[0]);
    const seen = l.calls.length;
    await waitFor(() => l.calls.length >= seen + 30, { timeoutMs: 60_000, what: 'the other gateway serving on' });
    await l.stop();
    const other = l.calls.filter((c) => c.gateway === gateways[1]);
    assert.deepEqual(failures(other), [], `the other gateway failed nothing: ${describeCalls(failures(other))}`);
    // Of the calls sent to the killed gateway before it was killed, only those still in flight
    // then failed (its 3 callers have at most 3); the calls sent to it afterwards went to a
    // gateway that was gone, and a client behind the Service would have been sent elsewhere.
    const before = l.calls.filter((c) => c.gateway === gateways[0] && c.startedAt <= killedAt);
    const lost = failures(before);
    const notInFlight = lost.filter((c) => c.endedAt < killedAt);
    assert.deepEqual(notInFlight, [], `only calls in flight at the kill failed: ${describeCalls(notInFlight)}`);
    assert.ok(lost.length <= 3, `at most its 3 callers' calls in flight failed, not ${lost.length}`);
    console.log(`# gateway killed: ${before.length} calls sent to it before, ${lost.length} in flight failed; ${other.length} through the other, none failed`);
    await gatewaysBack();
  });

  it('killing the autoscaler leader under load: the standby takes over, a function at zero still starts, no call fails but 503s with Retry-After', async () => {
    await waitReady('app.kubernetes.io/name=kubefn-autoscaler', 2, 'two ready autoscalers');
    await waitFor(async () => (await leaseHolder()) !== '', { timeoutMs: 60_000, what: 'an autoscaler leads' });
    const leader = await leaseHolder();
    const standby = (await readyPods('app.kubernetes.io/name=kubefn-autoscaler')).map((pod) => pod.metadata!.name!).find((n) => n !== leader)!;
    assert.ok(standby, 'a standby runs beside the leader');
    await deployCounter('cold', { min: 0, max: 2 });
    await fn('scale', 'cold', '0');
    await waitFor(async () => (await core().listNamespacedPod({ namespace: p.functionNamespace, labelSelector: 'kubefn.dev/function=cold' })).items.length === 0, {
      timeoutMs: 120_000,
      what: 'cold at zero',
    });
    const gateways = await p.gateways();
    const l = load(gateways, 'echo', { perGateway: 2, ms: 50 });
    await waitFor(() => l.calls.length >= 40, { timeoutMs: 60_000, what: 'load running' });
    const killedAt = Date.now();
    await core().deleteNamespacedPod({ name: leader, namespace: p.namespace, gracePeriodSeconds: 0 });
    // No leader for up to a lease duration (15 s): a function at zero starts all the same.
    const cold = await fetch(`${gateways[1]}/function/cold?ms=1`, { signal: AbortSignal.timeout(60_000) });
    assert.equal(cold.status, 200, await cold.clone().text());
    const coldAfterMs = Date.now() - killedAt;
    await waitFor(async () => (await leaseHolder()) === standby, { timeoutMs: 40_000, what: `the standby ${standby} holds the Lease` });
    const tookOverMs = Date.now() - killedAt;
    // The new leader's controller acts: a deleted Service of a function is put back.
    await core().deleteNamespacedService({ name: 'echo', namespace: p.functionNamespace });
    await waitFor(async () => (await core().readNamespacedService({ name: 'echo', namespace: p.functionNamespace }).then(() => true, () => false)), {
      timeoutMs: 30_000,
      what: 'the new leader recreated the Service of echo',
    });
    await l.stop();
    const failed = failures(l.calls);
    const unexplained = failed.filter((c) => !(c.status === 503 && c.retryAfter !== null));
    assert.deepEqual(unexplained, [], `no call failed but 503s with Retry-After: ${describeCalls(unexplained)}`);
    console.log(`# leader killed: cold start in ${coldAfterMs} ms, standby leading after ${tookOverMs} ms, ${l.calls.length} calls, ${failed.length} answered 503`);
    await fn('delete', 'cold');
    await waitReady('app.kubernetes.io/name=kubefn-autoscaler', 2, 'two ready autoscalers again');
  });

  it('the API server hung for 30 s: functions keep serving, the autoscalers keep deciding, all recovers within 10 s of its return', async () => {
    const gateways = await p.gateways();
    const autoscalers = (await readyPods('app.kubernetes.io/name=kubefn-autoscaler')).map((pod) => `http://${pod.status!.podIP}:8080`);
    const componentToken = await p.componentToken();
    const decisions = async (url: string) =>
      (await (await fetch(`${url}/status`, { headers: { authorization: `Bearer ${componentToken}` }, signal: AbortSignal.timeout(5000) })).json()) as {
        leading: boolean;
        ticks: number;
        decided: Record<string, number>;
      };
    await fn('scale', 'echo', '1');
    await waitReady('kubefn.dev/function=echo', 1, 'echo at one replica');
    const l = load(gateways, 'echo', { perGateway: 2, ms: 50 });
    await waitFor(() => l.calls.length >= 40, { timeoutMs: 60_000, what: 'load running' });
    const before = await Promise.all(autoscalers.map(decisions));
    // SIGSTOP: every connection to it stays open and nothing answers, the platform's pods and
    // this test alike.
    p.cluster.cp.pauseApiserver();
    let restoredAt = 0;
    try {
      await new Promise((resolve) => setTimeout(resolve, 30_000));
      const servedDuring = l.calls.filter((c) => c.status === 200).length;
      const during = await Promise.all(autoscalers.map(decisions));
      during.forEach((d, i) => {
        assert.ok(d.ticks >= before[i]!.ticks + 20, `autoscaler ${autoscalers[i]} kept collecting and deciding: ${before[i]!.ticks} -> ${d.ticks} ticks`);
        assert.ok((d.decided.echo ?? 0) >= (before[i]!.decided.echo ?? 0) + 20, `and deciding for echo: ${before[i]!.decided.echo} -> ${d.decided.echo}`);
      });
      assert.ok(servedDuring > 0);
    } finally {
      p.cluster.cp.resumeApiserver();
      restoredAt = Date.now();
    }
    // Recovered: an autoscaler leads, and a Function created after the return is seen by both
    // gateways' watches and reconciled by the leader's controller.
    await waitFor(async () => (await Promise.all(autoscalers.map(decisions))).some((d) => d.leading), { timeoutMs: 10_000, what: 'an autoscaler leading within 10 s' });
    const leadingMs = Date.now() - restoredAt;
    const custom = p.cluster.kc.makeApiClient(p.cluster.k8s.CustomObjectsApi);
    const fnApi = { group: 'kubefn.dev', version: 'v1alpha1', namespace: p.functionNamespace, plural: 'functions' };
    const { spec } = await new Api(gateways[0]!, p.token).status('echo');
    await waitFor(
      () =>
        custom.createNamespacedCustomObject({
          ...fnApi,
          body: { apiVersion: 'kubefn.dev/v1alpha1', kind: 'Function', metadata: { name: 'after-hang' }, spec: { image: spec.image, scale: { initial: 0 } } },
        }),
      { timeoutMs: Math.max(1000, restoredAt + 10_000 - Date.now()), what: 'a Function created after the return' },
    );
    const left = () => Math.max(1000, restoredAt + 10_000 - Date.now());
    for (const gw of gateways) {
      await waitFor(async () => (await fetch(`${gw}/system/function/after-hang`, { headers: { authorization: `Bearer ${p.token}` }, signal: AbortSignal.timeout(5000) })).status === 200, {
        timeoutMs: left(),
        what: `${gw} seeing the new Function within 10 s`,
      });
    }
    await waitFor(
      async () => {
        const f = (await custom.getNamespacedCustomObject({ ...fnApi, name: 'after-hang' })) as { metadata: { generation?: number }; status?: { observedGeneration?: number } };
        return f.status?.observedGeneration === f.metadata.generation;
      },
      { timeoutMs: left(), what: 'the new Function reconciled within 10 s' },
    );
    const recoveredMs = Date.now() - restoredAt;
    await l.stop();
    assert.deepEqual(failures(l.calls), [], `functions already up kept serving: ${describeCalls(failures(l.calls))}`);
    console.log(`# API server hung 30 s: ${l.calls.length} calls, none failed; leader after ${leadingMs} ms, recovered ${recoveredMs} ms after its return`);
    await custom.deleteNamespacedCustomObject({ ...fnApi, name: 'after-hang' });
  });

  it('1,000 Functions applied at once: the controller reconciles every one without a failure, and rests after', async () => {
    const count = 1000;
    const r = await applyManyFunctions(p, {
      count,
      image: `${p.registry.host}/never-pulled@sha256:${'b'.repeat(64)}`,
      idleMs: 20_000,
      onProgress: (line) => console.log(`# ${line}`),
    });
    try {
      console.log(`# ${JSON.stringify(r)}`);
      assert.deepEqual(r.notReady, [], 'every Function Ready (ScaledToZero) at its generation');
      assert.equal(r.reconciles.failed, 0, 'no reconcile failed');
      assert.ok(r.reconciles.reconciled >= count, `${r.reconciles.reconciled} reconciles for ${count} Functions`);
      assert.equal(r.autoscaler.functionsTracked, count, 'the autoscaler tracks them all');
      // A new Function costs 6 calls (the Deployment read, created, its replicas handed over and
      // applied without them, the Service, the status); a storm would be several times that.
      assert.ok(r.controllerApiRequests > 0 && r.controllerApiRequests <= 8 * count, `${r.controllerApiRequests} API calls for ${count} Functions: no storm`);
      assert.ok(r.idleApiRequests >= 0 && r.idleApiRequests <= 40, `${r.idleApiRequests} API calls in 20 s at rest (Lease renewals): nothing re-reconciled (${JSON.stringify(r.idleApiRequestsByPath)})`);
    } finally {
      await removeManyFunctions(p);
    }
  });

  it('both tokens rotated without a restart: the new ones work everywhere, the old ones stop once dropped', async () => {
    const podsBefore = async () =>
      (await core().listNamespacedPod({ namespace: p.namespace, labelSelector: 'app.kubernetes.io/name in (kubefn-gateway,kubefn-autoscaler,kubefn-builder)' })).items
        .filter((pod) => !pod.metadata?.deletionTimestamp)
        .map((pod) => `${pod.metadata!.name}:${pod.status?.containerStatuses?.[0]?.restartCount ?? 0}`)
        .sort();
    const before = await podsBefore();
    const oldUser = p.token;
    const oldComponent = await p.componentToken();
    const newUser = randomBytes(24).toString('base64url');
    const newComponent = randomBytes(24).toString('base64url');
    const setSecret = (name: string, data: Record<string, string>) =>
      core().replaceNamespacedSecret({ name, namespace: p.namespace, body: { metadata: { name, labels: { 'app.kubernetes.io/part-of': 'kubefn' } }, stringData: data } });
    const gateways = await p.gateways();
    const autoscalers = (await readyPods('app.kubernetes.io/name=kubefn-autoscaler')).map((pod) => `http://${pod.status!.podIP}:8080`);
    const status = async (url: string, token: string) => (await fetch(url, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(5000) })).status;
    const everywhere = async (token: string, want: number, what: string) => {
      for (const gw of gateways) await waitFor(async () => (await status(`${gw}/system/functions`, token)) === want, { timeoutMs: 90_000, what: `${gw}: ${what}` });
    };
    // 1. New tokens, the old ones kept as `previous`: both work.
    await setSecret('kubefn-token', { token: newUser, previous: oldUser });
    await setSecret('kubefn-component-token', { token: newComponent, previous: oldComponent });
    await everywhere(newUser, 200, 'the new user token accepted');
    for (const a of autoscalers) await waitFor(async () => (await status(`${a}/status`, newComponent)) === 200, { timeoutMs: 90_000, what: `${a}: the new component token accepted` });
    assert.equal(await status(`${gateways[0]}/system/functions`, oldUser), 200, 'the old user token still works during the rotation');
    // 2. The old ones dropped: refused, and the platform works on the new ones alone.
    await setSecret('kubefn-token', { token: newUser });
    await setSecret('kubefn-component-token', { token: newComponent });
    p.token = newUser;
    await everywhere(oldUser, 401, 'the old user token refused');
    for (const a of autoscalers) await waitFor(async () => (await status(`${a}/status`, oldComponent)) === 401, { timeoutMs: 90_000, what: `${a}: the old component token refused` });
    assert.equal(await status(`${gateways[0]}/system/functions`, oldComponent), 401, 'the component token opens no management route');
    // The components speak the new token among themselves: a function at zero is started by a
    // poke (not by the gateway's own fallback, which needs no token), and the stats are read.
    await setScale('echo', { min: 0, max: 3 });
    await fn('scale', 'echo', '0');
    await waitFor(async () => (await core().listNamespacedPod({ namespace: p.functionNamespace, labelSelector: 'kubefn.dev/function=echo' })).items.length === 0, {
      timeoutMs: 120_000,
      what: 'echo at zero',
    });
    const calledAt = Date.now() - 1000;
    const res = await fetch(`${gateways[0]}/function/echo?ms=1`, { signal: AbortSignal.timeout(60_000) });
    assert.equal(res.status, 200);
    const started = await waitFor(
      async () =>
        (await core().listNamespacedEvent({ namespace: p.functionNamespace, fieldSelector: 'involvedObject.kind=Function,involvedObject.name=echo' })).items.find(
          (e) => e.reason === 'Scaled' && /from 0 to/.test(e.message ?? '') && new Date(e.lastTimestamp ?? 0).getTime() >= calledAt,
        ),
      { timeoutMs: 30_000, what: 'the Scaled Event of the start from zero' },
    );
    assert.equal(started.source?.component, 'kubefn-autoscaler', 'the autoscaler took the poke, on the new component token');
    assert.deepEqual(await podsBefore(), before, 'no pod was restarted or replaced');
  });
}
