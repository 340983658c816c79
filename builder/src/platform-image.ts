// kubefn's own image, built the way functions are: the platform's entry point bundled by esbuild
// into one ES module, laid on a base image as one reproducible layer. Two things cannot be
// bundled and ship as files next to it:
//   - esbuild itself (a native binary the builder component runs), and
//   - the runtime that the builder bundles into every function (runtime-node and what it imports),
//     under /app/node_modules as a package install would place them, so the bundler in the image
//     resolves `@kubefn/runtime-node` exactly as it does in a checkout.

import { readFile, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { KubefnError } from '@kubefn/platform';
import { esmRequireBanner, loadGuardEntry, runtimeEntry } from './bundle.js';
import { formatBytes, imageLabels, pushBaseLayers, resolveBase, type ResolvedBase } from './image-build.js';
import { assembleImage, configMediaType, manifestMediaType, type AssembledImage } from './oci-image.js';
import { buildLayer, sha256, type Layer, type LayerFile } from './oci-layer.js';
import { formatReference, parseReference, type RegistryClient } from './registry/index.js';

export interface PlatformImageOptions {
  /** The compiled entry module: @kubefn/server's dist/entry.js. */
  entry: string;
  /** Base image reference or "host": it must have node on PATH. */
  base: string;
  client: RegistryClient;
  cacheDir: string;
  /** Recorded in the image's labels. */
  version: string;
  onProgress?: (message: string) => void;
}

export interface PlatformImage {
  layer: Layer;
  image: AssembledImage;
  base: ResolvedBase;
  /** Bytes of the bundled entry point. */
  bundleBytes: number;
  /** Files shipped beside the bundle (esbuild, the function runtime). */
  files: number;
}

export const platformEntrypoint = ['node', '--enable-source-maps', '/app/kubefn-platform.mjs'];
const esbuildBinary = 'app/node_modules/esbuild/bin/esbuild';

export async function buildPlatformImage(options: PlatformImageOptions): Promise<PlatformImage> {
  const progress = options.onProgress ?? (() => {});
  const entry = path.resolve(options.entry);
  if (!(await stat(entry).catch(() => null))?.isFile()) {
    throw new KubefnError('NOT_FOUND', `platform entry ${entry} does not exist`, { hint: 'build kubefn first: npm run build' });
  }
  progress(`resolving base ${options.base}`);
  const [base, bundle, runtime, esbuildFiles] = await Promise.all([
    resolveBase(options.base, options.client, options.cacheDir),
    bundlePlatform(entry),
    runtimeFiles(),
    esbuildPackage(),
  ]);
  progress(`bundled the platform (${formatBytes(bundle.code.length)}); ${runtime.length} runtime file(s) and esbuild beside it`);
  const layer = await buildLayer([
    { path: 'app/kubefn-platform.mjs', content: bundle.code },
    { path: 'app/kubefn-platform.mjs.map', content: bundle.map },
    ...runtime,
    ...esbuildFiles,
  ]);
  const image = assembleImage(base.base, layer, {
    entrypoint: platformEntrypoint,
    workingDir: '/app',
    env: { NODE_ENV: 'production', ESBUILD_BINARY_PATH: `/${esbuildBinary}` },
    exposedPorts: [8080],
    labels: { [imageLabels.base]: base.name, 'dev.kubefn.platform.version': options.version },
    createdBy: 'kubefn platform image',
  });
  progress(`image ${image.manifestDescriptor.digest.slice(0, 19)}: platform layer ${formatBytes(layer.blob.length)}`);
  return { layer, image, base, bundleBytes: bundle.code.length, files: runtime.length + esbuildFiles.length };
}

async function bundlePlatform(entry: string): Promise<{ code: Buffer; map: Buffer }> {
  try {
    const result = await esbuild.build({
      entryPoints: [entry],
      absWorkingDir: checkoutRoot,
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      sourcemap: 'linked',
      sourcesContent: false,
      keepNames: true,
      legalComments: 'none',
      banner: { js: esmRequireBanner },
      // esbuild runs its binary; ws's optional native speed-ups are looked up in try/catch.
      external: ['esbuild', 'bufferutil', 'utf-8-validate'],
      // jsonc-parser's main build is UMD, whose require() of its own files esbuild cannot follow;
      // its ES module build bundles whole.
      alias: { 'jsonc-parser': 'jsonc-parser/lib/esm/main.js' },
      write: false,
      logLevel: 'silent',
      outfile: path.join(checkoutRoot, 'kubefn-platform.mjs'),
    });
    const file = (suffix: string): Buffer => Buffer.from(result.outputFiles.find((f) => f.path.endsWith(suffix))!.contents);
    return { code: file('.mjs'), map: file('.mjs.map') };
  } catch (err) {
    const failure = err as esbuild.BuildFailure;
    if (Array.isArray(failure.errors)) {
      const text = (await esbuild.formatMessages(failure.errors, { kind: 'error' })).join('\n');
      throw new KubefnError('BUILD_FAILED', `bundling the platform failed:\n${text}`, { cause: err });
    }
    throw err;
  }
}

/**
 * Where bundled paths are named from: the checkout this builder sits in, so the bundle's module
 * comments and source-map paths do not depend on where the checkout is.
 */
const checkoutRoot = fileURLToPath(new URL('../../', import.meta.url));

/**
 * The files the function bundler reads from runtime-node's dependency graph, as esbuild reports
 * them, placed under app/node_modules with their package.json files: workspace packages under
 * their package names, registry packages where they already are.
 */
async function runtimeFiles(): Promise<LayerFile[]> {
  const result = await esbuild.build({
    // Every module of runtime-node a function bundle imports: the runtime and its load guard.
    entryPoints: [runtimeEntry, loadGuardEntry],
    absWorkingDir: checkoutRoot,
    bundle: true,
    platform: 'node',
    format: 'esm',
    write: false,
    metafile: true,
    logLevel: 'silent',
    outdir: 'runtime',
  });
  const out = new Map<string, LayerFile>();
  const packages = new Map<string, { dir: string; target: string }>();
  for (const input of Object.keys(result.metafile.inputs)) {
    const file = path.resolve(checkoutRoot, input);
    const pkg = await packageOf(file, packages);
    const target = path.posix.join(pkg.target, path.relative(pkg.dir, file).split(path.sep).join('/'));
    out.set(target, { path: target, content: await readFile(file) });
    // The maps let stack traces of functions built in the cluster point at runtime sources.
    const map = await readFile(`${file}.map`).catch(() => undefined);
    if (map) out.set(`${target}.map`, { path: `${target}.map`, content: map });
  }
  for (const { dir, target } of packages.values()) {
    const p = `${target}/package.json`;
    out.set(p, { path: p, content: await readFile(path.join(dir, 'package.json')) });
  }
  return [...out.values()];
}

/** The package `file` belongs to, and where it goes in the image (app/node_modules/<name>). */
async function packageOf(file: string, seen: Map<string, { dir: string; target: string }>): Promise<{ dir: string; target: string }> {
  let dir = path.dirname(file);
  for (;;) {
    const known = seen.get(dir);
    if (known) return known;
    const manifest = await readFile(path.join(dir, 'package.json'), 'utf8').catch(() => undefined);
    const name = manifest === undefined ? undefined : (JSON.parse(manifest) as { name?: string }).name;
    if (name) {
      const pkg = { dir, target: `app/node_modules/${name}` };
      seen.set(dir, pkg);
      return pkg;
    }
    const up = path.dirname(dir);
    if (up === dir) throw new KubefnError('INTERNAL', `no package.json with a name above ${file}`);
    dir = up;
  }
}

/** esbuild's JS API and its binary (ESBUILD_BINARY_PATH points at it). */
async function esbuildPackage(): Promise<LayerFile[]> {
  const require = createRequire(import.meta.url);
  const dir = path.dirname(require.resolve('esbuild/package.json'));
  const main = await readFile(path.join(dir, 'lib', 'main.js'));
  // The platform package's binary; `npm install` may also have copied it into esbuild/bin.
  const platformPkg = path.dirname(require.resolve(`@esbuild/${process.platform}-${process.arch}/package.json`));
  const binary = await readFile(path.join(platformPkg, 'bin', 'esbuild')).catch(() => readFile(path.join(dir, 'bin', 'esbuild')));
  return [
    { path: 'app/node_modules/esbuild/package.json', content: await readFile(path.join(dir, 'package.json')) },
    { path: 'app/node_modules/esbuild/lib/main.js', content: main },
    { path: esbuildBinary, content: binary, mode: 0o755 },
  ];
}

/**
 * Pushes a base image ("host": this machine's node, or a reference) to `target` (registry/repo:tag)
 * and returns the reference by digest: how a cluster gets a base its nodes and builder can pull.
 */
export async function pushBaseImage(client: RegistryClient, name: string, target: string, cacheDir: string): Promise<string> {
  const base = await resolveBase(name, client, cacheDir);
  const ref = parseReference(target);
  await Promise.all(pushBaseLayers(client, base, ref));
  const config = Buffer.from(JSON.stringify(base.base.config));
  await client.pushBlob(ref, sha256(config), config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: manifestMediaType,
      config: { mediaType: configMediaType, digest: sha256(config), size: config.length },
      layers: base.base.layers,
    }),
  );
  await client.putManifest(ref, ref.tag ?? 'latest', manifest, manifestMediaType);
  return formatReference({ registry: ref.registry, repository: ref.repository, digest: sha256(manifest) });
}
