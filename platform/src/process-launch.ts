// What a process replica is started from: its bundle file and the directory it runs in, its
// environment, and the key that says when a spec change needs new replicas.

import path from 'node:path';
import { parseAppImageRef, type AppStore } from './app-store.js';
import { parseBundleImageRef, type BundleStore } from './bundle-store.js';
import { isKubefnError, KubefnError } from './errors.js';
import { runtimeEnv } from './runtime-contract.js';
import { timeoutMs, type FunctionSpec } from './spec.js';

/** Where a process replica starts: the bundle file, run with the app root as working directory. */
export interface ProcessArtifact {
  file: string;
  cwd: string;
}

/**
 * What a spec's `image` names, or the error that says why the process driver cannot run it:
 * `app:sha256:<hex>` (a bundle and its files, unpacked from the app store) or the older
 * `bundle:sha256:<hex>` (one ES module alone, from the bundle store). What the store holds is
 * checked against the digest here (hashed again only when a file was rewritten): a blob that
 * fails is moved aside and this throws CORRUPT; an unpacked app whose files changed is unpacked
 * again from its archive.
 */
export async function resolveProcessArtifact(stores: { bundles: BundleStore; apps?: AppStore | undefined }, spec: FunctionSpec): Promise<ProcessArtifact> {
  if (!spec.image) {
    throw new KubefnError('BAD_REQUEST', `function "${spec.name}" has no image to run`, {
      hint: '`fn deploy` builds the bundle, uploads it and sets the image',
    });
  }
  const app = parseAppImageRef(spec.image);
  if (app && stores.apps) {
    const unpacked = await stores.apps.unpack(app).catch((err: unknown) => Promise.reject(forFunction(err, spec)));
    return { file: unpacked.entry, cwd: unpacked.dir };
  }
  const digest = parseBundleImageRef(spec.image);
  if (!digest) {
    throw new KubefnError('NOT_SUPPORTED', `the process driver cannot run image "${spec.image}"`, {
      hint: 'the process driver runs apps and bundles built by `fn deploy`; use the podman driver for OCI images',
    });
  }
  if (spec.assets?.length) {
    throw new KubefnError('NOT_SUPPORTED', `a bundle image runs alone and cannot ship assets (function "${spec.name}" lists ${spec.assets.join(', ')})`, {
      hint: 'deploy again with `fn deploy`: it ships the bundle and its files as an app (image "app:sha256:...")',
    });
  }
  return { file: await resolveBundleFile(stores.bundles, spec, digest), cwd: stores.bundles.dir };
}

async function resolveBundleFile(bundles: BundleStore, spec: FunctionSpec, digest: string): Promise<string> {
  if (!(await bundles.verify(digest).catch((err: unknown) => Promise.reject(forFunction(err, spec))))) {
    throw new KubefnError('BAD_REQUEST', `bundle ${digest} for function "${spec.name}" is not in the bundle store`, {
      hint: 'upload the bundle before deploying the spec that names it; `fn deploy` does both',
    });
  }
  return path.resolve(bundles.path(digest));
}

/** A store's error with the function it was resolving for named in the message. */
function forFunction(err: unknown, spec: FunctionSpec): unknown {
  if (!isKubefnError(err)) return err;
  return new KubefnError(err.code, `function "${spec.name}": ${err.message}`, { cause: err, ...(err.hint ? { hint: err.hint } : {}) });
}

/** Where a replica's own files go: HOME, and TMPDIR when it has a private one. */
export interface ReplicaDirs {
  home: string;
  tmp?: string | undefined;
}

/**
 * The environment of replica `instance`: nothing of the driver's own, only a PATH that finds
 * the node binary it runs on, its HOME (and TMPDIR), the spec's env, then the runtime contract.
 */
export function replicaEnv(spec: FunctionSpec, instance: string, nodePath: string, dirs: ReplicaDirs, maxBodyBytes?: number): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    PATH: [...new Set([path.dirname(nodePath), '/usr/local/bin', '/usr/bin', '/bin'])].join(':'),
    HOME: dirs.home,
  };
  if (dirs.tmp !== undefined) env.TMPDIR = dirs.tmp;
  Object.assign(env, contractEnv(spec, instance, maxBodyBytes));
  env[runtimeEnv.port] = '0';
  env[runtimeEnv.adminPort] = '0';
  env[runtimeEnv.host] = '127.0.0.1';
  return env;
}

/**
 * The spec's env and the runtime contract's variables, ports and address left to the driver;
 * `maxBodyBytes`, the platform's body limit, when it sets one.
 */
export function contractEnv(spec: FunctionSpec, instance: string, maxBodyBytes?: number): Record<string, string> {
  return {
    ...(spec.env ?? {}),
    [runtimeEnv.functionName]: spec.name,
    [runtimeEnv.instance]: instance,
    [runtimeEnv.timeoutMs]: String(timeoutMs(spec)),
    [runtimeEnv.concurrency]: String(spec.scale.containerConcurrency),
    ...(maxBodyBytes !== undefined ? { [runtimeEnv.maxBodyBytes]: String(maxBodyBytes) } : {}),
  };
}

/** What a replica's process depends on: a change means a rolling restart; scale bounds, triggers and labels do not. */
export function replicaTemplateKey(spec: FunctionSpec): string {
  const { image, handler, env, secrets, secretEnv, resources, timeout } = spec;
  return canonicalJson({ image, handler, env, secrets, secretEnv, resources, timeout, concurrency: spec.scale.containerConcurrency });
}

/** JSON with object keys sorted, so equal values give equal strings. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );
}
