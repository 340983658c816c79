// `fn deploy`: build, upload the bundle unless the gateway has it, create or update the function, wait until it is ready.

import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import { isKubefnError, KubefnError, validateName, type FunctionSpec } from '@kubefn/platform';
import type { App } from './app.js';
import { collect, pairs, parseCount, parseDurationArg } from './args.js';
import { buildFunction, printWarnings } from './build.js';
import type { FunctionInfo, GatewayClient } from './client.js';
import { checkArg } from './errors.js';
import type { SpecOverrides } from './fn-yaml.js';
import { formatBytes, formatElapsed, silentProgress, type Progress } from './output.js';

export interface DeployOptions {
  overrides?: SpecOverrides;
  /** Wait until the function is deployed (and has a ready replica when it should). Default true. */
  wait?: boolean;
  /** How long to wait for readiness, in ms. Default 120000. */
  timeoutMs?: number;
  progress?: Progress;
  signal?: AbortSignal;
}

export interface DeployResult {
  name: string;
  image: string;
  digest: string;
  bytes: number;
  /** False when the gateway already had this exact bundle. */
  uploaded: boolean;
  /** True when the function did not exist before. */
  created: boolean;
  url: string;
  /** The function as the gateway last reported it; absent with wait: false. */
  status?: FunctionInfo;
  warnings: string[];
}

/** Runs the whole deploy of the function in `target` (a directory or its fn.yaml). */
export async function deployFunction(client: GatewayClient, target: string, options: DeployOptions = {}): Promise<DeployResult> {
  const progress = options.progress ?? silentProgress;
  const signal = options.signal;
  const { spec, bundle } = await buildFunction(target, { progress, ...(options.overrides ? { overrides: options.overrides } : {}) });

  const size = formatBytes(bundle.bytes);
  const uploaded = await progress.step(
    `uploading bundle (${size})`,
    async () => {
      if (await client.hasBundle(bundle.digest, signal)) return false;
      await client.uploadBundle(bundle.digest, await readFile(bundle.file), signal);
      return true;
    },
    (sent) => (sent ? `uploaded bundle: ${size}` : `bundle unchanged (${bundle.digest.slice(0, 19)})`),
  );

  const deployed: FunctionSpec = { ...spec, image: `bundle:${bundle.digest}` };
  const { created } = await progress.step(
    `deploying ${spec.name}`,
    () => client.deployFunction(deployed, signal),
    (r) => `${r.created ? 'created' : 'updated'} ${spec.name}`,
  );

  const result: DeployResult = {
    name: spec.name,
    image: deployed.image ?? '',
    digest: bundle.digest,
    bytes: bundle.bytes,
    uploaded,
    created,
    url: client.functionUrl(spec.name),
    warnings: bundle.warnings,
  };
  if (options.wait === false) return result;

  const minReady = Math.max(spec.scale.min, spec.scale.initial) > 0 ? 1 : 0;
  result.status = await progress.step(
    minReady > 0 ? `waiting for a ready replica of ${spec.name}` : `waiting for ${spec.name} to be deployed`,
    () => waitForFunction(client, spec.name, { minReady, timeoutMs: options.timeoutMs ?? 120_000, ...(signal ? { signal } : {}) }),
    (s) => `${spec.name} is ready: ${s.availableReplicas}/${s.replicas} replicas`,
  );
  return result;
}

/**
 * Polls GET /system/function/<name> with exponential backoff (100ms doubling to 2s) until it
 * exists and has at least `minReady` available replicas. Throws DEADLINE_EXCEEDED after
 * `timeoutMs`; rejects with an AbortError when `signal` aborts.
 */
export async function waitForFunction(
  client: GatewayClient,
  name: string,
  options: { minReady: number; timeoutMs: number; signal?: AbortSignal; now?: () => number },
): Promise<FunctionInfo> {
  const now = options.now ?? (() => performance.now());
  const deadline = now() + options.timeoutMs;
  let delayMs = 100;
  let last: FunctionInfo | undefined;
  for (;;) {
    // Each poll may take the rest of the wait, but at least 1s, so the last one can still answer.
    const pollMs = Math.ceil(Math.max(1000, deadline - now()));
    const signals = [AbortSignal.timeout(pollMs)];
    if (options.signal) signals.push(options.signal);
    try {
      last = await client.getFunction(name, AbortSignal.any(signals));
      if (last.availableReplicas >= options.minReady) return last;
    } catch (err) {
      if (options.signal?.aborted) throw err;
      const timedOut = (err as { name?: unknown }).name === 'TimeoutError';
      if (!timedOut && !isKubefnError(err, 'NOT_FOUND')) throw err;
    }
    const remaining = deadline - now();
    if (remaining <= 0) {
      const state = last ? `${last.availableReplicas}/${last.replicas} replicas ready` : 'not listed by the gateway yet';
      throw new KubefnError('DEADLINE_EXCEEDED', `function "${name}" is not ready after ${formatElapsed(options.timeoutMs)} (${state})`, {
        hint: `\`fn logs ${name}\` shows why its replicas do not start; wait longer with --timeout, or skip waiting with --no-wait`,
      });
    }
    await sleep(Math.ceil(Math.min(delayMs, remaining)), undefined, options.signal ? { signal: options.signal } : {});
    delayMs = Math.min(delayMs * 2, 2000);
  }
}

interface DeployFlags {
  name?: string;
  env?: string[];
  min?: string;
  max?: string;
  wait: boolean;
  timeout: string;
  json?: boolean;
}

export function registerDeploy(program: Command, app: App): void {
  program
    .command('deploy')
    .description('build the function and deploy it to the gateway (create or update)')
    .argument('[path]', 'function directory (or its fn.yaml)', '.')
    .option('--name <name>', 'deploy under this name instead of the one in fn.yaml')
    .option('-e, --env <KEY=VALUE>', 'set an environment variable (repeatable; wins over fn.yaml)', collect)
    .option('--min <n>', 'minimum replicas (scale.min); 0 allows scale to zero')
    .option('--max <n>', 'maximum replicas (scale.max)')
    .option('--no-wait', 'return once the gateway accepted the function, without waiting for readiness')
    .option('--timeout <duration>', 'how long to wait for a ready replica', '2m')
    .option('--json', 'print the result as JSON')
    .addHelpText(
      'after',
      `
Steps: bundle -> upload the bundle (skipped when the gateway already has this digest)
-> PUT /system/functions (POST when new) -> wait for a ready replica -> print the URL.

Examples:
  $ fn deploy
  $ fn deploy ./functions/hello --env GREETING=hi --env LOG_LEVEL=debug
  $ fn deploy --name hello-staging --min 1 --max 5
  $ fn deploy --no-wait --json`,
    )
    .action(async (target: string, flags: DeployFlags, command: Command) => {
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
      const result = await deployFunction(client, path.resolve(app.io.cwd, target), {
        overrides,
        wait: flags.wait,
        timeoutMs,
        progress,
        signal: app.io.signal,
      });
      printWarnings(app, result.warnings);
      if (flags.json) {
        const { status, ...rest } = result;
        return app.json({ ...rest, ...(status ? { replicas: status.replicas, availableReplicas: status.availableReplicas } : {}) });
      }
      if (progress.interactive) app.note(`deployed ${result.name} in ${formatElapsed(performance.now() - started)}`);
      app.out(result.url);
    });
}
