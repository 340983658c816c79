// `npm run bench:cluster`: kubefn installed on the test cluster with `fn install` (real control
// plane; the real kubelet on containerd as the node where the machine allows, else the podman
// node agent; KUBEFN_TEST_NODE chooses), measured from the outside as a user sees it:
//   - install: fn install, platform image build + push + apply + every component ready;
//   - reconcile: `fn deploy` of a new function (image already in the registry) until the
//     Function reports a ready replica, and the PUT alone until then (polled every 25 ms);
//   - cold start: a request through a gateway to a function the autoscaler has scaled to zero,
//     until its answer (20 tries), with the warm pool (kubefn-pool) at 2 and then at 0;
//   - 1,000 Functions applied at once (BENCH_MANY): the controller's time to settle and API calls,
//     and the leading autoscaler's memory and idle CPU with them all tracked.
// `-- --cold-build` first times a build of the Kubernetes binaries (control plane, kubelet,
// kube-proxy) from an empty Go cache and binary directory. Prints tables and writes bench-results/cluster.json.

import { execFile } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os, { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import YAML from 'yaml';
import { waitFor } from '@kubefn/platform/testing';
import { Api } from '../support/api.js';
import { applyManyFunctions, removeManyFunctions } from '../support/many-functions.js';
import { installTestPlatform } from '../support/platform-install.js';
import { examplesDir } from '../support/podman.js';
import { percentile } from './cold-start.js';
import { writeBenchResults } from './results.js';

const exec = promisify(execFile);
const reconcileTries = Number(process.env.BENCH_RECONCILE_TRIES ?? 10);
const coldTries = Number(process.env.BENCH_TRIES ?? 20);
const manyCount = Number(process.env.BENCH_MANY ?? 1000);
const idleMs = Number(process.env.BENCH_IDLE_MS ?? 60_000);

function stats(ms: number[]) {
  return { p50: Math.round(percentile(ms, 50)), max: Math.round(Math.max(...ms)), all: ms.map((x) => Math.round(x)) };
}

async function coldBuild(): Promise<number> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kubefn-cold-build-'));
  try {
    const script = "import('./tests/dist/support/control-plane.js').then((m) => m.ensureBinaries((l) => console.error(l)))";
    const t0 = performance.now();
    await exec(process.execPath, ['-e', script], {
      env: { ...process.env, GOCACHE: path.join(dir, 'gocache'), KUBEFN_K8S_CACHE: path.join(dir, 'bin') },
      timeout: 3_600_000,
      maxBuffer: 64 * 1024 * 1024,
    });
    return performance.now() - t0;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const coldBuildMs = process.argv.includes('--cold-build') ? await coldBuild() : undefined;
  const p = await installTestPlatform({ onProgress: (line) => console.error(line) });
  try {
    const [gateway] = await p.gateways();
    const api = new Api(gateway!, p.token);
    const env = { KUBEFN_TOKEN: p.token };

    // A copy of the hello example per function name; scale knobs short so idle means zero soon.
    const functionDir = async (name: string, scale: Record<string, unknown>): Promise<string> => {
      const dir = await mkdtemp(path.join(tmpdir(), `kubefn-bench-${name}-`));
      await cp(path.join(examplesDir, 'hello'), dir, { recursive: true });
      const spec = YAML.parse(await readFile(path.join(dir, 'fn.yaml'), 'utf8')) as Record<string, unknown>;
      await writeFile(path.join(dir, 'fn.yaml'), YAML.stringify({ ...spec, name, scale }));
      return dir;
    };
    const readyReplicas = async (name: string) => (await api.status(name)).availableReplicas ?? 0;

    const fnDeployMs: number[] = [];
    const putMs: number[] = [];
    let image = '';
    for (let i = 0; i < reconcileTries; i++) {
      const name = `reconcile-${i}`;
      const dir = await functionDir(name, { initial: 1 });
      const t0 = performance.now();
      const out = JSON.parse(await p.fn(['--gateway', gateway!, 'deploy', dir, ...p.insecure, '--json'], env)) as { image: string };
      await waitFor(async () => (await readyReplicas(name)) >= 1, { timeoutMs: 120_000, what: `${name} ready` });
      fnDeployMs.push(performance.now() - t0);
      image = out.image;
      await p.fn(['--gateway', gateway!, 'delete', name], env);
    }
    for (let i = 0; i < reconcileTries; i++) {
      const name = `put-${i}`;
      const t0 = performance.now();
      await api.deploy({ name, image, scale: { initial: 1 } });
      await waitFor(async () => (await readyReplicas(name)) >= 1, { timeoutMs: 120_000, what: `${name} ready` });
      putMs.push(performance.now() - t0);
      await api.client.deleteFunction(name);
    }

    await api.deploy({ name: 'cold', image, scale: { stableWindow: '6s', scaleToZeroGrace: '0s' } });
    const apps = p.cluster.kc.makeApiClient(p.cluster.k8s.AppsV1Api);
    const core = p.cluster.kc.makeApiClient(p.cluster.k8s.CoreV1Api);
    const ns = p.functionNamespace;
    const poolPods = async (selector: string) => (await core.listNamespacedPod({ namespace: ns, labelSelector: `app.kubernetes.io/name=kubefn-pool,${selector}` })).items;
    const readyWarm = async () =>
      (await poolPods('kubefn.dev/pool=warm')).filter((pod) => pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')).length;
    const setPool = async (replicas: number) => {
      await apps.patchNamespacedDeploymentScale(
        { name: 'kubefn-pool', namespace: ns, body: { spec: { replicas } } },
        p.cluster.k8s.setHeaderOptions('Content-Type', 'application/merge-patch+json'),
      );
      await waitFor(async () => (replicas === 0 ? (await poolPods('kubefn.dev/pool=warm')).length === 0 : (await readyWarm()) >= replicas), {
        timeoutMs: 180_000,
        what: `the warm pool at ${replicas}`,
      });
    };
    /** Where a pool start's time went, by the gateways' own account (their log lines), p50 per step. */
    const poolSteps = async (name: string) => {
      type Step = 'fitMs' | 'claimedMs' | 'sentMs' | 'unpackedMs' | 'podUnpackMs' | 'readyMs';
      const lines: ({ time?: string } & Partial<Record<Step, number>>)[] = [];
      const gateways = (await core.listNamespacedPod({ namespace: p.namespace, labelSelector: 'app.kubernetes.io/name=kubefn-gateway' })).items;
      for (const gw of gateways) {
        const log = await core.readNamespacedPodLog({ name: gw.metadata!.name!, namespace: p.namespace, container: 'gateway' }).catch(() => '');
        for (const line of String(log).split('\n')) {
          if (!line.includes('a function started in a pool pod')) continue;
          const entry = JSON.parse(line) as { function?: string; time?: string } & Partial<Record<Step, number>>;
          if (entry.function === name) lines.push({ time: entry.time, fitMs: entry.fitMs, claimedMs: entry.claimedMs, sentMs: entry.sentMs, unpackedMs: entry.unpackedMs, podUnpackMs: entry.podUnpackMs, readyMs: entry.readyMs });
        }
      }
      const p50 = (key: Step) => {
        const values = lines.flatMap((l) => (l[key] === undefined ? [] : [l[key]]));
        return values.length ? Math.round(percentile(values, 50) * 10) / 10 : undefined;
      };
      return { starts: lines.length, each: lines, fitMs: p50('fitMs'), claimedMs: p50('claimedMs'), sentMs: p50('sentMs'), unpackedMs: p50('unpackedMs'), podUnpackMs: p50('podUnpackMs'), readyMs: p50('readyMs') };
    };
    /** `coldTries` requests to `cold` at zero, alternating gateways; with the pool, each from a full pool. */
    const coldStarts = async (pool: boolean): Promise<{ ms: number[]; fromPool: number }> => {
      const ms: number[] = [];
      let fromPool = 0;
      for (let i = 0; i < coldTries; i++) {
        await waitFor(
          async () =>
            (await apps.readNamespacedDeployment({ name: 'cold', namespace: ns })).spec?.replicas === 0 &&
            (await core.listNamespacedPod({ namespace: ns, labelSelector: 'kubefn.dev/function=cold' })).items.length === 0 &&
            (await poolPods('kubefn.dev/warm-for=cold')).length === 0 &&
            (!pool || (await readyWarm()) >= 2),
          { timeoutMs: 180_000, what: 'cold at zero' },
        );
        const gw = (await p.gateways())[i % 2]!;
        const t0 = performance.now();
        const res = await fetch(`${gw}/function/cold?name=bench`);
        const body = await res.text();
        if (res.status !== 200) throw new Error(`cold start ${i} answered ${res.status}: ${body}`);
        ms.push(performance.now() - t0);
        const served = (await poolPods('kubefn.dev/warm-for=cold')).length > 0;
        if (served) fromPool++;
        console.error(`cold start ${i + 1}/${coldTries}, pool ${pool ? 'on' : 'off'}: ${ms.at(-1)!.toFixed(0)} ms${served ? ' (a pool pod)' : ''}`);
      }
      return { ms, fromPool };
    };
    await setPool(2);
    const poolOn = await coldStarts(true);
    const steps = await poolSteps('cold');
    steps.each.sort((a, b) => String(a.time).localeCompare(String(b.time)));
    for (const start of steps.each) console.error(`a pool start, by its gateway: ${JSON.stringify(start)}`);
    await setPool(0);
    const poolOff = await coldStarts(false);
    await setPool(2);

    console.error(`applying ${manyCount} Functions at once`);
    const many = await applyManyFunctions(p, { count: manyCount, image, idleMs, onProgress: (line) => console.error(line) });
    await removeManyFunctions(p);

    const results = {
      machine: { cpus: os.cpus().length, node: process.version },
      clusterNode: p.cluster.node!.kind,
      ...(coldBuildMs !== undefined ? { controlPlaneColdBuildMs: Math.round(coldBuildMs) } : {}),
      installMs: Math.round(p.installMs),
      reconcile: { fnDeployToReadyMs: stats(fnDeployMs), putToReadyMs: stats(putMs) },
      coldStartThroughGatewayMs: { poolOn: { ...stats(poolOn.ms), fromPool: poolOn.fromPool, gatewaySteps: steps }, poolOff: stats(poolOff.ms) },
      manyFunctions: many,
    };
    const rows = [
      ...(coldBuildMs !== undefined ? [['Kubernetes binaries cold build (empty Go cache)', '1', `${(coldBuildMs / 1000).toFixed(0)} s`, '']] : []),
      ['fn install (platform image build + push, apply, all ready)', '1', `${(p.installMs / 1000).toFixed(1)} s`, ''],
      ['fn deploy (new function) -> first ready replica', String(reconcileTries), `${results.reconcile.fnDeployToReadyMs.p50} ms`, `${results.reconcile.fnDeployToReadyMs.max} ms`],
      ['PUT /system/functions -> first ready replica', String(reconcileTries), `${results.reconcile.putToReadyMs.p50} ms`, `${results.reconcile.putToReadyMs.max} ms`],
      [`cold start through a gateway, warm pool on (${poolOn.fromPool} of ${coldTries} from a pool pod)`, String(coldTries), `${results.coldStartThroughGatewayMs.poolOn.p50} ms`, `${results.coldStartThroughGatewayMs.poolOn.max} ms`],
      ['cold start through a gateway, warm pool at 0 (a new pod)', String(coldTries), `${results.coldStartThroughGatewayMs.poolOff.p50} ms`, `${results.coldStartThroughGatewayMs.poolOff.max} ms`],
    ];
    console.log(['| measure | tries | p50 | max |', '|---|---|---|---|', ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n'));
    console.log(
      `\nwarm pool starts, by the gateways' log (${steps.starts} starts, p50 ms from the request's activation): image fit ${steps.fitMs}, pod claimed ${steps.claimedMs}, ` +
        `claim sent ${steps.sentMs}, layer unpacked ${steps.unpackedMs} (the pod's own unpacking: ${steps.podUnpackMs}), function ready ${steps.readyMs}`,
    );
    const manyRows = [
      ['Functions applied at once', String(many.count)],
      ['creates answered (32 in flight)', `${(many.applyMs / 1000).toFixed(1)} s`],
      ['controller settled (every status at its generation)', `${(many.settleMs / 1000).toFixed(1)} s`],
      ['controller API calls until settled', `${many.controllerApiRequests} (${(many.controllerApiRequests / many.count).toFixed(1)} per Function)`],
      ['reconciles done / failed', `${many.reconciles.reconciled} / ${many.reconciles.failed}`],
      [`leader API calls in the ${idleMs / 1000} s at rest after`, String(many.idleApiRequests)],
      ['autoscaler RSS / heap with all tracked', `${many.autoscaler.rssMiB} MiB / ${many.autoscaler.heapUsedMiB} MiB`],
      [`autoscaler CPU at rest (${idleMs / 1000} s)`, `${many.autoscaler.cpuPercentIdle} %`],
    ];
    console.log(['', '| 1,000 Functions | |', '|---|---|', ...manyRows.map((r) => `| ${r.join(' | ')} |`)].join('\n'));
    await writeBenchResults('cluster', results);
    console.log(JSON.stringify(results));
  } finally {
    await p.close();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
