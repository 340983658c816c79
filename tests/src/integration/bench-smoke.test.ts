// Every benchmark that needs no cluster, run as its npm script runs it but with tiny durations
// and try counts, so a benchmark cannot break silently: each must exit 0 and write its JSON with
// the keys docs/benchmarks.md reads. Its figures are not checked. (The cluster benchmarks: in
// tests/src/cluster/bench-smoke.test.ts.)

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdir, rm } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { benchJson, runBench, type BenchRun } from '../bench/run-bench.js';
import { repoRoot } from '../support/platform-process.js';

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
  it('npm run bench: cold starts with the warm pool on and off', { timeout: 240_000 }, () =>
    smoke('tests/dist/bench/cold-start-bench.js', ['--cold-tries=2'], {}, 180_000, async (run) => {
      const json = await benchJson(run, 'cold-start');
      hasKeys(json, ['machine', 'settings', 'coldStartMs', 'bareNodeStartMs']);
      assert.deepEqual(json.settings, { coldTries: 2 });
      const cold = json.coldStartMs as Record<string, { all: number[] }>;
      hasKeys(cold, ['poolOn', 'poolOff']);
      assert.equal(cold.poolOn!.all.length, 2);
      assert.equal(cold.poolOff!.all.length, 2);
    }));

  it('npm run bench:gateway: direct, nginx and the gateway to the same replica', { timeout: 240_000 }, () =>
    // With pipelining off (it is on by default): that path answers every call too.
    smoke('tests/dist/bench/gateway-bench.js', ['--seconds=1', '--latency-calls=50', '--warmup=50', '--pipelining=1'], {}, 180_000, async (run) => {
      const json = await benchJson(run, 'gateway');
      hasKeys(json, ['machine', 'settings', 'throughput', 'gatewayVsNginx', 'gatewayVsDirect', 'c1Latency', 'addedLatency']);
      assert.deepEqual(json.settings, { seconds: 1, latencyCalls: 50, warmupCalls: 50, nginxWorkers: 1, pipelining: 1 });
      const throughput = json.throughput as Record<string, Record<string, { errors: number }>>;
      assert.deepEqual(Object.keys(throughput), ['c1', 'c16', 'c64']);
      for (const row of Object.values(throughput)) {
        hasKeys(row, ['direct', 'nginx', 'gateway']);
        for (const [path, r] of Object.entries(row)) assert.equal(r.errors, 0, `${path} answered every call`);
      }
    }));

  it('npm run bench:events: HTTP, core NATS and JetStream triggers side by side', { timeout: 300_000 }, () =>
    smoke(
      'tests/dist/bench/events-bench.js',
      [],
      { BENCH_MESSAGES: '300', BENCH_SECONDS: '1', BENCH_RATE: '200', BENCH_LOW_RATE: '50', BENCH_WARMUP: '50', BENCH_CONNECTIONS: '4' },
      240_000,
      async (run) => {
        const json = await benchJson(run, 'events');
        hasKeys(json, ['machine', 'settings', 'clock', 'rows', 'triggers']);
        type Run = { sent: number; answered: number; handled: number; distinct: number; droppedAtGateway: number };
        type Row = { throughput: Run; latency: Run; latencyLow: Run };
        const rows = json.rows as Record<'http' | 'nats' | 'jetstream', Row>;
        assert.deepEqual(Object.keys(rows), ['http', 'nats', 'jetstream']);
        for (const [name, row] of Object.entries(rows)) {
          hasKeys(row, ['throughput', 'latency', 'latencyLow']);
          for (const r of [row.latency, row.latencyLow]) hasKeys(r, ['offeredPerSec', 'sent', 'handled', 'p50ms', 'p99ms', 'maxms', 'cpuUsPerMsg']);
          assert.equal(row.latency.sent, 200, name);
          assert.equal(row.latencyLow.sent, 50, name);
        }
        // Every HTTP request and every JetStream message reached the handler; core NATS may drop
        // at the trigger's in-flight limit, and counts each message it dropped.
        const { http, nats, jetstream } = rows;
        for (const r of [http.latency, http.latencyLow, jetstream.latency, jetstream.latencyLow]) assert.equal(r.handled, r.sent);
        // autocannon stops at its duration: requests it sent then may or may not have arrived.
        assert.ok(http.throughput.answered <= http.throughput.handled && http.throughput.handled <= http.throughput.sent, JSON.stringify(http.throughput));
        assert.equal(jetstream.throughput.distinct, 300);
        assert.equal(nats.throughput.distinct + nats.throughput.droppedAtGateway, 300);
        for (const r of [nats.latency, nats.latencyLow]) assert.equal(r.handled + r.droppedAtGateway, r.sent);
      },
    ));

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
      assert.equal(rows.length, 5);
      for (const row of rows) {
        hasKeys(row, ['label', 'p50', 'max', 'all']);
        assert.equal(row.all.length, 1, row.label);
      }
    }));

  it('npm run bench:autoscaler: window heap and CPU per decision round', { timeout: 120_000 }, () =>
    smoke('tests/dist/bench/autoscaler-bench.js', ['--functions', '20', '--rounds', '2'], {}, 60_000, async (run) => {
      const json = await benchJson(run, 'autoscaler');
      hasKeys(json, ['functions', 'rounds', 'stableWindowMs', 'ring', 'buckets', 'autoscaler']);
      assert.equal(json.functions, 20);
      for (const row of ['ring', 'buckets', 'autoscaler']) hasKeys(json[row] as Record<string, unknown>, ['heapBytes', 'cpuMsPerRound']);
    }));

  it('npm run sim: the autoscaler simulator', { timeout: 120_000 }, () =>
    // The simulator takes --out rather than BENCH_OUT.
    smoke('autoscaler/dist/sim/main.js', (out) => ['--scenario', 'spike', '--out', out], {}, 60_000, async (run) => {
      // Both deciders side by side by default, each with its CSV and plot, and the two on one chart.
      assert.deepEqual((await readdir(run.out)).sort(), [
        'spike.compare.svg', 'spike.demand.csv', 'spike.demand.svg', 'spike.knative.csv', 'spike.knative.svg', 'summary.json', 'summary.md',
      ]);
      const json = await benchJson(run, 'summary');
      hasKeys(json, ['command', 'options', 'summaries']);
      assert.deepEqual((json.summaries as { decider: string }[]).map((s) => s.decider).sort(), ['demand', 'knative']);
    }));

  it('npm run sim:targets: the demand decider meets every target, next to Knative\'s', { timeout: 120_000 }, async () => {
    // The simulator is seeded: the same figures on every machine, so its targets are checked here.
    const { stdout } = await promisify(execFile)(process.execPath, ['autoscaler/dist/sim/targets.js', '--json'], { cwd: repoRoot, timeout: 100_000, maxBuffer: 1 << 20 }).catch((err: { stdout?: string }) => ({ stdout: err.stdout ?? '' }));
    const json = JSON.parse(stdout) as { rows: { row: string; demand: string; target: string; met: boolean }[] };
    assert.ok(json.rows.length >= 10, `${json.rows.length} rows`);
    assert.deepEqual(json.rows.filter((r) => !r.met).map((r) => `${r.row}: ${r.demand} (target ${r.target})`), []);
  });
});
