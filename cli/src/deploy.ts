// `fn deploy`'s work (deploy-command.ts is its command line): build, upload the app (bundle and files) unless the gateway has it, create or update the function, wait until it is ready.

import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { tmpdir } from 'node:os';
import { packApp, packSource, type NativeModule } from '@kubefn/builder';
import { errorFromBody, isKubefnError, KubefnError, rolloutState, type RolloutState } from '@kubefn/platform/core';
import type { FunctionSpec } from '@kubefn/platform';
import { bundleLoaded } from './build.js';
import type { FunctionInfo, GatewayClient } from './client.js';
import { loadFnYaml, type LoadedFunction, type SpecOverrides } from '@kubefn/platform';
import { buildImage, imageTarget, pushImage, registryClient } from './image.js';
import type { ImageFlags } from './image-options.js';
import { formatBytes, formatElapsed, silentProgress, type Progress } from './output.js';

export interface DeployOptions {
  overrides?: SpecOverrides;
  /** Wait until the new version is what answers (see waitForFunction). Default true. */
  wait?: boolean;
  /** How long to wait for the new version, in ms. Default 120000. */
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
  /** The app's (bundle and files) or the image manifest's digest. */
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
  const { created, notReconciled } = await progress.step(
    `deploying ${spec.name}`,
    () => client.deployFunction(deployed, signal),
    (r) => `${r.created ? 'created' : 'updated'} ${spec.name}`,
  );
  if (notReconciled) {
    throw new KubefnError('UNAVAILABLE', notReconciled, {
      hint: 'the change is stored and is applied once the controller (kubefn-autoscaler) runs: kubectl get pods -l app.kubernetes.io/name=kubefn-autoscaler',
    });
  }

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
    result.warnings.push(...statusWarnings(await client.getFunction(spec.name, signal).catch(() => undefined)));
    return result;
  }

  const minReady = Math.max(spec.scale.min, spec.scale.initial) > 0 ? 1 : 0;
  result.status = await progress.step(
    `waiting for the new version of ${spec.name} to answer`,
    () => waitForFunction(client, spec.name, { minReady, timeoutMs: options.timeoutMs ?? 120_000, ...(signal ? { signal } : {}) }),
    (s) =>
      s.replicas === 0 && s.availableReplicas === 0
        ? `${spec.name} is deployed at zero replicas: the next call starts the new version`
        : `${spec.name} is ready: ${s.updatedReplicas ?? s.availableReplicas}/${s.replicas} replicas run the new version`,
  );
  result.warnings.push(...statusWarnings(result.status));
  return result;
}

/** What the gateway says it does not enforce (resource limits), then the event triggers it could not start. */
export function statusWarnings(f: FunctionInfo | undefined): string[] {
  return [...(f?.warnings ?? []), ...triggerWarnings(f)];
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

/** Bundles here and uploads the app (the bundle and the files shipped next to it, one tar) unless the gateway has it. */
async function shipBundle(client: GatewayClient, loaded: LoadedFunction, options: DeployOptions, progress: Progress): Promise<Shipped> {
  const { bundle } = await bundleLoaded(loaded, progress);
  const app = await packApp(bundle);
  const size = `${formatBytes(app.tar.length)}${bundle.files.length ? `, bundle and ${bundle.files.length} file(s)` : ''}`;
  const uploaded = await progress.step(
    `uploading app (${size})`,
    async () => {
      if (await client.hasApp(app.digest, options.signal)) return false;
      await client.uploadApp(app.digest, app.tar, options.signal);
      return true;
    },
    (sent) => (sent ? `uploaded app: ${size}` : `app unchanged (${app.digest.slice(0, 19)})`),
  );
  return { image: `app:${app.digest}`, digest: app.digest, bytes: uploaded ? app.tar.length : 0, warnings: bundle.warnings, natives: bundle.natives };
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
 * Polls GET /system/function/<name> with exponential backoff (100ms doubling to 2s) until the new
 * version is what answers (rolloutState): every ready replica runs the deployed spec, or the
 * function is at zero with the spec applied, so the next call starts it. Throws LOAD_FAILED at
 * once when the platform reports that the handler cannot load, DEADLINE_EXCEEDED after
 * `timeoutMs`; rejects with an AbortError when `signal` aborts. A gateway that reports no
 * rollout fields (older, or OpenFaaS) is waited on for `minReady` available replicas instead.
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
      const state = rolloutOf(last, options.minReady);
      if (state.state === 'done') return last;
      if (state.state === 'failed') throw loadFailed(name, last.spec.handler, state.error);
    } catch (err) {
      if (options.signal?.aborted || isKubefnError(err, 'LOAD_FAILED')) throw err;
      const timedOut = (err as { name?: unknown }).name === 'TimeoutError';
      if (!timedOut && !isKubefnError(err, 'NOT_FOUND')) throw err;
    }
    const remaining = deadline - now();
    if (remaining <= 0) {
      const state = last ? describeWait(last, options.minReady) : 'not listed by the gateway yet';
      throw new KubefnError('DEADLINE_EXCEEDED', `function "${name}" is not ready after ${formatElapsed(options.timeoutMs)} (${state})`, {
        hint: `\`fn logs ${name}\` shows why its replicas do not start; wait longer with --timeout, or skip waiting with --no-wait`,
      });
    }
    await sleep(Math.ceil(Math.min(delayMs, remaining)), undefined, options.signal ? { signal: options.signal } : {});
    delayMs = Math.min(delayMs * 2, 2000);
  }
}

/** The rollout as the gateway reports it, or, from a gateway without rollout fields, `minReady` available replicas. */
export function rolloutOf(f: FunctionInfo, minReady: number): RolloutState {
  if (f.updatedReplicas === undefined || f.generation === undefined || f.observedGeneration === undefined) {
    return f.availableReplicas >= minReady
      ? { state: 'done', reason: 'updated' }
      : { state: 'progressing', message: `${f.availableReplicas}/${f.replicas} replicas ready` };
  }
  return rolloutState({
    replicas: f.replicas,
    readyReplicas: f.availableReplicas,
    updatedReplicas: f.updatedReplicas,
    generation: f.generation,
    observedGeneration: f.observedGeneration,
    loadError: f.loadError,
  });
}

/** What a timed-out wait was still waiting for, with the platform's last error when it has one. */
function describeWait(f: FunctionInfo, minReady: number): string {
  const state = rolloutOf(f, minReady);
  const waiting = state.state === 'progressing' ? state.message : `${f.availableReplicas}/${f.replicas} replicas ready`;
  return f.lastError ? `${waiting}; last error: ${f.lastError.message}` : waiting;
}

/** The deploy's error for a handler that cannot load: where, what, and where to read more. */
function loadFailed(name: string, handler: string, error: { message: string; location?: string | undefined; hint?: string | undefined }): KubefnError {
  const where = error.location ?? handler;
  return new KubefnError('LOAD_FAILED', `function "${name}" cannot load its handler: ${where}: ${error.message}`, {
    hint: error.hint ?? `fix the handler and deploy again; the replica's output is in \`fn logs ${name}\``,
  });
}
