// `fn build`: validates fn.yaml and bundles the handler with the runtime into one module; also the first step of deploy.

import path from 'node:path';
import type { Command } from 'commander';
import { bundleFunction, type Bundle } from '@kubefn/builder';
import type { App } from './app.js';
import { loadFnYaml, type LoadedFunction, type SpecOverrides } from './fn-yaml.js';
import { formatBytes, silentProgress, type Progress } from './output.js';

export interface Built extends LoadedFunction {
  bundle: Bundle;
}

/** Loads `<dir>/fn.yaml`, applies overrides, and bundles the handler. */
export async function buildFunction(
  target: string,
  options: { overrides?: SpecOverrides; progress?: Progress } = {},
): Promise<Built> {
  const loaded = await loadFnYaml(target, options.overrides);
  const progress = options.progress ?? silentProgress;
  const bundle = await progress.step(
    `bundling ${loaded.spec.name} (${loaded.spec.handler})`,
    () => bundleFunction({ dir: loaded.dir, handler: loaded.spec.handler }),
    (b) => `bundled ${loaded.spec.name}: ${formatBytes(b.bytes)}`,
  );
  return { ...loaded, bundle };
}

/** Bundler warnings go to stderr whatever the output mode: they are about the user's code. */
export function printWarnings(app: App, warnings: readonly string[]): void {
  for (const line of warnings) app.note(`warning: ${line}`);
}

export function registerBuild(program: Command, app: App): void {
  program
    .command('build')
    .description("validate fn.yaml and bundle the function's handler with the kubefn runtime")
    .argument('[path]', 'function directory (or its fn.yaml)', '.')
    .option('--json', 'print {name, file, bytes, digest, warnings} as JSON')
    .addHelpText(
      'after',
      `
The bundle is written to <path>/.kubefn/build/fn.mjs; its sha256 digest is what
\`fn deploy\` uploads and deploys, so an unchanged function uploads nothing.

Examples:
  $ fn build
  $ fn build ./functions/hello
  $ fn build --json | jq -r .digest`,
    )
    .action(async (target: string, opts: { json?: boolean }) => {
      const built = await buildFunction(path.resolve(app.io.cwd, target), { progress: app.progress(opts.json === true) });
      printWarnings(app, built.bundle.warnings);
      const { bundle, spec } = built;
      if (opts.json) {
        return app.json({ name: spec.name, file: bundle.file, bytes: bundle.bytes, digest: bundle.digest, warnings: bundle.warnings });
      }
      app.out(`bundle: ${path.relative(app.io.cwd, bundle.file) || bundle.file}`);
      app.out(`size:   ${formatBytes(bundle.bytes)}`);
      app.out(`digest: ${bundle.digest}`);
    });
}
