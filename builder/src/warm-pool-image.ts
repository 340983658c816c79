// The image a podman warm pool runs: a function image's base with runtime-node's warm runtime in
// one file (/kubefn/warm.cjs) instead of a function. Its containers start with an empty /app
// mounted from the host; specializing one writes a function's /app there and tells the runtime
// to load it (runtime-node's warm.ts, over its admin port). A function image made on the same
// base differs from this one only in its last layer, which is how the pool knows it can take it.

import * as esbuild from 'esbuild';
import { KubefnError } from '@kubefn/platform';
import { warmRuntimeEntry } from './bundle.js';
import { hostBaseUser } from './host-base.js';
import { appDir, resolveBase, type FunctionImage } from './image-build.js';
import { assembleImage } from './oci-image.js';
import { buildLayer } from './oci-layer.js';
import type { RegistryClient } from './registry/client.js';

/** Where the warm runtime sits in a pool image. */
export const warmPoolRuntimePath = '/kubefn/warm.cjs';
export const warmPoolImageLabel = 'dev.kubefn.warm-pool';

/** runtime-node's warm runtime and everything it imports, as one CommonJS file. */
export async function bundleWarmRuntime(): Promise<Buffer> {
  const result = await esbuild.build({
    entryPoints: [warmRuntimeEntry],
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    keepNames: true,
    legalComments: 'none',
    logLevel: 'silent',
    write: false,
    outfile: 'warm.cjs',
    // The one ES module feature it uses: its own URL, for createRequire.
    define: { 'import.meta.url': '__kubefnWarmUrl' },
    banner: { js: "const __kubefnWarmUrl = require('node:url').pathToFileURL(__filename).href;" },
  });
  const out = result.outputFiles[0];
  if (!out) throw new KubefnError('INTERNAL', 'esbuild produced no warm runtime');
  return Buffer.from(out.contents);
}

/** The pool image on `base` (a reference, "host" or "scratch"), assembled in memory. */
export async function buildWarmPoolImage(options: { base: string; client: RegistryClient; cacheDir: string }): Promise<Pick<FunctionImage, 'layer' | 'image' | 'base'>> {
  const base = await resolveBase(options.base, options.client, options.cacheDir);
  const layer = await buildLayer([{ path: warmPoolRuntimePath.slice(1), content: await bundleWarmRuntime() }]);
  const image = assembleImage(base.base, layer, {
    entrypoint: ['node', warmPoolRuntimePath],
    workingDir: appDir,
    userIfRoot: hostBaseUser,
    env: { NODE_ENV: 'production', PORT: '8080', ADMIN_PORT: '8081' },
    exposedPorts: [8080, 8081],
    labels: { [warmPoolImageLabel]: base.name },
    createdBy: 'kubefn warm pool runtime',
  });
  return { layer, image, base };
}
