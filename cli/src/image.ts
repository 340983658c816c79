// The build -> push / archive steps behind the image flags of `fn build` and `fn deploy` (see image-options.ts).

import { writeFile } from 'node:fs/promises';
import {
  buildFunctionImage,
  defaultBase,
  formatBytes,
  functionImageArchive,
  loadCredentials,
  parseReference,
  pushFunctionImage,
  RegistryClient,
  type FunctionImage,
  type PushReport,
} from '@kubefn/builder';
import { checkArg } from './errors.js';
import type { ImageFlags } from './image-options.js';
import type { LoadedFunction } from '@kubefn/platform';
import { silentProgress, type Progress } from './output.js';

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
