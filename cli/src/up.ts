// `fn up`: runs the embedded platform in the foreground until Ctrl-C.

import { KubefnError } from '@kubefn/platform/core';
import type { WarmPoolStats } from '@kubefn/platform';
import { createLogger, startEmbedded, type EmbeddedOptions, type IsolationStatus, type NatsStatus } from '@kubefn/server';

export interface UpOptions extends Pick<EmbeddedOptions, 'driver' | 'podman' | 'registry' | 'base' | 'insecureRegistries' | 'autoscalerConfig' | 'autoscalerConfigFile' | 'nats' | 'localNats' | 'maxBodyBytes' | 'pipelining' | 'isolation' | 'pool' | 'workers'> {
  port: number;
  home: string;
  host: string;
  token?: string;
  /** Print one JSON object per event instead of human lines. */
  json?: boolean;
  /** With json: a line per gateway request (default true). */
  requestLog?: boolean;
  /** Function directories to deploy once the platform is up. */
  deploy?: string[];
  /** Deploys a function directory against the running gateway (the `fn deploy` path). */
  deployer?: (dir: string, gateway: string, token: string) => Promise<void>;
}

/** Runs until SIGINT/SIGTERM; resolves with the exit code. */
export async function runUp(options: UpOptions): Promise<number> {
  const log = createLogger({ json: options.json ?? false });
  const { deploy: _deploy, deployer: _deployer, json: _json, requestLog: _requestLog, ...embedded } = options;
  const platform = await startEmbedded({ ...embedded, logger: log, requestLog: (options.json ?? false) && options.requestLog !== false });
  const functions = await platform.driver.list();
  const nats = platform.nats();
  if (options.json) {
    const natsUrl = nats.kind === 'external' || nats.kind === 'local' ? nats.url : undefined;
    const workers = platform.workers ? { workers: platform.workers.count, workerPids: platform.workers.pids() } : {};
    log.info('listening', { url: platform.url, home: options.home, functions: functions.map((f) => f.spec.name), ...(natsUrl ? { nats: natsUrl } : {}), isolation: platform.isolation.kind, ...workers });
  } else {
    process.stderr.write(
      [
        `kubefn is up: gateway ${platform.url} (${platform.driver.kind} driver)`,
        `  state     ${options.home}` + (functions.length ? ` (${functions.length} function(s) restored)` : ''),
        `  token     ${options.home}/token (the CLI reads it from there)`,
        `  nats      ${natsLine(nats)}`,
        `  isolation ${isolationLine(platform.isolation)}`,
        `  pool      ${poolLine(platform.driver.kind, platform.driver.poolStats?.())}`,
        ...(platform.workers ? [`  workers   ${platform.workers.count} gateway processes serve the port (pids ${platform.workers.pids().join(', ')}); this one (pid ${process.pid}) runs the replicas`] : []),
        `  deploy    fn deploy examples/hello`,
        `  invoke    curl ${platform.url}/function/hello`,
        'Ctrl-C stops the platform; deployed functions come back on the next `fn up`.',
        '',
      ].join('\n'),
    );
  }

  if (platform.isolation.kind === 'none') log.warn(isolationWarning);

  const stopped = new Promise<number>((resolve) => {
    let signals = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      signals++;
      if (signals > 1) {
        // At once: replicas leave with us (they exit when their IPC channel closes), and the
        // logger's lines are flushed on exit.
        log.warn('second signal: exiting now, without draining');
        process.exit(130);
      }
      log.info('stopping: draining replicas', { signal });
      platform.close().then(
        () => resolve(0),
        (err: unknown) => {
          log.error('stop failed', { err });
          resolve(1);
        },
      );
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });

  for (const dir of options.deploy ?? []) {
    if (!options.deployer) throw new KubefnError('NOT_SUPPORTED', '--deploy needs the CLI deployer');
    try {
      await options.deployer(dir, platform.url, platform.token);
    } catch (err) {
      const e = err as { message?: string; hint?: string };
      log.warn(`deploy of ${dir} failed: ${e.message ?? String(err)}`, { dir, ...(e.hint ? { hint: e.hint } : {}) });
    }
  }
  if (options.deploy?.length) log.info('ready', { url: platform.url });
  return stopped;
}

/** Where NATS is, for the banner. */
function natsLine(nats: NatsStatus): string {
  switch (nats.kind) {
    case 'external':
      return nats.url;
    case 'local':
      return `${nats.url} (nats-server pid ${nats.pid}, store ${nats.store})`;
    case 'on-demand':
      return 'a local nats-server starts when first needed';
    case 'off':
      return 'off (--no-nats): nats triggers are refused';
    case 'failed': {
      const err = nats.error as { message?: string; hint?: string };
      return `off: ${err.message ?? String(nats.error)}${err.hint ? `\n            hint: ${err.hint}` : ''}`;
    }
  }
}

const isolationWarning =
  'the process driver does not isolate functions from each other: every function runs as this user and can read its files, the platform token and other functions\' environments; use --driver podman (or run fn up as root) for code you do not trust';

/** The warm pool, for the banner. */
function poolLine(kind: string, pool: WarmPoolStats | undefined): string {
  const what = kind === 'podman' ? 'container' : 'process';
  if (!pool) return `off (--pool 0): every replica starts as a new ${what}`;
  return `${pool.size} warm ${kind === 'podman' ? 'container' : 'runtime'}(s) for functions scaling from zero (--pool, --pool-memory)`;
}

function isolationLine(isolation: IsolationStatus): string {
  switch (isolation.kind) {
    case 'users':
      return `a user of its own per function, private directories under ${isolation.runDir}`;
    case 'containers':
      return 'a container per replica';
    case 'none':
      return isolation.reason === 'not-root'
        ? 'none: functions run as this user (--driver podman for code you do not trust)'
        : 'none (--no-isolation): functions run as root';
  }
}
