// From a function's source to an OCI image: bundle -> one reproducible layer on a base image ->
// pushed to a registry (only the blobs it lacks) or written as an archive. No daemon involved.

import { KubefnError } from '@kubefn/platform';
import { appFiles } from './app-archive.js';
import { bundleFileNames, bundleFunction, type Bundle, type BundleFormat } from './bundle.js';
import { archFromOci, hostTarget, type Libc, type NativeTarget } from './native-platform.js';
import { cachedBlob, cachedHostBase } from './build-cache.js';
import { hostBaseUser } from './host-base.js';
import { writeOciArchive, type ArchiveBlob } from './oci-archive.js';
import { assembleImage, scratchBase, type AssembledImage, type BaseImage } from './oci-image.js';
import { buildLayer, type Layer } from './oci-layer.js';
import type { RegistryClient } from './registry/client.js';
import { formatReference, parseReference, type ImageReference } from './registry/reference.js';

/** `--base host`: a base made from this machine's node binary (see host-base.ts). */
export const hostBaseName = 'host';
/** `--base scratch`: no base at all; only for images whose runtime comes from elsewhere. */
export const scratchBaseName = 'scratch';
/** The base `fn build` uses unless told otherwise. */
export const defaultBase = 'docker.io/library/node:20-bookworm-slim';

/** Where the bundle and its files live in the image (the app root), and how the image starts it. */
export const appDir = '/app';
export function imageEntrypoint(format: BundleFormat): string[] {
  return ['node', '--enable-source-maps', `${appDir}/${bundleFileNames[format]}`];
}
export const imageLabels = {
  function: 'dev.kubefn.function',
  bundleDigest: 'dev.kubefn.bundle.digest',
  base: 'dev.kubefn.base',
} as const;

export interface ResolvedBase {
  base: BaseImage;
  /** What the user named: a reference, "host" or "scratch". */
  name: string;
  /** Where the base's layers can be fetched from, for a registry base. */
  source: ImageReference | undefined;
  /** Layer blobs already in memory (the host base), by digest. */
  blobs: Map<string, Buffer>;
}

export interface FunctionImage {
  bundle: Bundle;
  layer: Layer;
  image: AssembledImage;
  base: ResolvedBase;
}

export interface ImageBuildOptions {
  /** The function's directory and handler module (relative to it). */
  dir: string;
  handler: string;
  /** The function's name, for labels. */
  name: string;
  /** Base image reference, "host" or "scratch". */
  base: string;
  /** Files or directories (relative to `dir`) shipped next to the bundle, under /app (with the files the code names beside itself). */
  assets?: string[];
  client: RegistryClient;
  /** Cache for the host base and downloaded layers, e.g. ~/.kubefn/cache. */
  cacheDir: string;
  onProgress?: (message: string) => void;
  /** The source is an upload: the bundler reads nothing outside `dir` (see `BundleOptions.confine`). */
  confine?: boolean;
}

/** Bundles the function and assembles its image in memory; nothing is pushed yet. */
export async function buildFunctionImage(options: ImageBuildOptions): Promise<FunctionImage> {
  const progress = options.onProgress ?? (() => {});
  progress(`resolving base ${options.base}`);
  const base = await resolveBase(options.base, options.client, options.cacheDir);
  // The base decides which native binaries the function can load: its architecture and C library.
  const bundle = await bundleFunction({
    dir: options.dir,
    handler: options.handler,
    assets: options.assets ?? [],
    target: baseTarget(base),
    confine: options.confine ?? false,
  });
  progress(`bundled ${options.handler} (${formatBytes(bundle.bytes)})`);
  if (bundle.natives.length) {
    progress(`native modules: ${bundle.natives.map((n) => `${n.name}${n.version ? `@${n.version}` : ''} (${n.platform})`).join(', ')}`);
  }
  const [entry, ...files] = await appFiles(bundle);
  if (files.length) progress(`files next to the bundle: ${files.length}, ${formatBytes(files.reduce((n, f) => n + f.content.length, 0))}`);
  const layer = await buildLayer([entry!, ...files].map((f) => ({ ...f, path: `${appDir.slice(1)}/${f.path}` })));
  const image = assembleImage(base.base, layer, {
    entrypoint: imageEntrypoint(bundle.format),
    workingDir: appDir,
    // A function runs as nobody unless its base names a user of its own (node's images run as root).
    userIfRoot: hostBaseUser,
    env: { NODE_ENV: 'production', PORT: '8080', ADMIN_PORT: '8081' },
    exposedPorts: [8080, 8081],
    labels: { [imageLabels.function]: options.name, [imageLabels.bundleDigest]: bundle.digest, [imageLabels.base]: base.name },
    createdBy: `kubefn build ${options.handler}`,
  });
  progress(`image ${image.manifestDescriptor.digest.slice(0, 19)}: function layer ${formatBytes(layer.blob.length)}`);
  return { bundle, layer, image, base };
}

export interface PushReport {
  /** registry/repository@sha256:... — what a spec's `image` should name. */
  ref: string;
  digest: string;
  /** Body bytes actually sent to the registry (blobs and manifest). */
  bytesSent: number;
  blobs: { uploaded: number; mounted: number; existed: number };
  /** False when the tag already named this manifest and nothing was written. */
  manifestPushed: boolean;
}

/** Pushes the image to `target` (registry/repository[:tag]), sending only the blobs the registry lacks. */
export async function pushFunctionImage(
  client: RegistryClient,
  fi: Pick<FunctionImage, 'layer' | 'image' | 'base'>,
  target: ImageReference,
  onProgress: (message: string) => void = () => {},
): Promise<PushReport> {
  const report: PushReport = { ref: '', digest: fi.image.manifestDescriptor.digest, bytesSent: 0, blobs: { uploaded: 0, mounted: 0, existed: 0 }, manifestPushed: false };
  const count = (r: { result: 'exists' | 'mounted' | 'uploaded'; bytesSent: number }): void => {
    report.bytesSent += r.bytesSent;
    report.blobs[r.result === 'exists' ? 'existed' : r.result]++;
  };
  const pushes = pushBaseLayers(client, fi.base, target, onProgress).map((p) => p.then(count));
  pushes.push(client.pushBlob(target, fi.layer.digest, fi.layer.blob).then(count));
  pushes.push(client.pushBlob(target, fi.image.configDescriptor.digest, fi.image.config).then(count));
  await Promise.all(pushes);

  const tag = target.tag ?? report.digest;
  const current = await client.getManifest({ ...target, tag, digest: undefined }).catch(() => undefined);
  if (current?.descriptor.digest !== report.digest) {
    await client.putManifest(target, tag, fi.image.manifest, fi.image.manifestDescriptor.mediaType);
    report.bytesSent += fi.image.manifest.length;
    report.manifestPushed = true;
  }
  report.ref = formatReference({ registry: target.registry, repository: target.repository, digest: report.digest });
  onProgress(
    `pushed ${report.ref}: ${formatBytes(report.bytesSent)} sent, ${report.blobs.uploaded} blob(s) uploaded, ` +
      `${report.blobs.mounted} mounted, ${report.blobs.existed} already there`,
  );
  return report;
}

/**
 * Pushes the base's layers to `target`'s repository, one promise each: from the bytes at hand
 * (host or scratch bases), else copied from the base's registry, by a cross-repository mount when
 * it is the same registry.
 */
export function pushBaseLayers(
  client: RegistryClient,
  base: ResolvedBase,
  target: ImageReference,
  onProgress: (message: string) => void = () => {},
): Promise<{ result: 'exists' | 'mounted' | 'uploaded'; bytesSent: number }>[] {
  const source = base.source;
  return base.base.layers.map(async (l) => {
    const local = base.blobs.get(l.digest);
    if (local) return client.pushBlob(target, l.digest, local);
    if (!source) throw new KubefnError('INTERNAL', `base layer ${l.digest} has neither bytes nor a source`);
    return client.pushBlob(
      target,
      l.digest,
      async () => {
        onProgress(`copying base layer ${l.digest.slice(7, 19)} (${formatBytes(l.size)}) from ${source.registry}`);
        const blob = await client.getBlobStream(source, l.digest);
        return { size: blob.size, body: blob.body };
      },
      source.registry === target.registry ? { mountFrom: source.repository } : {},
    );
  });
}

/** The image as an OCI archive tar (`podman load -i`), base layers included. */
export async function functionImageArchive(client: RegistryClient, fi: Pick<FunctionImage, 'layer' | 'image' | 'base'>, refName: string, cacheDir: string): Promise<Buffer> {
  const blobs: ArchiveBlob[] = [{ digest: fi.layer.digest, content: fi.layer.blob }];
  for (const l of fi.base.base.layers) {
    const content = fi.base.blobs.get(l.digest) ?? (await cachedBlob(client, fi.base.source!, l.digest, cacheDir));
    blobs.push({ digest: l.digest, content });
  }
  return writeOciArchive(fi.image, blobs, refName);
}

/**
 * The platform a base image runs native code on: its os and architecture from the image config;
 * its C library musl when it is an Alpine (or otherwise musl) image, glibc otherwise, and this
 * machine's for a base made from this machine's node (which says so in its history).
 */
export function baseTarget(base: ResolvedBase): NativeTarget {
  const { os, architecture, history = [] } = base.base.config;
  const made = history.map((h) => h.created_by ?? '').join('\n');
  const hostMade = /kubefn host-node base \(node [^,)]*(?:, (glibc|musl))?\)/.exec(made);
  const libc: Libc | undefined =
    base.name === hostBaseName
      ? hostTarget().libc
      : hostMade
        ? ((hostMade[1] as Libc | undefined) ?? 'glibc')
        : /alpine|musl/i.test(`${base.name}\n${made}`)
          ? 'musl'
          : 'glibc';
  return { os, arch: archFromOci(architecture), libc };
}

/** Resolves `--base`: a registry reference, "host" or "scratch". */
export async function resolveBase(name: string, client: RegistryClient, cacheDir: string): Promise<ResolvedBase> {
  if (name === scratchBaseName) {
    return { name, source: undefined, blobs: new Map(), base: scratchBase() };
  }
  if (name === hostBaseName) {
    const { base, blob } = await cachedHostBase(cacheDir);
    return { name, source: undefined, blobs: new Map([[base.layers[0]!.digest, blob]]), base };
  }
  const ref = parseReference(name);
  const got = await client.getImageConfig(ref);
  if (got.config.os !== 'linux') {
    throw new KubefnError('BAD_REQUEST', `base image ${name} is for ${got.config.os}, not linux`);
  }
  return {
    name,
    source: { ...ref, digest: got.manifestDescriptor.digest },
    blobs: new Map(),
    base: { config: got.config, layers: got.manifest.layers },
  };
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}
