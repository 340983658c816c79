// `fn build`'s command line; its work (build.ts, the builder and esbuild) is loaded only when it runs.

import type { Command } from 'commander';
import type { App } from './app.js';
import type { BuildFlags } from './build.js';
import { addImageOptions } from './image-options.js';

export function registerBuild(program: Command, app: App): void {
  const command = program
    .command('build')
    .description("validate fn.yaml and bundle the function's handler with the kubefn runtime; optionally build an OCI image")
    .argument('[path]', 'function directory (or its fn.yaml)', '.')
    .option('-o, --output <file>', 'build an OCI image and write it as an archive (podman load -i <file>)')
    .option('--json', 'print the result as JSON');
  addImageOptions(command).addHelpText(
    'after',
    `
Without --output or --registry, the bundle is written to <path>/.kubefn/build/fn.cjs (fn.mjs
when the code uses top-level await), and the files shipped next to it are listed: the assets
fn.yaml names and the files the code reads beside itself (path.join(__dirname, 'x.html')).
\`fn deploy\` packs both into one tar (an app) for a platform running the process driver.

With --output or --registry, the bundle becomes one layer on a base image (no Docker daemon;
the same source and base always give the same image digest). A push sends only the blobs the
registry lacks, so rebuilding unchanged source pushes nothing. Credentials come from
~/.docker/config.json (docker login) or podman's auth.json (podman login).

Examples:
  $ fn build
  $ fn build --output hello.tar && podman load -i hello.tar
  $ fn build --registry 127.0.0.1:5000 --base 127.0.0.1:5000/library/node:20
  $ fn build --registry ghcr.io/acme --tag v1 --json | jq -r .image`,
  );
  command.action(async (target: string, opts: BuildFlags) => {
    const { runBuild } = await import('./build.js');
    await runBuild(app, command, target, opts);
  });
}
