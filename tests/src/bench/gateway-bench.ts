// `npm run bench:gateway`: the hello example's replica called directly, through Debian's nginx
// (one worker, upstream keep-alive) and through kubefn's gateway, at concurrency 1, 16 and 64,
// measured side by side in one run against the same replica process. Prints a table and writes
// bench-results/gateway.json (`-- --json` prints only the JSON).
//
// Flags: --seconds=10 (per throughput row), --latency-calls=3000 (sequential calls timed at
// concurrency 1), --warmup=2000 (calls per path before measuring), --pipelining=N (fn up's
// --pipelining; unset: its default), --json. Env BENCH_OUT: where
// the JSON goes (default bench-results/).

import os from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import { Pool } from 'undici';
import { waitFor } from '@kubefn/platform/testing';
import { Api } from '../support/api.js';
import { startNginxProxy } from '../support/nginx.js';
import { newHome, repoRoot, startPlatform } from '../support/platform-process.js';
import { percentile } from './cold-start.js';
import { childrenOf, cpuMs } from './proc-cpu.js';
import { writeBenchResults } from './results.js';

const args = new Map(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=') as [string, string | undefined]));
const seconds = Number(args.get('seconds') ?? 10);
const latencyCalls = Number(args.get('latency-calls') ?? 3000);
const warmupCalls = Number(args.get('warmup') ?? 2000);
const jsonOnly = args.has('json');
/** fn up --pipelining for the gateway; unset: the platform's default. */
const pipelining = args.get('pipelining');
for (const [flag, n] of Object.entries({ seconds, 'latency-calls': latencyCalls, warmup: warmupCalls })) {
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${flag} must be a whole number of at least 1 (got ${String(args.get(flag))})`);
}
const concurrencies = [1, 16, 64];
const hello = path.join(repoRoot, 'examples', 'hello');
const say = (line: string) => {
  if (!jsonOnly) console.error(line);
};

interface LoadResult {
  rps: number;
  p50ms: number;
  p99ms: number;
  errors: number;
  /** CPU the proxy (nginx's worker, the gateway's process) spent per request, µs; absent for direct. */
  proxyCpuUsPerRequest?: number | undefined;
}

/** autocannon against `url`; with `proxyPid`, the CPU that process used per request meanwhile. */
async function load(url: string, connections: number, proxyPid?: number): Promise<LoadResult> {
  const before = proxyPid === undefined ? undefined : cpuMs(proxyPid);
  const r = await autocannon({ url, connections, duration: seconds, pipelining: 1 });
  const after = proxyPid === undefined ? undefined : cpuMs(proxyPid);
  const cpu = before !== undefined && after !== undefined && r.requests.total > 0 ? Math.round(((after - before) * 1000) / r.requests.total) : undefined;
  return { rps: Math.round(r.requests.average), p50ms: r.latency.p50, p99ms: r.latency.p99, errors: r.errors + r.timeouts + r.non2xx, ...(cpu !== undefined ? { proxyCpuUsPerRequest: cpu } : {}) };
}

/** Sequential requests on one keep-alive connection, each timed with a µs clock, in ms. */
async function sequentialLatency(url: string, n: number): Promise<{ p50ms: number; p99ms: number }> {
  const u = new URL(url);
  const pool = new Pool(u.origin, { connections: 1 });
  const times: number[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      const res = await pool.request({ path: u.pathname + u.search, method: 'GET' });
      await res.body.text();
      if (res.statusCode !== 200) throw new Error(`${url} answered ${res.statusCode}`);
      times.push(performance.now() - t0);
    }
  } finally {
    await pool.close();
  }
  const round = (x: number) => Math.round(x * 1000) / 1000;
  return { p50ms: round(percentile(times, 50)), p99ms: round(percentile(times, 99)) };
}

/** The URL of `name`'s one ready replica, from the line the platform logs when it is ready. */
async function replicaUrl(api: Api, name: string): Promise<string> {
  return waitFor(async () => {
    const text = await (await api.call('GET', `/system/logs?name=${name}&follow=false&tail=100`)).text();
    return /replica \S+ ready at (http:\/\/127\.0\.0\.1:\d+)/.exec(text)?.[1];
  }, { what: `${name}'s replica URL in its logs` });
}

async function main() {
  // No per-request log line: nginx runs with access_log off.
  const platform = await startPlatform(await newHome(), { args: ['--no-request-log', ...(pipelining !== undefined ? ['--pipelining', pipelining] : [])] });
  const api = new Api(platform.url, platform.token);
  let nginx: Awaited<ReturnType<typeof startNginxProxy>> | undefined;
  try {
    const image = await api.upload(hello, 'handler.js');
    await api.deploy({ name: 'hello', image, scale: { min: 1, max: 1 } });
    await waitFor(async () => (await api.status('hello')).availableReplicas >= 1, { what: 'hello ready' });
    const direct = await replicaUrl(api, 'hello');
    nginx = await startNginxProxy(direct);
    const paths = { direct: `${direct}/`, nginx: `${nginx.url}/`, gateway: `${platform.url}/function/hello` };
    const nginxWorker = childrenOf(nginx.pid)[0]?.pid;
    const proxyPids: Record<string, number | undefined> = { direct: undefined, nginx: nginxWorker, gateway: platform.child.pid };
    for (const url of Object.values(paths)) await autocannon({ url, connections: 8, amount: warmupCalls });

    const throughput: Record<string, Record<string, LoadResult>> = {};
    for (const c of concurrencies) {
      throughput[`c${c}`] = {};
      for (const [what, url] of Object.entries(paths)) {
        say(`concurrency ${c}: ${what} for ${seconds} s`);
        throughput[`c${c}`]![what] = await load(url, c, proxyPids[what]);
      }
    }
    const latency: Record<string, { p50ms: number; p99ms: number }> = {};
    for (const [what, url] of Object.entries(paths)) latency[what] = await sequentialLatency(url, latencyCalls);
    const ratio = (c: number, what: 'gateway' | 'nginx', of: 'nginx' | 'direct') => Math.round((throughput[`c${c}`]![what]!.rps / throughput[`c${c}`]![of]!.rps) * 100) / 100;
    const added = (what: 'gateway' | 'nginx') => ({
      p50ms: Math.round((latency[what]!.p50ms - latency.direct!.p50ms) * 1000) / 1000,
      p99ms: Math.round((latency[what]!.p99ms - latency.direct!.p99ms) * 1000) / 1000,
    });
    const results = {
      machine: { cpus: os.cpus().length, node: process.version },
      settings: { seconds, latencyCalls, warmupCalls, nginxWorkers: 1, pipelining: pipelining === undefined ? 'default' : Number(pipelining) },
      throughput,
      gatewayVsNginx: Object.fromEntries(concurrencies.map((c) => [`c${c}`, ratio(c, 'gateway', 'nginx')])),
      gatewayVsDirect: Object.fromEntries(concurrencies.map((c) => [`c${c}`, ratio(c, 'gateway', 'direct')])),
      c1Latency: latency,
      addedLatency: { gateway: added('gateway'), nginx: added('nginx') },
    };
    const row = (c: number) => {
      const t = throughput[`c${c}`]!;
      const cell = (r: LoadResult) => `${r.rps} (${r.p50ms} / ${r.p99ms})`;
      const cpu = (r: LoadResult) => (r.proxyCpuUsPerRequest === undefined ? '?' : String(r.proxyCpuUsPerRequest));
      return `| ${c} | ${cell(t.direct!)} | ${cell(t.nginx!)} | ${cell(t.gateway!)} | ${ratio(c, 'gateway', 'nginx').toFixed(2)} | ${cpu(t.nginx!)} / ${cpu(t.gateway!)} | ${t.direct!.errors + t.nginx!.errors + t.gateway!.errors} |`;
    };
    const table = [
      `req/s (latency p50 / p99 ms), hello through each path to the same replica (gateway pipelining: ${pipelining ?? 'the default'})`,
      '',
      '| concurrency | direct | nginx (1 worker) | kubefn gateway | gateway / nginx | proxy CPU µs per request, nginx / gateway | errors |',
      '|---|---|---|---|---|---|---|',
      ...concurrencies.map(row),
      '',
      `Sequential calls at concurrency 1 (${latencyCalls}, µs clock), p50 / p99 ms: direct ${latency.direct!.p50ms} / ${latency.direct!.p99ms}; ` +
        `nginx ${latency.nginx!.p50ms} / ${latency.nginx!.p99ms}; gateway ${latency.gateway!.p50ms} / ${latency.gateway!.p99ms}`,
      `Added over direct, p50 / p99 ms: gateway ${results.addedLatency.gateway.p50ms} / ${results.addedLatency.gateway.p99ms}; nginx ${results.addedLatency.nginx.p50ms} / ${results.addedLatency.nginx.p99ms}`,
    ].join('\n');
    if (!jsonOnly) console.log(table);
    await writeBenchResults('gateway', results);
    console.log(JSON.stringify(results));
  } finally {
    await nginx?.stop();
    await platform.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
