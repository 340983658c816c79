// `fn install` and `fn platform-image`'s command lines; their work (install.ts: the Kubernetes client,
// the builder) is loaded only when they run.

import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { KubefnError } from '@kubefn/platform/core';
import type { App } from './app.js';
import { collect } from './args.js';
import { resolveConfig } from './config.js';
import { hostBaseName, imageCacheDir } from './image-options.js';
import type { InstallOptions } from './install.js';

/** deploy/ of this kubefn. */
export const defaultDeployDir = fileURLToPath(new URL('../../deploy/', import.meta.url));

/** The options as commander hands them over: absent flags have no key. */
interface InstallFlags extends Omit<InstallOptions, 'dryRun' | 'timeoutMs' | 'home' | 'pool'> {
  pool?: string;
  dryRun?: boolean;
  timeout: string;
  json?: boolean;
}

export function registerInstall(program: Command, app: App): void {
  program
    .command('install')
    .description('install the kubefn platform on a Kubernetes cluster (the current kubectl context) from deploy/')
    .option('--from <dir>', 'kustomization to install: deploy/, or an overlay of it such as deploy/nats-ephemeral', defaultDeployDir)
    .option('--kubeconfig <file>', 'kubeconfig (default: KUBECONFIG, ~/.kube/config or in-cluster)')
    .option('--image <ref>', 'platform image to run (default: build it and push it to --registry)')
    .option('--registry <host[:port][/path]>', 'registry for function images (and the platform image when --image is not given); nodes pull from it')
    .option('--base <image>', `base image of functions built in the cluster; "${hostBaseName}" pushes this machine's node to --registry`)
    .option('--platform-base <image>', `base of the platform image (default "${hostBaseName}")`)
    .option('--nats-image <ref>', 'NATS server image (default docker.io/library/nats:2.10-alpine)')
    .option('--pool <n>', 'warm pool pods that start functions from zero without a pod start (default 2; 0 turns the pool off)')
    .option('--pool-image <ref>', 'warm pool image (default: build it on --base and push it to --registry)')
    .option('--insecure-registry <host:port>', 'talk plain HTTP to this registry (loopback ones always are; repeatable)', collect)
    .option('--dry-run', 'send every object to the API server as a dry run (server-side validation, nothing stored)')
    .option('--timeout <seconds>', 'how long to wait for the components to be ready', '300')
    .option('--json', 'print the result as JSON')
    .addHelpText(
      'after',
      `
Renders deploy/ (the same kustomization \`kubectl apply -k deploy/\` reads), creates the
kubefn-token (users) and kubefn-component-token (components) Secrets when missing, builds
the warm pool's image on the function base (--base) and the key pair that signs its claims,
server-side applies everything and waits until the gateway, autoscaler, builder, NATS and the
warm pool are ready.

Examples:
  $ fn install --registry registry.example.com/kubefn
  $ fn install --image registry.example.com/kubefn/platform@sha256:... --registry registry.example.com/kubefn
  $ fn install --registry 127.0.0.1:5000 --dry-run
  $ fn install --from deploy/nats-ephemeral --registry ...   # NATS without a volume claim`,
    )
    .action(async (flags: InstallFlags) => {
      const timeout = Number(flags.timeout);
      if (!Number.isFinite(timeout) || timeout <= 0) throw new KubefnError('BAD_REQUEST', `--timeout "${flags.timeout}" is not a number of seconds`);
      const { home } = resolveConfig({ env: app.io.env, homedir: app.io.homedir });
      const { install } = await import('./install.js');
      const pool = flags.pool === undefined ? undefined : Number(flags.pool);
      if (pool !== undefined && !(Number.isInteger(pool) && pool >= 0 && pool <= 100)) {
        throw new KubefnError('BAD_REQUEST', `--pool "${flags.pool}" is not a pod count from 0 to 100`, { hint: '--pool 0 turns the warm pool off' });
      }
      const { dryRun, timeout: _timeout, json: _json, pool: _pool, ...rest } = flags;
      const result = await install(
        { ...rest, ...(pool === undefined ? {} : { pool }), from: path.resolve(flags.from), dryRun: dryRun === true, timeoutMs: timeout * 1000, home },
        app.progress(flags.json === true),
        (s) => app.note(s),
      );
      if (flags.json) return app.json(result);
      if (flags.dryRun) {
        app.out(`the API server accepted all ${result.objects.length} objects (dry run: nothing was stored)`);
        return;
      }
      app.out(`kubefn is ${result.ready ? 'installed' : 'applied but not ready yet'} in namespace ${result.namespace} (platform image ${result.image})`);
      app.out(`  gateway   kubectl -n ${result.namespace} port-forward svc/kubefn-gateway 8080`);
      app.out(`  token     kubectl -n ${result.namespace} get secret kubefn-token -o jsonpath='{.data.token}' | base64 -d`);
      app.out(`  deploy    KUBEFN_TOKEN=<token> fn deploy --gateway http://127.0.0.1:8080`);
      if (!result.ready) app.exitCode = 1;
    });

  program
    .command('platform-image')
    .description("build kubefn's own image (every component) and push it, for deploy/'s kustomization")
    .requiredOption('--registry <host[:port][/path]>', 'push it here, as <registry>/kubefn/platform')
    .option('--base <image>', `base image with node on PATH (default "${hostBaseName}": this machine's node)`)
    .option('--insecure-registry <host:port>', 'talk plain HTTP to this registry (repeatable)', collect)
    .action(async (flags: { registry: string; base?: string; insecureRegistry?: string[] }) => {
      const { home } = resolveConfig({ env: app.io.env, homedir: app.io.homedir });
      const { buildAndPushPlatformImage, platformImageName } = await import('./install.js');
      const { registryClient } = await import('./image.js');
      const ref = await buildAndPushPlatformImage({
        registry: flags.registry,
        base: flags.base ?? hostBaseName,
        client: registryClient({ insecureRegistry: flags.insecureRegistry ?? [] }),
        cacheDir: imageCacheDir(home),
        progress: app.progress(false),
        version: app.version,
      });
      app.out(ref);
      app.note(`use it: cd deploy && kustomize edit set image ${platformImageName}=${ref}`);
    });
}
