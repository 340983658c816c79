// Image options shared by `fn build` and `fn deploy`: --registry, --base, --tag, --insecure-registry,
// and the build -> push / archive steps behind them.

import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import {
  buildFunctionImage,
  defaultBase,
  formatBytes,
  functionImageArchive,
  hostBaseName,
  loadCredentials,
  parseReference,
  pushFunctionImage,
  RegistryClient,
  type FunctionImage,
  type PushReport,
} from '@kubefn/builder';
import { collect } from './args.js';
import { checkArg } from './errors.js';
import type { LoadedFunction } from '@kubefn/platform';
import { silentProgress, type Progress } from './output.js';

export interface ImageFlags {
  registry?: string;
  base?: string;
  tag?: string;
  insecureRegistry?: string[];
}

export function addImageOptions(command: Command): Command {
  return command
    .option('--registry <host[:port][/path]>', 'build an OCI image and push it here, e.g. 127.0.0.1:5000 or ghcr.io/acme')
    .option('--base <image>', `base image: a reference, "${hostBaseName}" (this machine's node) or "scratch" (default ${defaultBase})`)
    .option('--tag <tag>', 'tag to push (default "latest"); specs always name the image by digest')
    .option('--insecure-registry <host:port>', 'talk plain HTTP to this registry (loopback ones always are; repeatable)', collect);
}

/** Where the host base and downloaded base layers are kept between builds: <home>/cache. */
export function imageCacheDir(home: string): string {
  return path.join(home, 'cache');
}

export function registryClient(flags: ImageFlags): RegistryClient {
  return new RegistryClient({
    insecureRegistries: flags.insecureRegistry ?? [],
    credentials: (registry) => loadCredentials(registry),
    userAgent: 'kubefn-cli',
  });
}

/** Builds the function's image in memory: bundle, layer, config, manifest. */
export async function buildImage(
  loaded: LoadedFunction,
  flags: ImageFlags,
  options: { client: RegistryClient; cacheDir: string; progress?: Progress },
): Promise<FunctionImage> {
  const progress = options.progress ?? silentProgress;
  const base = flags.base ?? defaultBase;
  return progress.step(
    `building image of ${loaded.spec.name} on ${base}`,
    () =>
      buildFunctionImage({
        dir: loaded.dir,
        handler: loaded.spec.handler,
        name: loaded.spec.name,
        base,
        assets: loaded.spec.assets ?? [],
        client: options.client,
        cacheDir: options.cacheDir,
      }),
    (fi) => `built image ${fi.image.manifestDescriptor.digest.slice(0, 19)}: function layer ${formatBytes(fi.layer.blob.length)}`,
  );
}

/** `<registry>/<name>:<tag>`; a registry may carry a path ("ghcr.io/acme"). */
export function imageTarget(registry: string, name: string, tag = 'latest') {
  return checkArg(() => parseReference(`${registry.replace(/\/+$/, '')}/${name}:${tag}`));
}

export async function pushImage(
  client: RegistryClient,
  fi: FunctionImage,
  target: ReturnType<typeof imageTarget>,
  progress: Progress = silentProgress,
): Promise<PushReport> {
  return progress.step(
    `pushing to ${target.registry}/${target.repository}`,
    () => pushFunctionImage(client, fi, target),
    (r) =>
      r.bytesSent === 0 && !r.manifestPushed
        ? `registry already has ${r.ref}: nothing pushed`
        : `pushed ${formatBytes(r.bytesSent)}: ${r.blobs.uploaded} blob(s) uploaded, ${r.blobs.mounted} mounted, ${r.blobs.existed} already there`,
  );
}

export async function writeArchive(
  client: RegistryClient,
  fi: FunctionImage,
  file: string,
  refName: string,
  options: { cacheDir: string; progress?: Progress },
): Promise<number> {
  const progress = options.progress ?? silentProgress;
  return progress.step(
    `writing ${file}`,
    async () => {
      const archive = await functionImageArchive(client, fi, refName, options.cacheDir);
      await writeFile(file, archive);
      return archive.length;
    },
    (bytes) => `wrote ${file} (${formatBytes(bytes)}); load it with: podman load -i ${file}`,
  );
}
