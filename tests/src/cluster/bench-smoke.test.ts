// The cluster benchmarks, run as their npm scripts run them but with one try each, so they cannot
// break silently: each starts its own test cluster, must exit 0 and write its JSON with the keys
// docs/benchmarks.md reads. Their figures are not checked. They need the Kubernetes binaries
// (built once into the cache, see support/control-plane.ts), as every test here does.

import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { benchJson, runBench, type BenchRun } from '../bench/run-bench.js';

/** Runs the benchmark, hands its run to `check`, and removes what it wrote. */
async function smoke(script: string, env: Record<string, string>, timeoutMs: number, check: (run: BenchRun) => Promise<void>) {
  const run = await runBench(script, [], { env, timeoutMs });
  try {
    await check(run);
  } finally {
    await rm(run.out, { recursive: true, force: true });
  }
}

const hasKeys = (json: Record<string, unknown>, keys: string[]) => assert.deepEqual(keys.filter((k) => !(k in json)), [], `missing keys in ${JSON.stringify(Object.keys(json))}`);
const oneTry = (m: unknown) => assert.equal((m as { all: number[] }).all.length, 1, JSON.stringify(m));

describe('cluster benchmark smoke runs', () => {
  it('npm run bench:k8s: KubernetesDriver.deploy() to the first answer', { timeout: 900_000 }, () =>
    smoke('tests/dist/bench/k8s-bench.js', { BENCH_TRIES: '1' }, 840_000, async (run) => {
      const json = await benchJson(run, 'k8s');
      hasKeys(json, ['machine', 'clusterNode', 'tries', 'deployToFirstAnswerMs']);
      assert.equal(json.tries, 1);
      oneTry(json.deployToFirstAnswerMs);
    }));

  it('npm run bench:cluster: kubefn installed on the test cluster', { timeout: 1_200_000 }, () =>
    smoke('tests/dist/bench/cluster-bench.js', { BENCH_TRIES: '1', BENCH_RECONCILE_TRIES: '1', BENCH_MANY: '20', BENCH_IDLE_MS: '5000' }, 1_140_000, async (run) => {
      const json = await benchJson(run, 'cluster');
      hasKeys(json, ['machine', 'clusterNode', 'installMs', 'reconcile', 'coldStartThroughGatewayMs', 'manyFunctions']);
      const many = json.manyFunctions as Record<string, unknown>;
      hasKeys(many, ['count', 'settleMs', 'controllerApiRequests', 'reconciles', 'idleApiRequests', 'autoscaler']);
      assert.equal(many.count, 20);
      const reconcile = json.reconcile as Record<string, unknown>;
      hasKeys(reconcile, ['fnDeployToReadyMs', 'putToReadyMs']);
      oneTry(reconcile.fnDeployToReadyMs);
      oneTry(reconcile.putToReadyMs);
      const cold = json.coldStartThroughGatewayMs as Record<string, Record<string, unknown>>;
      hasKeys(cold, ['poolOn', 'poolOff']);
      hasKeys(cold.poolOn!, ['fromPool', 'gatewaySteps']);
      oneTry(cold.poolOn);
      oneTry(cold.poolOff);
    }));
});
