// `fn deploy`'s command line; its work (deploy.ts: build, ship, wait) is loaded only when it runs.

import path from 'node:path';
import type { Command } from 'commander';
import { validateName } from '@kubefn/platform/core';
import type { SpecOverrides } from '@kubefn/platform';
import type { App } from './app.js';
import { collect, pairs, parseCount, parseDurationArg } from './args.js';
import { checkArg } from './errors.js';
import { addImageOptions, imageCacheDir, type ImageFlags } from './image-options.js';
import { formatElapsed } from './output.js';

interface DeployFlags extends ImageFlags {
  remoteBuild?: boolean;
  name?: string;
  env?: string[];
  min?: string;
  max?: string;
  wait: boolean;
  timeout: string;
  json?: boolean;
}

export function registerDeploy(program: Command, app: App): void {
  const command = program
    .command('deploy')
    .description('build the function and deploy it to the gateway (create or update)')
    .argument('[path]', 'function directory (or its fn.yaml)', '.')
    .option('--name <name>', 'deploy under this name instead of the one in fn.yaml')
    .option('-e, --env <KEY=VALUE>', 'set an environment variable (repeatable; wins over fn.yaml)', collect)
    .option('--min <n>', 'minimum replicas (scale.min); 0 allows scale to zero')
    .option('--max <n>', 'maximum replicas (scale.max)')
    .option('--no-wait', 'return once the gateway accepted the function, without waiting for the new version')
    .option('--timeout <duration>', 'how long to wait for the new version to answer', '2m')
    .option('--json', 'print the result as JSON')
    .option('--remote-build', "send the source (tar.gz) to the platform's build service instead of building here");
  addImageOptions(command)
    .addHelpText(
      'after',
      `
Steps: build -> ship the code -> PUT /system/functions (POST when new) -> wait until the new
version is what answers (every ready replica runs it, or the function is at zero and the next
call starts it; a handler that cannot load fails the deploy at once) -> print the URL. How the code ships depends on the platform (GET /system/info):
  process driver        the bundle is uploaded (skipped when the gateway has this digest)
  podman or kubernetes, a registry
                        an OCI image is built here and pushed (only blobs the registry lacks)
  podman or kubernetes, no registry
                        the source goes to the platform's build service (POST /system/builds)
--registry builds and pushes an image whatever the platform; --remote-build always sends source.

Examples:
  $ fn deploy
  $ fn deploy ./functions/hello --env GREETING=hi --env LOG_LEVEL=debug
  $ fn deploy --name hello-staging --min 1 --max 5
  $ fn deploy --no-wait --json
  $ fn deploy --registry 127.0.0.1:5000 --base host`,
    )
    .action(async (target: string, flags: DeployFlags) => {
      const overrides: SpecOverrides = {};
      if (flags.name !== undefined) {
        const name = flags.name;
        checkArg(() => validateName(name));
        overrides.name = name;
      }
      if (flags.env) overrides.env = Object.fromEntries(pairs(flags.env, '=', '--env', 'KEY=VALUE'));
      if (flags.min !== undefined) overrides.min = parseCount(flags.min, '--min');
      if (flags.max !== undefined) overrides.max = parseCount(flags.max, '--max', 1);
      const timeoutMs = parseDurationArg(flags.timeout, '--timeout');
      const client = app.client(command);

      const started = performance.now();
      const progress = app.progress(flags.json === true);
      const { deployFunction } = await import('./deploy.js');
      const { printNatives, printWarnings } = await import('./build.js');
      const result = await deployFunction(client, path.resolve(app.io.cwd, target), {
        overrides,
        wait: flags.wait,
        timeoutMs,
        progress,
        signal: app.io.signal,
        image: flags,
        remoteBuild: flags.remoteBuild === true,
        cacheDir: imageCacheDir(app.config(command).home),
        onBuildLog: (line) => {
          if (!flags.json) app.note(`  ${line}`);
        },
      });
      printWarnings(app, result.warnings);
      printNatives(app, result.natives);
      if (flags.json) {
        const { status, ...rest } = result;
        return app.json({ ...rest, ...(status ? { replicas: status.replicas, availableReplicas: status.availableReplicas } : {}) });
      }
      if (progress.interactive) app.note(`deployed ${result.name} in ${formatElapsed(performance.now() - started)}`);
      app.out(result.url);
    });
}
