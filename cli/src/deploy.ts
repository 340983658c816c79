// `fn deploy`: build, upload the bundle unless the gateway has it, create or update the function, wait until it is ready.

import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import { tmpdir } from 'node:os';
import { packSource, type NativeModule } from '@kubefn/builder';
import { errorFromBody, isKubefnError, KubefnError, validateName } from '@kubefn/platform/core';
import type { FunctionSpec } from '@kubefn/platform';
import type { App } from './app.js';
import { collect, pairs, parseCount, parseDurationArg } from './args.js';
import { bundleLoaded, printNatives, printWarnings } from './build.js';
import type { FunctionInfo, GatewayClient } from './client.js';
import { checkArg } from './errors.js';
import { loadFnYaml, type LoadedFunction, type SpecOverrides } from '@kubefn/platform';
import { addImageOptions, buildImage, imageCacheDir, imageTarget, pushImage, registryClient, type ImageFlags } from './image.js';
import { formatBytes, formatElapsed, silentProgress, type Progress } from './output.js';

export interface DeployOptions {
  overrides?: SpecOverrides;
  /** Wait until the function is deployed (and has a ready replica when it should). Default true. */
  wait?: boolean;
  /** How long to wait for readiness, in ms. Default 120000. */
  timeoutMs?: number;
  progress?: Progress;
  signal?: AbortSignal;
  /** Build an OCI image here and push it (--registry, --base, --tag); default: ask the platform. */
  image?: ImageFlags;
  /** Send the source to the platform's build service instead of building here. */
  remoteBuild?: boolean;
  /** Where base images are cached for local image builds (<home>/cache). */
  cacheDir?: string;
  /** Called with each line of a remote build's log. */
  onBuildLog?: (line: string) => void;
}

/** How the function's code reaches the platform. */
export type DeployMode = 'bundle' | 'image' | 'remote';

export interface DeployResult {
  name: string;
  image: string;
  /** The bundle's or the image manifest's digest. */
  digest: string;
  mode: DeployMode;
  /** Bytes sent to the gateway or the registry for the code (0 when it was there already). */
  bytes: number;
  /** False when the gateway or registry already had this exact code. */
  uploaded: boolean;
  /** True when the function did not exist before. */
  created: boolean;
  url: string;
  /** The function as the gateway last reported it; absent with wait: false. */
  status?: FunctionInfo;
  warnings: string[];
  /** Packages with native code shipped beside the bundle (a remote build lists them in its log). */
  natives: NativeModule[];
}

interface Shipped {
  image: string;
  digest: string;
  bytes: number;
  warnings: string[];
  natives: NativeModule[];
}

/** Runs the whole deploy of the function in `target` (a directory or its fn.yaml). */
export async function deployFunction(client: GatewayClient, target: string, options: DeployOptions = {}): Promise<DeployResult> {
  const progress = options.progress ?? silentProgress;
  const signal = options.signal;
  const loaded = await loadFnYaml(target, options.overrides);
  const { spec } = loaded;
  const { mode, image } = await chooseMode(client, options, signal);
  const shipped =
    mode === 'bundle'
      ? await shipBundle(client, loaded, options, progress)
      : mode === 'image'
        ? await shipImage(loaded, image, options, progress)
        : await shipSource(client, loaded, options, progress);

  const deployed: FunctionSpec = { ...spec, image: shipped.image };
  const { created } = await progress.step(
    `deploying ${spec.name}`,
    () => client.deployFunction(deployed, signal),
    (r) => `${r.created ? 'created' : 'updated'} ${spec.name}`,
  );

  const result: DeployResult = {
    name: spec.name,
    image: shipped.image,
    digest: shipped.digest,
    mode,
    bytes: shipped.bytes,
    uploaded: shipped.bytes > 0,
    created,
    url: client.functionUrl(spec.name),
    warnings: shipped.warnings,
    natives: shipped.natives,
  };
  if (options.wait === false) {
    if (spec.triggers.some((t) => t.type !== 'http')) {
      result.warnings.push(...triggerWarnings(await client.getFunction(spec.name, signal).catch(() => undefined)));
    }
    return result;
  }

  const minReady = Math.max(spec.scale.min, spec.scale.initial) > 0 ? 1 : 0;
  result.status = await progress.step(
    minReady > 0 ? `waiting for a ready replica of ${spec.name}` : `waiting for ${spec.name} to be deployed`,
    () => waitForFunction(client, spec.name, { minReady, timeoutMs: options.timeoutMs ?? 120_000, ...(signal ? { signal } : {}) }),
    (s) => `${spec.name} is ready: ${s.availableReplicas}/${s.replicas} replicas`,
  );
  result.warnings.push(...triggerWarnings(result.status));
  return result;
}

/** A warning per event trigger the gateway could not start yet (NATS away, a stream it cannot make). */
export function triggerWarnings(f: FunctionInfo | undefined): string[] {
  const events = f?.events;
  if (!events) return [];
  const out: string[] = [];
  if (!events.nats.connected) {
    out.push(`the gateway has no NATS connection${events.nats.error ? ` (${events.nats.error})` : ''}: event triggers start when it is back (see fn describe)`);
  }
  for (const t of events.triggers) {
    const spec = f.spec.triggers[t.index];
    if (t.ready === false && events.nats.connected) {
      out.push(`trigger ${t.index} (${t.type} ${spec?.subject ?? ''}) is not ready${t.error ? `: ${t.error}` : ''}; it is retried in the background (see fn describe)`);
    }
  }
  return out;
}

/**
 * --registry means an image built here; --remote-build means the platform builds. Otherwise the
 * platform says what it runs: bundles (process driver), or images from its registry, or images
 * its build service makes.
 */
async function chooseMode(
  client: GatewayClient,
  options: DeployOptions,
  signal: AbortSignal | undefined,
): Promise<{ mode: DeployMode; image: ImageFlags }> {
  const flags = options.image ?? {};
  if (flags.registry) return { mode: 'image', image: flags };
  if (options.remoteBuild) return { mode: 'remote', image: flags };
  const info = (await client.info(signal)).kubefn ?? {};
  if (!info.needsImage) return { mode: info.bundles === false && info.builds ? 'remote' : 'bundle', image: flags };
  if (info.registry) return { mode: 'image', image: { ...flags, registry: info.registry, base: flags.base ?? info.base } };
  if (info.builds) return { mode: 'remote', image: flags };
  throw new KubefnError('BAD_REQUEST', `the platform's ${info.driver ?? ''} driver runs images and has no build service`, {
    hint: 'build and push the image yourself: fn deploy --registry <host:port>',
  });
}

/** Bundles here and uploads the bundle unless the gateway has it. */
async function shipBundle(client: GatewayClient, loaded: LoadedFunction, options: DeployOptions, progress: Progress): Promise<Shipped> {
  const { bundle } = await bundleLoaded(loaded, progress);
  const size = formatBytes(bundle.bytes);
  const uploaded = await progress.step(
    `uploading bundle (${size})`,
    async () => {
      if (await client.hasBundle(bundle.digest, options.signal)) return false;
      await client.uploadBundle(bundle.digest, await readFile(bundle.file), options.signal);
      return true;
    },
    (sent) => (sent ? `uploaded bundle: ${size}` : `bundle unchanged (${bundle.digest.slice(0, 19)})`),
  );
  return { image: `bundle:${bundle.digest}`, digest: bundle.digest, bytes: uploaded ? bundle.bytes : 0, warnings: bundle.warnings, natives: bundle.natives };
}

/** Builds the image here and pushes what the registry lacks. */
async function shipImage(loaded: LoadedFunction, flags: ImageFlags, options: DeployOptions, progress: Progress): Promise<Shipped> {
  const client = registryClient(flags);
  const fi = await buildImage(loaded, flags, { client, cacheDir: options.cacheDir ?? path.join(tmpdir(), 'kubefn-cache'), progress });
  const report = await pushImage(client, fi, imageTarget(flags.registry!, loaded.spec.name, flags.tag), progress);
  return { image: report.ref, digest: report.digest, bytes: report.bytesSent, warnings: fi.bundle.warnings, natives: fi.bundle.natives };
}

/** Packs the source and has the platform's build service build it. */
async function shipSource(client: GatewayClient, loaded: LoadedFunction, options: DeployOptions, progress: Progress): Promise<Shipped> {
  const packed = await progress.step(
    `packing ${path.relative(process.cwd(), loaded.dir) || '.'}`,
    () => packSource(loaded.dir),
    (p) => `packed ${p.files} file(s): ${formatBytes(p.archive.length)}`,
  );
  const result = await progress.step(
    `building ${loaded.spec.name} on the platform`,
    async () => {
      for await (const event of client.build(loaded.spec.name, loaded.spec.handler, packed.archive, options.signal)) {
        if (event.type === 'log') options.onBuildLog?.(event.message);
        else if (event.type === 'error') throw errorFromBody(422, event.error);
        else return event;
      }
      throw new KubefnError('INTERNAL', 'the build service ended without a result');
    },
    (r) => `built ${r.image}`,
  );
  return { image: result.image, digest: result.digest, bytes: packed.archive.length, warnings: [], natives: [] };
}

/**
 * Polls GET /system/function/<name> with exponential backoff (100ms doubling to 2s) until it
 * exists and has at least `minReady` available replicas. Throws DEADLINE_EXCEEDED after
 * `timeoutMs`; rejects with an AbortError when `signal` aborts.
 */
export async function waitForFunction(
  client: GatewayClient,
  name: string,
  options: { minReady: number; timeoutMs: number; signal?: AbortSignal; now?: () => number },
): Promise<FunctionInfo> {
  const now = options.now ?? (() => performance.now());
  const deadline = now() + options.timeoutMs;
  let delayMs = 100;
  let last: FunctionInfo | undefined;
  for (;;) {
    // Each poll may take the rest of the wait, but at least 1s, so the last one can still answer.
    const pollMs = Math.ceil(Math.max(1000, deadline - now()));
    const signals = [AbortSignal.timeout(pollMs)];
    if (options.signal) signals.push(options.signal);
    try {
      last = await client.getFunction(name, AbortSignal.any(signals));
      if (last.availableReplicas >= options.minReady) return last;
    } catch (err) {
      if (options.signal?.aborted) throw err;
      const timedOut = (err as { name?: unknown }).name === 'TimeoutError';
      if (!timedOut && !isKubefnError(err, 'NOT_FOUND')) throw err;
    }
    const remaining = deadline - now();
    if (remaining <= 0) {
      const state = last ? `${last.availableReplicas}/${last.replicas} replicas ready` : 'not listed by the gateway yet';
      throw new KubefnError('DEADLINE_EXCEEDED', `function "${name}" is not ready after ${formatElapsed(options.timeoutMs)} (${state})`, {
        hint: `\`fn logs ${name}\` shows why its replicas do not start; wait longer with --timeout, or skip waiting with --no-wait`,
      });
    }
    await sleep(Math.ceil(Math.min(delayMs, remaining)), undefined, options.signal ? { signal: options.signal } : {});
    delayMs = Math.min(delayMs * 2, 2000);
  }
}

interface DeployFlags extends ImageFlags {
  remoteBuild?: boolean;
  name?: string;
  env?: string[];
  min?: string;
  max?: string;
  wait: boolean;
  timeout: string;
  json?: boolean;
}

export function registerDeploy(program: Command, app: App): void {
  const command = program
    .command('deploy')
    .description('build the function and deploy it to the gateway (create or update)')
    .argument('[path]', 'function directory (or its fn.yaml)', '.')
    .option('--name <name>', 'deploy under this name instead of the one in fn.yaml')
    .option('-e, --env <KEY=VALUE>', 'set an environment variable (repeatable; wins over fn.yaml)', collect)
    .option('--min <n>', 'minimum replicas (scale.min); 0 allows scale to zero')
    .option('--max <n>', 'maximum replicas (scale.max)')
    .option('--no-wait', 'return once the gateway accepted the function, without waiting for readiness')
    .option('--timeout <duration>', 'how long to wait for a ready replica', '2m')
    .option('--json', 'print the result as JSON')
    .option('--remote-build', "send the source (tar.gz) to the platform's build service instead of building here");
  addImageOptions(command)
    .addHelpText(
      'after',
      `
Steps: build -> ship the code -> PUT /system/functions (POST when new) -> wait for a ready
replica -> print the URL. How the code ships depends on the platform (GET /system/info):
  process driver        the bundle is uploaded (skipped when the gateway has this digest)
  podman or kubernetes, a registry
                        an OCI image is built here and pushed (only blobs the registry lacks)
  podman or kubernetes, no registry
                        the source goes to the platform's build service (POST /system/builds)
--registry builds and pushes an image whatever the platform; --remote-build always sends source.

Examples:
  $ fn deploy
  $ fn deploy ./functions/hello --env GREETING=hi --env LOG_LEVEL=debug
  $ fn deploy --name hello-staging --min 1 --max 5
  $ fn deploy --no-wait --json
  $ fn deploy --registry 127.0.0.1:5000 --base host`,
    )
    .action(async (target: string, flags: DeployFlags) => {
      const overrides: SpecOverrides = {};
      if (flags.name !== undefined) {
        const name = flags.name;
        checkArg(() => validateName(name));
        overrides.name = name;
      }
      if (flags.env) overrides.env = Object.fromEntries(pairs(flags.env, '=', '--env', 'KEY=VALUE'));
      if (flags.min !== undefined) overrides.min = parseCount(flags.min, '--min');
      if (flags.max !== undefined) overrides.max = parseCount(flags.max, '--max', 1);
      const timeoutMs = parseDurationArg(flags.timeout, '--timeout');
      const client = app.client(command);

      const started = performance.now();
      const progress = app.progress(flags.json === true);
      const result = await deployFunction(client, path.resolve(app.io.cwd, target), {
        overrides,
        wait: flags.wait,
        timeoutMs,
        progress,
        signal: app.io.signal,
        image: flags,
        remoteBuild: flags.remoteBuild === true,
        cacheDir: imageCacheDir(app.config(command).home),
        onBuildLog: (line) => {
          if (!flags.json) app.note(`  ${line}`);
        },
      });
      printWarnings(app, result.warnings);
      printNatives(app, result.natives);
      if (flags.json) {
        const { status, ...rest } = result;
        return app.json({ ...rest, ...(status ? { replicas: status.replicas, availableReplicas: status.availableReplicas } : {}) });
      }
      if (progress.interactive) app.note(`deployed ${result.name} in ${formatElapsed(performance.now() - started)}`);
      app.out(result.url);
    });
}
