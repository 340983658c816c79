// `npm run bench:image`: kubefn's daemonless image build + push next to `podman build` + `podman
// push` of a Containerfile doing the same job (the same fn.cjs on the same base), for every example
// function, measured side by side in one run. Prints a table and writes JSON.
//
// Per run and example, in alternating tool order:
//   kubefn cold   fresh repository, .kubefn/build deleted: buildFunctionImage + pushFunctionImage
//   kubefn warm   the same again, unchanged source
//   podman cold, base pulled   the base removed from podman's storage first, so the build pulls it
//   podman cold, base cached   the base pulled beforehand: the fairer cold number
//   podman warm   build (layer cache) + push again, unchanged
// Cold runs push to a fresh repository. The base (this machine's node, see support/podman.ts) lives
// in the same registry, so both tools can mount its layer instead of sending it. All registry
// traffic goes through a byte-counting proxy, so both tools' bytes are counted the same way.
//
// podman gets a private storage root (removed at the end): in the shared storage other images keep
// the base's layer, so `podman rmi` of the base would not make the next pull download it again.
//
// Env: BENCH_RUNS (default 3), BENCH_EXAMPLES (comma-separated names; default all).
// Writes bench-results/image-bench.json.

import { copyFile, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { buildFunctionImage, bundleFunction, formatBytes, parseReference, pushFunctionImage, RegistryClient, type PushReport } from '@kubefn/builder';
import { startRegistry } from '@kubefn/builder/testing';
import { Podman } from '@kubefn/platform';
import { loadFnYaml } from '@kubefn/cli';
import { examplesDir, podmanTestOptions, pushTestBase, testCacheDir } from '../support/podman.js';
import { startCountingProxy, type ByteCounts, type CountingProxy } from './counting-proxy.js';
import { writeBenchResults } from './results.js';

const runs = Number(process.env.BENCH_RUNS ?? 3);
const only = process.env.BENCH_EXAMPLES?.split(',').filter(Boolean);
/** Bound on one podman command, in ms: a cold build pulls the ~40 MB base on a busy machine. */
const podmanTimeoutMs = 600_000;
const tlsOff = '--tls-verify=false';

const variants = ['kubefn-cold', 'kubefn-warm', 'podman-cold-pulled', 'podman-cold-cached', 'podman-warm'] as const;
type Variant = (typeof variants)[number];

interface Example {
  name: string;
  dir: string;
  handler: string;
}

interface Sample {
  run: number;
  example: string;
  variant: Variant;
  /** Build + push wall time, and its parts, in ms. */
  ms: number;
  buildMs: number;
  pushMs: number;
  /** Counted by the proxy over the build and push, HTTP headers included. */
  wire: ByteCounts;
  /** The function's layer as the registry holds it (compressed), in bytes. */
  layerBytes: number;
  bundleBytes?: number;
  /** kubefn's own account of the push: body bytes only. */
  push?: Pick<PushReport, 'bytesSent' | 'blobs' | 'manifestPushed'>;
}

interface Bench {
  proxy: CountingProxy;
  client: RegistryClient;
  podman: Podman;
  /** The base both tools build on, named through the proxy. */
  base: string;
}

async function examples(): Promise<Example[]> {
  const found: Example[] = [];
  for (const entry of (await readdir(examplesDir, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
    const dir = path.join(examplesDir, entry.name);
    if (!entry.isDirectory()) continue;
    const { spec } = await loadFnYaml(dir);
    if (!only || only.includes(spec.name)) found.push({ name: spec.name, dir, handler: spec.handler });
  }
  return found;
}

/** Times `build` then `push` and counts the bytes the proxy saw meanwhile. */
async function measure<B, P>(proxy: CountingProxy, build: () => Promise<B>, push: (built: B) => Promise<P>) {
  const before = proxy.counts();
  const t0 = performance.now();
  const built = await build();
  const t1 = performance.now();
  const pushed = await push(built);
  const t2 = performance.now();
  const after = proxy.counts();
  const wire = { sent: after.sent - before.sent, received: after.received - before.received };
  const round = (x: number) => Math.round(x * 10) / 10;
  return { built, pushed, ms: round(t2 - t0), buildMs: round(t1 - t0), pushMs: round(t2 - t1), wire };
}

async function kubefn(b: Bench, ex: Example, run: number, variant: 'kubefn-cold' | 'kubefn-warm') {
  if (variant === 'kubefn-cold') await rm(path.join(ex.dir, '.kubefn', 'build'), { recursive: true, force: true });
  const target = parseReference(`${b.proxy.host}/bench-kubefn-${run}/${ex.name}:latest`);
  const m = await measure(
    b.proxy,
    () => buildFunctionImage({ dir: ex.dir, handler: ex.handler, name: ex.name, base: b.base, client: b.client, cacheDir: testCacheDir }),
    (fi) => pushFunctionImage(b.client, fi, target),
  );
  const { bytesSent, blobs, manifestPushed } = m.pushed;
  const sample: Sample = {
    run, example: ex.name, variant, ms: m.ms, buildMs: m.buildMs, pushMs: m.pushMs, wire: m.wire,
    layerBytes: m.built.layer.blob.length, bundleBytes: m.built.bundle.bytes, push: { bytesSent, blobs, manifestPushed },
  };
  return { sample, bundleFile: m.built.bundle.file };
}

/** One podman build + push of `contextDir` as `tag`; cold variants start without the image (and its layer cache). */
async function podman(b: Bench, ex: Example, run: number, variant: Exclude<Variant, `kubefn-${string}`>, contextDir: string, tag: string): Promise<Sample> {
  if (variant !== 'podman-warm') await b.podman.run(['rmi', '--force', tag]);
  if (variant === 'podman-cold-pulled') {
    await b.podman.run(['rmi', '--force', b.base]);
    const left = await b.podman.run(['image', 'exists', b.base]);
    if (left.code === 0) throw new Error(`${b.base} is still in podman's storage; the cold build would not pull it`);
  }
  if (variant === 'podman-cold-cached') await b.podman.check(['pull', '--quiet', tlsOff, b.base], { timeoutMs: podmanTimeoutMs });
  const noCache = variant === 'podman-warm' ? [] : ['--no-cache'];
  const m = await measure(
    b.proxy,
    () => b.podman.check(['build', '--quiet', tlsOff, ...noCache, '--tag', tag, contextDir], { timeoutMs: podmanTimeoutMs }),
    () => b.podman.check(['push', '--quiet', tlsOff, tag], { timeoutMs: podmanTimeoutMs }),
  );
  const pushed = await b.client.getManifest(parseReference(tag));
  const layerBytes = pushed.manifest.layers.at(-1)!.size;
  return { run, example: ex.name, variant, ms: m.ms, buildMs: m.buildMs, pushMs: m.pushMs, wire: m.wire, layerBytes };
}

/** A context dir holding the bundle and a Containerfile that does what kubefn's image build does. */
async function podmanContext(bundleFile: string, base: string): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kubefn-bench-context-'));
  // A fresh copy has a fresh mtime, so podman's COPY layer is new and a cold push must send it.
  const entry = path.basename(bundleFile);
  await copyFile(bundleFile, path.join(dir, entry));
  const containerfile = [`FROM ${base}`, `COPY ${entry} /app/${entry}`, 'WORKDIR /app', `ENTRYPOINT ["node","--enable-source-maps","/app/${entry}"]`, ''];
  await writeFile(path.join(dir, 'Containerfile'), containerfile.join('\n'));
  return dir;
}

/** Every variant once for `ex`; `podmanFirst` alternates between runs so neither tool always goes first. */
async function runExample(b: Bench, ex: Example, run: number, podmanFirst: boolean): Promise<Sample[]> {
  const samples: Sample[] = [];
  const note = (s: Sample): void => {
    samples.push(s);
    console.error(`run ${run} ${ex.name} ${s.variant}: ${Math.round(s.ms)} ms, ${formatBytes(s.wire.sent)} sent, ${formatBytes(s.wire.received)} received`);
  };
  // podman needs kubefn's bundle; its cold run makes a fresh one.
  let bundleFile = '';
  const kubefnSteps = async (): Promise<void> => {
    const cold = await kubefn(b, ex, run, 'kubefn-cold');
    bundleFile = cold.bundleFile;
    note(cold.sample);
    note((await kubefn(b, ex, run, 'kubefn-warm')).sample);
  };
  const podmanSteps = async (): Promise<void> => {
    const pulledTag = `${b.proxy.host}/bench-podman-pulled-${run}/${ex.name}:latest`;
    const tag = `${b.proxy.host}/bench-podman-${run}/${ex.name}:latest`;
    const contexts: string[] = [];
    const context = async (): Promise<string> => {
      contexts.push(await podmanContext(bundleFile, b.base));
      return contexts.at(-1)!;
    };
    try {
      note(await podman(b, ex, run, 'podman-cold-pulled', await context(), pulledTag));
      // Gone before the warm build, so its layer cache is the cached cold build's, not this one's.
      await b.podman.run(['rmi', '--force', pulledTag]);
      const dir = await context();
      note(await podman(b, ex, run, 'podman-cold-cached', dir, tag));
      note(await podman(b, ex, run, 'podman-warm', dir, tag));
    } finally {
      // Removing the built images here lets the next cold run remove the base they stand on.
      for (const t of [pulledTag, tag]) await b.podman.run(['rmi', '--force', t]);
      for (const d of contexts) await rm(d, { recursive: true, force: true });
    }
  };
  if (podmanFirst) {
    // The bundle comes from kubefn's bundler either way; make it without timing it.
    bundleFile = (await bundleFunction({ dir: ex.dir, handler: ex.handler })).file;
    await podmanSteps();
    await kubefnSteps();
  } else {
    await kubefnSteps();
    await podmanSteps();
  }
  return samples;
}

function stats(xs: number[]): { median: number; min: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  const median = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { median, min: s[0]!, max: s.at(-1)! };
}

function summarize(samples: Sample[], names: string[]) {
  return Object.fromEntries(
    names.map((name) => [
      name,
      Object.fromEntries(
        variants.map((v) => {
          const of = samples.filter((s) => s.example === name && s.variant === v);
          const summary = {
            ms: stats(of.map((s) => s.ms)),
            wireSent: stats(of.map((s) => s.wire.sent)),
            wireReceived: stats(of.map((s) => s.wire.received)),
            layerBytes: stats(of.map((s) => s.layerBytes)),
            ...(of[0]?.push ? { bytesSent: stats(of.map((s) => s.push!.bytesSent)) } : {}),
          };
          return [v, summary];
        }),
      ),
    ]),
  ) as Record<string, Record<Variant, { ms: Stats; wireSent: Stats; wireReceived: Stats; layerBytes: Stats; bytesSent?: Stats }>>;
}
type Stats = ReturnType<typeof stats>;

function table(summary: ReturnType<typeof summarize>): string {
  const ms = (s: Stats) => `${Math.round(s.median)} (${Math.round(s.min)}–${Math.round(s.max)})`;
  const bytes = (s: Stats) => formatBytes(Math.round(s.median));
  const rows = Object.entries(summary).map(([name, v]) =>
    [
      name,
      ms(v['kubefn-cold'].ms),
      ms(v['kubefn-warm'].ms),
      ms(v['podman-cold-pulled'].ms),
      ms(v['podman-cold-cached'].ms),
      ms(v['podman-warm'].ms),
      `${bytes(v['kubefn-cold'].wireSent)} [${bytes(v['kubefn-cold'].bytesSent!)}] / ${bytes(v['kubefn-warm'].wireSent)} [${bytes(v['kubefn-warm'].bytesSent!)}]`,
      `${bytes(v['podman-cold-cached'].wireSent)} / ${bytes(v['podman-warm'].wireSent)}`,
      String(v['kubefn-cold'].layerBytes.median),
      String(v['podman-cold-cached'].layerBytes.median),
    ].join(' | '),
  );
  return [
    '| example | kubefn cold ms | kubefn warm ms | podman cold ms (base pulled) | podman cold ms (base cached) | podman warm ms | kubefn bytes cold/warm | podman bytes cold/warm | function layer bytes (kubefn) | podman layer bytes |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r} |`),
  ].join('\n');
}

async function main(): Promise<void> {
  const registry = await startRegistry();
  const proxy = await startCountingProxy(registry.host);
  const options = await podmanTestOptions();
  const podmanRoot = await mkdtemp(path.join(tmpdir(), 'kubefn-bench-podman-'));
  const podman = new Podman({
    ...options,
    globalArgs: [...options.globalArgs, '--root', path.join(podmanRoot, 'storage'), '--runroot', path.join(podmanRoot, 'run')],
  });
  const client = new RegistryClient();
  try {
    const bench: Bench = { proxy, client, podman, base: await pushTestBase(client, proxy.host) };
    const list = await examples();
    const samples: Sample[] = [];
    for (let run = 1; run <= runs; run++) {
      for (const ex of list) samples.push(...(await runExample(bench, ex, run, run % 2 === 0)));
    }
    const summary = summarize(samples, list.map((e) => e.name));
    const machine = {
      node: process.version,
      podman: (await podman.check(['version', '--format', '{{.Client.Version}}'])).trim(),
      cpus: cpus().length,
    };
    const results = { machine, settings: { runs, examples: list.map((e) => e.name) }, summary, samples };
    console.log(table(summary));
    console.log(
      '\nms: median (min–max) of build + push. Bytes: median sent to the registry as the proxy counted them (HTTP headers included); ' +
        "[kubefn's own bytesSent, bodies only]. podman bytes are the base-cached cold run; the base-pulled run's bytes are in the JSON. " +
        'kubefn ms include esbuild bundling; podman ms start from the bundle already made.',
    );
    console.log(`machine: node ${machine.node}, podman ${machine.podman}, ${machine.cpus} CPUs; ${runs} run(s)`);
    await writeBenchResults('image-bench', results);
    console.log(JSON.stringify(results));
  } finally {
    await podman.run(['rmi', '--all', '--force']);
    await rm(podmanRoot, { recursive: true, force: true });
    await proxy.close();
    await registry.close();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
