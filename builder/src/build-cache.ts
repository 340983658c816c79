// builder's cache on disk (e.g. ~/.kubefn/cache): the host base image and base layers fetched
// from registries, each blob stored under its digest and only ever visible whole, so that
// concurrent builds in one process or several share it safely.

import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { KubefnError } from '@kubefn/platform';
import { writeAtomic } from './atomic-write.js';
import { hostNodeBase, type HostNodeBase } from './host-base.js';
import type { BaseImage } from './oci-image.js';
import type { RegistryClient } from './registry/client.js';
import type { ImageReference } from './registry/reference.js';

export interface CachedHostBase {
  base: BaseImage;
  /** The base's one layer blob; its digest is `base.layers[0].digest`. */
  blob: Buffer;
}

export interface HostBaseCacheOptions {
  /** The node binary the base is made from; default the one running. */
  nodePath?: string;
  /** Makes the base; default hostNodeBase (tests pass a smaller one). */
  build?: (nodePath: string) => Promise<HostNodeBase>;
}

/**
 * Host base builds in flight in this process, by their cache file: concurrent callers share one
 * build (it gzips ~100 MB). An entry is dropped once settled: after a failure the next caller
 * builds again, after a success it reads the cache instead of keeping ~40 MB here for good.
 */
const hostBaseBuilds = new Map<string, Promise<CachedHostBase>>();

/**
 * The host base for the node binary at `nodePath`, built once and kept in `cacheDir`: its config
 * under host-base/<key>.json, its layer under blobs/. The key names the binary by path, size and
 * time, so a node upgrade builds a new base. Processes that build at once both write the same
 * bytes under the same names, each by an atomic rename, so either result is whole and right.
 */
export async function cachedHostBase(cacheDir: string, options: HostBaseCacheOptions = {}): Promise<CachedHostBase> {
  const nodePath = options.nodePath ?? process.execPath;
  const node = await stat(nodePath);
  // v2: the base carries glibc's small libraries and names its C library (host-base.ts).
  const key = createHash('sha256').update(`v2 ${nodePath} ${node.size} ${node.mtimeMs}`).digest('hex').slice(0, 32);
  const file = path.resolve(cacheDir, 'host-base', `${key}.json`);
  let shared = hostBaseBuilds.get(file);
  if (!shared) {
    shared = loadOrBuildHostBase(cacheDir, file, () => (options.build ?? hostNodeBase)(nodePath)).finally(() => hostBaseBuilds.delete(file));
    hostBaseBuilds.set(file, shared);
  }
  return shared;
}

async function loadOrBuildHostBase(cacheDir: string, file: string, build: () => Promise<HostNodeBase>): Promise<CachedHostBase> {
  const saved = await readFile(file, 'utf8')
    .then((text) => JSON.parse(text) as BaseImage)
    .catch(() => undefined); // missing, unreadable or not JSON: build it again
  const digest = saved?.layers?.[0]?.digest;
  const blob = digest === undefined ? undefined : await readCachedBlob(cacheDir, digest).catch(() => undefined);
  if (saved && blob) return { base: saved, blob };
  const built = await build();
  // The blob first: a config on disk always names a blob that is there (or was removed since).
  await writeAtomic(cachedBlobPath(cacheDir, built.layer.digest), built.layer.blob);
  await writeAtomic(file, Buffer.from(JSON.stringify(built.base)));
  return { base: built.base, blob: built.layer.blob };
}

/** Blob `digest`, from the cache if there, else fetched from `source` and kept. */
export async function cachedBlob(client: RegistryClient, source: ImageReference, digest: string, cacheDir: string): Promise<Buffer> {
  const cached = await readCachedBlob(cacheDir, digest);
  if (cached) return cached;
  const blob = await client.getBlob(source, digest); // digest verified by the client
  await writeAtomic(cachedBlobPath(cacheDir, digest), blob);
  return blob;
}

/** The cached blob, or undefined when it is missing or its bytes are not `digest`'s. */
export async function readCachedBlob(cacheDir: string, digest: string): Promise<Buffer | undefined> {
  const file = cachedBlobPath(cacheDir, digest);
  const blob = await readFile(file).catch(() => undefined);
  if (!blob) return undefined;
  const [algorithm, hex] = digest.split(':');
  return createHash(algorithm!).update(blob).digest('hex') === hex ? blob : undefined;
}

/** blobs/<algorithm>/<hex>; the digest comes from manifests, so it is checked before it names a file. */
export function cachedBlobPath(cacheDir: string, digest: string): string {
  if (!/^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$/.test(digest)) throw new KubefnError('BAD_REQUEST', `${JSON.stringify(digest.slice(0, 200))} is not a sha256 or sha512 digest`);
  const [algorithm, hex] = digest.split(':');
  return path.join(cacheDir, 'blobs', algorithm!, hex!);
}
