// How a built function becomes something a driver can run: an app (the bundle and its files) in
// the app store (process driver), an image in a registry, or an image loaded straight into podman (podman driver, no
// registry). The build service in `fn up` publishes with one of these. The source is always an
// upload, so every build here is confined to its directory (`BundleOptions.confine`).

import { mkdtemp, realpath, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import {
  buildFunctionImage,
  buildWarmPoolImage,
  bundleFunction,
  ownFiles,
  formatBytes,
  packApp,
  functionImageArchive,
  parseReference,
  pushFunctionImage,
  type FunctionImage,
  type RegistryClient,
} from '@kubefn/builder';
import { appImageRef, KubefnError, podmanError, type AppStore, type Podman } from '@kubefn/platform';
import { fnYamlName, loadFnYaml } from '@kubefn/platform';

export interface PublishRequest {
  /** The function's source directory (an upload, extracted by the build service) and handler module. */
  dir: string;
  handler: string;
  name: string;
  log(line: string): void;
}

export interface Published {
  /** What the spec's `image` names. */
  image: string;
  /** The bundle's or the image manifest's digest. */
  digest: string;
}

export type Publisher = (request: PublishRequest) => Promise<Published>;

/** Bundles, with the assets fn.yaml declares and the files the code reads, into the process driver's app store. */
export function appPublisher(store: AppStore): Publisher {
  return async ({ dir, handler, log }) => {
    const out = await mkdtemp(path.join(tmpdir(), 'kubefn-publish-'));
    try {
      const bundle = await bundleFunction({ dir, handler, outDir: out, assets: await declaredAssets(dir), confine: true });
      for (const warning of bundle.warnings) log(`warning: ${warning}`);
      const app = await packApp(bundle);
      log(`bundled ${handler}: ${formatBytes(bundle.bytes)}, ${ownFiles(bundle).length} file(s) of its own next to it and kubefn's runtime, app ${formatBytes(app.tar.length)}`);
      if (!(await store.has(app.digest))) await store.put(app.digest, Readable.from([app.tar]));
      return { image: appImageRef(app.digest), digest: app.digest };
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  };
}

/** The `assets` of the fn.yaml that came with the source, if any. */
async function declaredAssets(dir: string): Promise<string[]> {
  const file = path.join(dir, fnYamlName);
  // Read only if it is really the upload's own: a link out would show another file's lines in a YAML error.
  const real = await realpath(file).catch(() => undefined);
  const inside = real && path.relative(await realpath(dir), real);
  if (inside !== undefined && (inside.startsWith('..') || path.isAbsolute(inside))) {
    throw new KubefnError('BUILD_FAILED', `${fnYamlName} is a symlink that leads outside the function directory`, { hint: 'upload the file itself' });
  }
  const found = await stat(file).catch(() => undefined);
  return found?.isFile() ? ((await loadFnYaml(dir)).spec.assets ?? []) : [];
}

/** Builds the function's image from a source directory, assets included. */
async function buildFrom(options: ImagePublisherOptions, { dir, handler, name, log }: PublishRequest) {
  const assets = await declaredAssets(dir);
  return buildFunctionImage({ dir, handler, name, base: options.base, assets, client: options.client, cacheDir: options.cacheDir, onProgress: log, confine: true });
}

export interface ImagePublisherOptions {
  client: RegistryClient;
  /** Base image reference, "host" or "scratch". */
  base: string;
  cacheDir: string;
}

/** Builds an image and pushes it to `registry` as <registry>/kubefn/<name>:latest; the spec names it by digest. */
export function registryPublisher(options: ImagePublisherOptions & { registry: string }): Publisher {
  return async (request) => {
    const { name, log } = request;
    const fi = await buildFrom(options, request);
    const report = await pushFunctionImage(options.client, fi, parseReference(`${options.registry}/kubefn/${name}:latest`), log);
    return { image: report.ref, digest: report.digest };
  };
}

/** Builds an image and loads it into podman's local storage; no registry involved. */
export function podmanLoadPublisher(options: ImagePublisherOptions & { podman: Podman }): Publisher {
  return async (request) => {
    const { name, log } = request;
    const fi = await buildFrom(options, request);
    const digest = fi.image.manifestDescriptor.digest;
    const image = podmanImageName(name, digest);
    const loaded = await loadIntoPodman(options, fi, image, `the image of "${name}"`);
    log(loaded ? `loaded ${image} into podman` : `podman already has ${image}`);
    return { image, digest };
  };
}

/** The name an image loaded into podman gets: tagged by its manifest digest, so an unchanged one maps to the image podman already has. */
function podmanImageName(name: string, digest: string): string {
  return `localhost/kubefn/${name}:${digest.slice('sha256:'.length, 'sha256:'.length + 20)}`;
}

/** Loads an assembled image into podman's storage as `image`, unless podman has it; whether it loaded. */
export async function loadIntoPodman(
  options: { client: RegistryClient; cacheDir: string; podman: Podman },
  fi: Pick<FunctionImage, 'layer' | 'image' | 'base'>,
  image: string,
  what: string,
): Promise<boolean> {
  if ((await options.podman.run(['image', 'exists', image])).code === 0) return false;
  const scratch = await mkdtemp(path.join(tmpdir(), 'kubefn-load-'));
  try {
    const archive = path.join(scratch, 'image.tar');
    await writeFile(archive, await functionImageArchive(options.client, fi, image, options.cacheDir));
    const r = await options.podman.run(['load', '--quiet', '--input', archive], { timeoutMs: 300_000 });
    if (r.code !== 0) throw new KubefnError('BUILD_FAILED', `podman cannot load ${what}: ${podmanError(r)}`);
    return true;
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/**
 * The podman warm pool's image on `base` (the builder's buildWarmPoolImage), loaded into podman
 * and named by its manifest digest, so an unchanged runtime and base reuse what podman has.
 */
export async function warmPoolImage(options: ImagePublisherOptions & { podman: Podman }): Promise<string> {
  const fi = await buildWarmPoolImage(options);
  const image = podmanImageName('warm-pool', fi.image.manifestDescriptor.digest);
  await loadIntoPodman(options, fi, image, 'the warm pool image');
  return image;
}
