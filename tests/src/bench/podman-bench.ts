// `npm run bench:podman`: cold start through the gateway with the podman driver (warm pool on
// and off, bridged ports and host network), next to the process driver and a bare `podman run`
// to ready, measured side by side in one run. Prints a table and writes bench-results/podman.json.

import os from 'node:os';
import path from 'node:path';
import { deployFunction } from '@kubefn/cli';
import { Podman } from '@kubefn/platform';
import { waitFor } from '@kubefn/platform/testing';
import { Api } from '../support/api.js';
import { newHome, repoRoot, startPlatform } from '../support/platform-process.js';
import { podmanTestOptions } from '../support/podman.js';
import { coldStarts, percentile } from './cold-start.js';
import { writeBenchResults } from './results.js';

const args = new Map(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=') as [string, string]));
const tries = Number(args.get('cold-tries') ?? 20);
const hello = path.join(repoRoot, 'examples', 'hello');

interface Row {
  label: string;
  ms: number[];
}

/** `fn up` with `upArgs`, hello deployed with `fn deploy`'s code path, then `tries` cold starts. */
async function platformColdStarts(upArgs: string[], env: Record<string, string>, warmPool = false): Promise<{ image: string; ms: number[] }> {
  const platform = await startPlatform(await newHome(), { args: upArgs, env, timeoutMs: 120_000 });
  try {
    const api = new Api(platform.url, platform.token);
    const { image } = await deployFunction(api.client, hello);
    return { image, ms: await coldStarts(api, image, tries, 'hello-cold', { warmPool }) };
  } finally {
    await platform.stop();
  }
}

/** `podman run` of the image until its /readyz answers: the floor under a podman cold start. */
async function barePodmanRun(podman: Podman, image: string): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < tries; i++) {
    const name = `kubefn-bench-${process.pid}-${i}`;
    const t0 = performance.now();
    // Both ports published, as the driver does.
    await podman.check(['run', '--detach', '--pull', 'never', '--name', name, '--publish', '127.0.0.1::8080', '--publish', '127.0.0.1::8081', image]);
    const port = (await podman.check(['port', name, '8081/tcp'])).trim().split(':').pop();
    await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined))?.status === 200, { what: 'bare container ready' });
    out.push(performance.now() - t0);
    await podman.run(['rm', '--force', '--time', '0', name]);
  }
  return out;
}

async function main(): Promise<void> {
  const options = await podmanTestOptions();
  const podman = new Podman(options);
  const env = options.env;
  const processRun = await platformColdStarts([], {}, true);
  const pooled = await platformColdStarts(['--driver', 'podman'], env, true);
  const bridge = await platformColdStarts(['--driver', 'podman', '--pool', '0'], env);
  const host = await platformColdStarts(['--driver', 'podman', '--pool', '0', '--podman-network', 'host'], env);
  const bare = await barePodmanRun(podman, bridge.image);
  const rows: Row[] = [
    { label: 'process driver, warm pool on', ms: processRun.ms },
    { label: 'podman driver, warm pool on (bridge network)', ms: pooled.ms },
    { label: 'podman driver, pool off, bridge network (published ports)', ms: bridge.ms },
    { label: 'podman driver, pool off, host network', ms: host.ms },
    { label: 'bare `podman run` to /readyz (no gateway)', ms: bare },
  ];
  const summary = rows.map((r) => ({ label: r.label, p50: percentile(r.ms, 50), max: Math.max(...r.ms), all: r.ms.map((x) => Math.round(x)) }));
  const podmanVersion = (await podman.check(['version', '--format', '{{.Client.Version}}'])).trim();
  console.log(`Cold start, first request to a function at zero, ${tries} tries each (${os.cpus().length} CPUs, node ${process.version}, podman ${podmanVersion})\n`);
  console.log('| path | p50 ms | max ms |\n|---|---|---|');
  for (const s of summary) console.log(`| ${s.label} | ${s.p50.toFixed(1)} | ${s.max.toFixed(1)} |`);
  const results = { machine: { cpus: os.cpus().length, node: process.version, podman: podmanVersion }, tries, image: bridge.image, rows: summary };
  await writeBenchResults('podman', results);
  console.log(JSON.stringify(results));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
