// `npm run bench`: the hello example through the embedded gateway, next to calling its runtime
// directly, measured side by side in one run. Prints a table and writes JSON.
//
// Flags: --cold-tries=20 (cold starts, and bare Node starts), --seconds=10 (per throughput row),
// --latency-calls=3000 (sequential calls timed at concurrency 1), --warmup=2000 (calls per path
// before measuring). Env BENCH_OUT: where gateway.json goes (default bench-results/).

import { spawn } from 'node:child_process';
import path from 'node:path';
import autocannon from 'autocannon';
import { Pool } from 'undici';
import { bundleFunction } from '@kubefn/builder';
import { Api } from '../support/api.js';
import { newHome, repoRoot, startPlatform } from '../support/platform-process.js';
import { waitFor } from '@kubefn/platform/testing';
import { coldStarts, percentile } from './cold-start.js';
import { writeBenchResults } from './results.js';

const args = new Map(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=') as [string, string]));
const coldTries = Number(args.get('cold-tries') ?? 20);
const seconds = Number(args.get('seconds') ?? 10);
const latencyCalls = Number(args.get('latency-calls') ?? 3000);
const warmupCalls = Number(args.get('warmup') ?? 2000);
for (const [flag, n] of Object.entries({ 'cold-tries': coldTries, seconds, 'latency-calls': latencyCalls, warmup: warmupCalls })) {
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${flag} must be a whole number of at least 1 (got ${String(args.get(flag))})`);
}
const hello = path.join(repoRoot, 'examples', 'hello');

interface LoadResult {
  rps: number;
  p50ms: number;
  p99ms: number;
  errors: number;
  non2xx: number;
}

async function load(url: string, connections: number): Promise<LoadResult> {
  const r = await autocannon({ url, connections, duration: seconds, pipelining: 1 });
  return {
    rps: Math.round(r.requests.average),
    p50ms: r.latency.p50,
    p99ms: r.latency.p99,
    errors: r.errors + r.timeouts,
    non2xx: r.non2xx,
  };
}

/** Sequential requests on one keep-alive connection, timed each with a µs clock. */
async function sequentialLatency(url: string, n: number): Promise<{ p50ms: number; p99ms: number }> {
  const pool = new Pool(new URL(url).origin, { connections: 1 });
  const path = new URL(url).pathname + new URL(url).search;
  const times: number[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      const res = await pool.request({ path, method: 'GET' });
      await res.body.text();
      if (res.statusCode !== 200) throw new Error(`answered ${res.statusCode}`);
      times.push(performance.now() - t0);
    }
  } finally {
    await pool.close();
  }
  const round = (x: number) => Math.round(x * 1000) / 1000;
  return { p50ms: round(percentile(times, 50)), p99ms: round(percentile(times, 99)) };
}


/** How long this machine takes to start a bare Node process that answers over IPC: the floor under any cold start. */
async function nodeStartMs(tries: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < tries; i++) {
    const t0 = performance.now();
    const child = spawn(process.execPath, ['-e', 'process.send("up", () => process.exit(0))'], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    await new Promise((resolve) => child.once('message', resolve));
    out.push(performance.now() - t0);
    await new Promise((resolve) => child.once('exit', resolve));
  }
  return out;
}

/** Starts the bundled runtime on its own, as a replica would run, and returns its URL. */
async function startDirect(bundleFile: string) {
  const child = spawn(process.execPath, ['--enable-source-maps', bundleFile], {
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    env: { PATH: process.env.PATH, PORT: '0', ADMIN_PORT: '0', KUBEFN_HOST: '127.0.0.1', KUBEFN_FUNCTION: 'hello' },
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.on('message', (m: { type?: string; port?: number }) => m.type === 'kubefn:ready' && resolve(m.port!));
    child.once('exit', (code) => reject(new Error(`runtime exited with ${code}`)));
  });
  return { url: `http://127.0.0.1:${port}/`, stop: () => child.kill('SIGTERM') };
}

async function main() {
  const home = await newHome();
  const platform = await startPlatform(home);
  const api = new Api(platform.url, platform.token);
  let direct: Awaited<ReturnType<typeof startDirect>> | undefined;
  try {
    const image = await api.upload(hello, 'handler.js');

    const cold = await coldStarts(api, image, coldTries);

    const nodeStart = await nodeStartMs(coldTries);

    await api.deploy({ name: 'hello', image, scale: { min: 1 } });
    await waitFor(async () => (await api.status('hello')).availableReplicas >= 1, { what: 'hello ready' });
    const bundle = await bundleFunction({ dir: hello, handler: 'handler.js' });
    direct = await startDirect(bundle.file);
    const viaGateway = `${platform.url}/function/hello`;
    // Warm both paths up before measuring.
    await autocannon({ url: viaGateway, connections: 8, amount: warmupCalls });
    await autocannon({ url: direct.url, connections: 8, amount: warmupCalls });

    const results = {
      machine: { cpus: (await import('node:os')).cpus().length, node: process.version },
      settings: { coldTries, seconds, latencyCalls, warmupCalls },
      coldStartMs: { p50: percentile(cold, 50), max: Math.max(...cold), all: cold.map((x) => Math.round(x * 10) / 10) },
      bareNodeStartMs: { p50: percentile(nodeStart, 50), max: Math.max(...nodeStart) },
      c1: { gateway: await load(viaGateway, 1), direct: await load(direct.url, 1) },
      c1Latency: { gateway: await sequentialLatency(viaGateway, latencyCalls), direct: await sequentialLatency(direct.url, latencyCalls) },
      c32: { gateway: await load(viaGateway, 32), direct: await load(direct.url, 32) },
    };

    const row = (label: string, g: LoadResult, d: LoadResult) =>
      `| ${label} | ${g.rps} | ${d.rps} | ${(g.rps / d.rps).toFixed(2)} | ${g.p50ms} / ${g.p99ms} | ${d.p50ms} / ${d.p99ms} | ${g.errors + g.non2xx} |`;
    const table = [
      `Cold start through the gateway (${coldTries} tries): p50 ${results.coldStartMs.p50.toFixed(1)} ms, max ${results.coldStartMs.max.toFixed(1)} ms`,
      `Bare Node process start with IPC on this machine (${coldTries} tries): p50 ${results.bareNodeStartMs.p50.toFixed(1)} ms, max ${results.bareNodeStartMs.max.toFixed(1)} ms`,
      '',
      '| load | gateway req/s | direct req/s | ratio | gateway p50 / p99 ms | direct p50 / p99 ms | gateway errors |',
      '|---|---|---|---|---|---|---|',
      row('concurrency 1', results.c1.gateway, results.c1.direct),
      row('concurrency 32', results.c32.gateway, results.c32.direct),
      '',
      `Warm latency at concurrency 1 (${latencyCalls} sequential calls, µs clock): gateway p50 ${results.c1Latency.gateway.p50ms} ms / p99 ${results.c1Latency.gateway.p99ms} ms; ` +
        `direct p50 ${results.c1Latency.direct.p50ms} ms / p99 ${results.c1Latency.direct.p99ms} ms`,
    ].join('\n');
    console.log(table);
    await writeBenchResults('gateway', results);
    console.log(JSON.stringify(results));
  } finally {
    direct?.stop();
    await platform.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
