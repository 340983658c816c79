// `fn build`'s work: validates fn.yaml and bundles the handler with the runtime into one module; also the first step of deploy.

import path from 'node:path';
import type { Command } from 'commander';
import { bundleFunction, type Bundle, type NativeModule } from '@kubefn/builder';
import type { App } from './app.js';
import { loadFnYaml, type LoadedFunction, type SpecOverrides } from '@kubefn/platform';
import { buildImage, imageTarget, pushImage, registryClient, writeArchive } from './image.js';
import { imageCacheDir, type ImageFlags } from './image-options.js';
import { formatBytes, silentProgress, type Progress } from './output.js';

export interface Built extends LoadedFunction {
  bundle: Bundle;
}

/** Loads `<dir>/fn.yaml`, applies overrides, and bundles the handler. */
export async function buildFunction(
  target: string,
  options: { overrides?: SpecOverrides; progress?: Progress } = {},
): Promise<Built> {
  return bundleLoaded(await loadFnYaml(target, options.overrides), options.progress);
}

/** Bundles the handler of a function whose fn.yaml is already loaded. */
export async function bundleLoaded(loaded: LoadedFunction, progress: Progress = silentProgress): Promise<Built> {
  const bundle = await progress.step(
    `bundling ${loaded.spec.name} (${loaded.spec.handler})`,
    () => bundleFunction({ dir: loaded.dir, handler: loaded.spec.handler, assets: loaded.spec.assets ?? [] }),
    (b) => `bundled ${loaded.spec.name}: ${formatBytes(b.bytes)}`,
  );
  return { ...loaded, bundle };
}

/** What ships beside the bundle, on stderr whatever the output mode, like warnings: it is not in the bundle. */
export function printNatives(app: App, natives: readonly NativeModule[]): void {
  for (const n of natives) app.note(`native: ${n.name}${n.version ? `@${n.version}` : ''} for ${n.platform} ships beside the bundle`);
}

/** Bundler warnings go to stderr whatever the output mode: they are about the user's code. */
export function printWarnings(app: App, warnings: readonly string[]): void {
  for (const line of warnings) app.note(`warning: ${line}`);
}

export interface BuildFlags extends ImageFlags {
  json?: boolean;
  output?: string;
}

/** `fn build`'s work, loaded by its command (build-command.ts) only when it runs. */
export async function runBuild(app: App, command: Command, target: string, opts: BuildFlags): Promise<void> {
  const json = opts.json === true;
  const progress = app.progress(json);
  if (opts.output === undefined && opts.registry === undefined) {
    const built = await buildFunction(path.resolve(app.io.cwd, target), { progress });
    printWarnings(app, built.bundle.warnings);
    printNatives(app, built.bundle.natives);
    const { bundle, spec } = built;
    const files = bundle.files.map((f) => f.path);
    if (json) return app.json({ name: spec.name, file: bundle.file, format: bundle.format, bytes: bundle.bytes, digest: bundle.digest, files, natives: bundle.natives, warnings: bundle.warnings });
    app.out(`bundle: ${path.relative(app.io.cwd, bundle.file) || bundle.file}`);
    app.out(`size:   ${formatBytes(bundle.bytes)}`);
    app.out(`digest: ${bundle.digest}`);
    if (files.length) app.out(`files:  ${files.join(', ')}`);
    return;
  }
  const loaded = await loadFnYaml(path.resolve(app.io.cwd, target));
  const client = registryClient(opts);
  const cacheDir = imageCacheDir(app.config(command).home);
  const fi = await buildImage(loaded, opts, { client, cacheDir, progress });
  printWarnings(app, fi.bundle.warnings);
  printNatives(app, fi.bundle.natives);
  const result: Record<string, unknown> = {
    name: loaded.spec.name,
    digest: fi.image.manifestDescriptor.digest,
    base: fi.base.name,
    bundleBytes: fi.bundle.bytes,
    layerBytes: fi.layer.blob.length,
    natives: fi.bundle.natives,
  };
  if (opts.output !== undefined) {
    const file = path.resolve(app.io.cwd, opts.output);
    const refName = `localhost/kubefn/${loaded.spec.name}:${opts.tag ?? 'latest'}`;
    result.output = file;
    result.archiveBytes = await writeArchive(client, fi, file, refName, { cacheDir, progress });
  }
  if (opts.registry !== undefined) {
    const report = await pushImage(client, fi, imageTarget(opts.registry, loaded.spec.name, opts.tag), progress);
    Object.assign(result, { image: report.ref, bytesPushed: report.bytesSent, blobs: report.blobs });
  }
  if (json) return app.json(result);
  app.out(`digest: ${String(result.digest)}`);
  app.out(`layer:  ${formatBytes(fi.layer.blob.length)} (bundle ${formatBytes(fi.bundle.bytes)})`);
  if (result.output) app.out(`output: ${String(result.output)}`);
  if (result.image) app.out(`image:  ${String(result.image)}`);
}
