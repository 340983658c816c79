// `npm run bench:cli`: how long `fn` takes to start and finish a command, next to a bare
// `node -e 0` on the same machine: `fn --help`, `fn list` and `fn invoke hello` against a running
// `fn up`, each a fresh process as a person's shell starts it. Prints a table and writes cli.json.
//
// The runs are interleaved (one of each command per round, in turn), so a busy moment on a
// shared machine slows every row alike and the ratio to `node -e 0` stays meaningful.
//
// Env: BENCH_RUNS=30 (rounds), BENCH_WARMUP=3 (rounds not counted: the file cache, the replica),
// BENCH_OUT (where cli.json goes).

import { spawnSync } from 'node:child_process';
import { cpus } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { deployFunction, GatewayClient } from '@kubefn/cli';
import { fnBin, newHome, repoRoot, startPlatform } from '../support/platform-process.js';
import { percentile } from './cold-start.js';
import { writeBenchResults } from './results.js';

const knob = (name: string, fallback: number, min: number): number => {
  const raw = process.env[name];
  const n = raw === undefined || raw === '' ? fallback : Number(raw);
  if (!Number.isInteger(n) || n < min) throw new Error(`${name} must be a whole number of at least ${min} (got ${raw})`);
  return n;
};
const settings = { runs: knob('BENCH_RUNS', 30, 1), warmup: knob('BENCH_WARMUP', 3, 0) };

interface Row {
  label: string;
  args: string[];
  /** Wall-clock milliseconds of each counted run, in order. */
  all: number[];
}

/** Runs one command to its end and returns its wall-clock time in ms; a failed run stops the bench. */
function timeRun(args: string[], env: NodeJS.ProcessEnv): number {
  const started = performance.now();
  const r = spawnSync(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1024 * 1024, timeout: 60_000 });
  const ms = performance.now() - started;
  if (r.error || r.status !== 0) {
    throw new Error(`node ${args.join(' ')} failed (${r.error?.message ?? `exit ${r.status}`}):\n${r.stderr?.toString() ?? ''}`);
  }
  return ms;
}

async function main(): Promise<void> {
  const platform = await startPlatform(await newHome(), { args: ['--no-nats'] });
  try {
    // One ready replica, so `fn invoke` measures the CLI and one warm call, not a cold start.
    const client = new GatewayClient({ gateway: platform.url, token: platform.token });
    await deployFunction(client, path.join(repoRoot, 'examples', 'hello'), { overrides: { min: 1 } });

    const env = { ...process.env, KUBEFN_GATEWAY: platform.url, KUBEFN_TOKEN: platform.token, NO_COLOR: '1' };
    const rows: Row[] = [
      { label: 'node -e 0', args: ['-e', '0'], all: [] },
      { label: 'fn --help', args: [fnBin, '--help'], all: [] },
      { label: 'fn list', args: [fnBin, 'list'], all: [] },
      { label: 'fn invoke hello', args: [fnBin, 'invoke', 'hello'], all: [] },
    ];
    for (let round = 0; round < settings.warmup + settings.runs; round++) {
      for (const row of rows) {
        const ms = timeRun(row.args, env);
        if (round >= settings.warmup) row.all.push(ms);
      }
    }

    const baseline = percentile(rows[0]!.all, 50);
    const summary = rows.map((r) => {
      const p50 = percentile(r.all, 50);
      return { label: r.label, p50: round1(p50), p90: round1(percentile(r.all, 90)), min: round1(Math.min(...r.all)), ratioToNode: round2(p50 / baseline) };
    });
    const results = {
      machine: { cpus: cpus().length, node: process.version },
      settings,
      rows: summary,
      samples: Object.fromEntries(rows.map((r) => [r.label, r.all.map(round1)])),
    };

    console.log(`\n\`fn\` start-up, ${settings.runs} runs each (wall clock per process, ms; ${settings.warmup} warm-up rounds not counted)\n`);
    console.log('| command | p50 | p90 | min | p50 / node -e 0 |');
    console.log('|---|---:|---:|---:|---:|');
    for (const s of summary) console.log(`| \`${s.label}\` | ${s.p50.toFixed(1)} | ${s.p90.toFixed(1)} | ${s.min.toFixed(1)} | ${s.ratioToNode.toFixed(2)} |`);
    console.log(`\n${JSON.stringify(results)}`);
    console.log(`\nwrote ${await writeBenchResults('cli', results)}`);
  } finally {
    await platform.stop();
  }
}

const round1 = (n: number) => Math.round(n * 10) / 10;
const round2 = (n: number) => Math.round(n * 100) / 100;

await main();
