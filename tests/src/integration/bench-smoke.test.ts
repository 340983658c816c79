// Every benchmark that needs no cluster, run as its npm script runs it but with tiny durations
// and try counts, so a benchmark cannot break silently: each must exit 0 and write its JSON with
// the keys docs/benchmarks.md reads. Its figures are not checked. (The cluster benchmarks: in
// tests/src/cluster/bench-smoke.test.ts.)

import assert from 'node:assert/strict';
import { readdir, rm } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { benchJson, runBench, type BenchRun } from '../bench/run-bench.js';

/** Runs the benchmark, hands its run to `check`, and removes what it wrote. */
async function smoke(script: string, args: string[] | ((out: string) => string[]), env: Record<string, string>, timeoutMs: number, check: (run: BenchRun) => Promise<void>) {
  const run = await runBench(script, args, { env, timeoutMs });
  try {
    await check(run);
  } finally {
    await rm(run.out, { recursive: true, force: true });
  }
}

const hasKeys = (json: Record<string, unknown>, keys: string[]) => assert.deepEqual(keys.filter((k) => !(k in json)), [], `missing keys in ${JSON.stringify(Object.keys(json))}`);

describe('benchmark smoke runs', () => {
  it('npm run bench: the gateway next to the direct runtime', { timeout: 240_000 }, () =>
    smoke('tests/dist/bench/gateway-bench.js', ['--cold-tries=2', '--seconds=1', '--latency-calls=50', '--warmup=50'], {}, 180_000, async (run) => {
      const json = await benchJson(run, 'gateway');
      hasKeys(json, ['machine', 'settings', 'coldStartMs', 'bareNodeStartMs', 'c1', 'c1Latency', 'c32']);
      assert.deepEqual(json.settings, { coldTries: 2, seconds: 1, latencyCalls: 50, warmupCalls: 50 });
      assert.equal((json.coldStartMs as { all: number[] }).all.length, 2);
      for (const row of ['c1', 'c32']) hasKeys(json[row] as Record<string, unknown>, ['gateway', 'direct']);
    }));

  it('npm run bench:image: kubefn builds next to podman builds', { timeout: 420_000 }, () =>
    smoke('tests/dist/bench/image-bench.js', [], { BENCH_RUNS: '1', BENCH_EXAMPLES: 'hello' }, 360_000, async (run) => {
      const json = await benchJson(run, 'image-bench');
      hasKeys(json, ['machine', 'settings', 'summary', 'samples']);
      const hello = (json.summary as Record<string, Record<string, unknown>>).hello!;
      hasKeys(hello, ['kubefn-cold', 'kubefn-warm', 'podman-cold-pulled', 'podman-cold-cached', 'podman-warm']);
      assert.equal((json.samples as unknown[]).length, 5, 'one sample per variant');
    }));

  it('npm run bench:podman: cold starts with the podman driver', { timeout: 600_000 }, () =>
    smoke('tests/dist/bench/podman-bench.js', ['--cold-tries=1'], {}, 540_000, async (run) => {
      const json = await benchJson(run, 'podman');
      hasKeys(json, ['machine', 'tries', 'image', 'rows']);
      assert.equal(json.tries, 1);
      const rows = json.rows as { label: string; p50: number; max: number; all: number[] }[];
      assert.equal(rows.length, 4);
      for (const row of rows) {
        hasKeys(row, ['label', 'p50', 'max', 'all']);
        assert.equal(row.all.length, 1, row.label);
      }
    }));

  it('npm run sim: the autoscaler simulator', { timeout: 120_000 }, () =>
    // The simulator takes --out rather than BENCH_OUT.
    smoke('autoscaler/dist/sim/main.js', (out) => ['--scenario', 'spike', '--out', out], {}, 60_000, async (run) => {
      assert.deepEqual((await readdir(run.out)).sort(), ['spike.csv', 'spike.svg', 'summary.json', 'summary.md']);
      const json = await benchJson(run, 'summary');
      hasKeys(json, ['command', 'options', 'summaries']);
      assert.equal((json.summaries as unknown[]).length, 1);
    }));
});
