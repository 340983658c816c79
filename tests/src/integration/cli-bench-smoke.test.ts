// `npm run bench:cli` run as its npm script runs it, with two rounds, so the benchmark cannot
// break silently: it must exit 0 and write the JSON docs/benchmarks.md reads. Its figures are not checked.

import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { benchJson, runBench } from '../bench/run-bench.js';

describe('benchmark smoke run', () => {
  it('npm run bench:cli: fn --help, list and invoke next to node -e 0', { timeout: 240_000 }, async () => {
    const run = await runBench('tests/dist/bench/cli-bench.js', [], { env: { BENCH_RUNS: '2', BENCH_WARMUP: '0' }, timeoutMs: 180_000 });
    try {
      const json = await benchJson(run, 'cli');
      assert.deepEqual(json.settings, { runs: 2, warmup: 0 });
      const rows = json.rows as { label: string; p50: number; p90: number; ratioToNode: number }[];
      assert.deepEqual(rows.map((r) => r.label), ['node -e 0', 'fn --help', 'fn list', 'fn invoke hello']);
      for (const row of rows) assert.ok(row.p50 > 0 && row.p90 >= row.p50, JSON.stringify(row));
      assert.equal((json.samples as Record<string, number[]>)['fn invoke hello']?.length, 2);
      assert.match(run.stdout, /\| `fn --help` \|/);
    } finally {
      await rm(run.out, { recursive: true, force: true });
    }
  });
});
