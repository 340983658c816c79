// `npm run bench`: cold starts of the hello example through the embedded gateway, with the warm
// pool on (the default) and off (`fn up --pool 0`), next to a bare Node process start, measured
// side by side in one run. Prints a table and writes bench-results/cold-start.json.
//
// Flags: --cold-tries=20 (cold starts per row, and bare Node starts). Env BENCH_OUT: where the
// JSON goes (default bench-results/).

import { spawn } from 'node:child_process';
import path from 'node:path';
import { Api } from '../support/api.js';
import { newHome, repoRoot, startPlatform } from '../support/platform-process.js';
import { coldStarts, percentile } from './cold-start.js';
import { writeBenchResults } from './results.js';

const args = new Map(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=') as [string, string]));
const coldTries = Number(args.get('cold-tries') ?? 20);
if (!Number.isInteger(coldTries) || coldTries < 1) throw new Error(`--cold-tries must be a whole number of at least 1 (got ${String(args.get('cold-tries'))})`);
const hello = path.join(repoRoot, 'examples', 'hello');

/** How long this machine takes to start a bare Node process that answers over IPC: the floor under a plain start. */
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

/** Cold starts on a platform of its own, started with `fnUpArgs`. */
async function coldOn(fnUpArgs: string[], warmPool: boolean): Promise<number[]> {
  const platform = await startPlatform(await newHome(), { args: fnUpArgs });
  try {
    const api = new Api(platform.url, platform.token);
    const image = await api.upload(hello, 'handler.js');
    // One cold start first, not counted: the first call through a gateway process compiles its
    // call path; what is measured is a function's cold start on a platform already serving.
    await coldStarts(api, image, 1, 'hello-first', { warmPool });
    return await coldStarts(api, image, coldTries, 'hello-cold', { warmPool });
  } finally {
    await platform.stop();
  }
}

const summary = (ms: number[]) => ({ p50: percentile(ms, 50), max: Math.max(...ms), all: ms.map((x) => Math.round(x * 10) / 10) });

async function main() {
  const poolOn = await coldOn([], true);
  const poolOff = await coldOn(['--pool', '0'], false);
  const nodeStart = await nodeStartMs(coldTries);
  const results = {
    machine: { cpus: (await import('node:os')).cpus().length, node: process.version },
    settings: { coldTries },
    coldStartMs: { poolOn: summary(poolOn), poolOff: summary(poolOff) },
    bareNodeStartMs: summary(nodeStart),
  };
  const row = (label: string, s: { p50: number; max: number }) => `| ${label} | ${s.p50.toFixed(1)} ms | ${s.max.toFixed(1)} ms |`;
  console.log(
    [
      `Cold start of hello through the gateway, ${coldTries} tries each (process driver)`,
      '',
      '| measure | p50 | max |',
      '|---|---|---|',
      row('cold start, warm pool on (default)', results.coldStartMs.poolOn),
      row('cold start, warm pool off (--pool 0)', results.coldStartMs.poolOff),
      row('bare `node` process start with IPC', results.bareNodeStartMs),
    ].join('\n'),
  );
  await writeBenchResults('cold-start', results);
  console.log(JSON.stringify(results));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
