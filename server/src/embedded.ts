// The embedded platform: gateway + autoscaler + a local driver (processes or podman containers)
// and the build service, in one process, state on disk.

import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import type { FastifyBaseLogger } from 'fastify';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import {
  Autoscaler,
  clusterScaleDefaults,
  LiveAutoscalerConfig,
  watchAutoscalerConfigFile,
  type AutoscalerConfig,
  type AutoscalerOptions,
  type StatsSource,
} from '@kubefn/autoscaler';
import { buildServicePlugin, hostBaseName, loadCredentials, RegistryClient, warmRuntimeEntry } from '@kubefn/builder';
import { createGateway } from '@kubefn/gateway';
import {
  AppStore,
  BundleStore,
  canIsolate,
  collectStores,
  defaultRunDir,
  FileSecretStore,
  KubefnError,
  Podman,
  PodmanDriver,
  ProcessDriver,
  defaultWarmPoolSize,
  ProcessIsolation,
  referencedDigests,
  type Driver,
  type PodmanOptions,
} from '@kubefn/platform';
import type { Logger } from './logger.js';
import { lockHome } from './home-lock.js';
import { loadOrCreateToken, strongToken } from './token.js';
import { startLocalNats, type LocalNats } from './nats-server.js';
import { appPublisher, podmanLoadPublisher, registryPublisher, warmPoolImage, type Publisher } from './publish.js';
import { internalToken, notifyingDriver, startWorkerFront, workerStatsSource, type WorkerFront } from './embedded-workers.js';

export type DriverKind = 'process' | 'podman';

export interface EmbeddedOptions {
  /** State directory: functions, bundles, token, build cache. */
  home: string;
  port: number;
  host: string;
  /** Use this token instead of the one kept in `<home>/token`. */
  token?: string;
  /** Where the platform logs; default: nowhere. */
  logger?: Logger;
  /** One log line per gateway request (`fn up --json`). */
  requestLog?: boolean;
  /** What runs replicas (default "process"). */
  driver?: DriverKind;
  podman?: PodmanOptions & { network?: 'bridge' | 'host' };
  /** Registry the build service pushes images to (podman driver); without one, images are loaded into podman directly. */
  registry?: string;
  insecureRegistries?: string[];
  /** Base image for functions built here (default "host": this machine's node). */
  base?: string;
  /** Cluster defaults for the scale knobs a function's spec leaves out (default: Knative's). */
  autoscalerConfig?: AutoscalerConfig;
  /**
   * The file `autoscalerConfig` was read from: watched while the platform runs, and each valid
   * new version applied to the autoscaler and the gateway's scale defaults without a restart (a
   * bad one is refused with a warning and the last good one stays).
   */
  autoscalerConfigFile?: string;
  /** NATS server URL(s) for nats triggers, output subjects and `fn publish`. */
  nats?: string;
  /** Largest request body or event message sent to a function (default 32 MiB). */
  maxBodyBytes?: number;
  /** The gateway's pipelining to replicas (GatewayOptions.pipelining; 1 turns it off). */
  pipelining?: number;
  /**
   * Without `nats`: start a nats-server from PATH (JetStream on, store in `<home>/nats`) the first
   * time the gateway asks for NATS, and stop it on close (`fn up` does unless --no-nats). Default
   * false: no NATS, nats triggers are refused.
   */
  localNats?: boolean;
  /**
   * Process driver: run each function as a user of its own, in a private directory under
   * `runDir` (default /var/lib/kubefn/run/<hash of home>). Needs root; default: on when root.
   */
  isolation?: boolean;
  runDir?: string;
  /**
   * Process driver: warm runtimes kept ready for functions scaling from zero, `size` of them
   * (default 2; 0 turns the pool off) within `memoryBytes` of resident memory (default 256 MiB).
   */
  pool?: { size?: number; memoryBytes?: number };
  /**
   * Bundles and apps no saved function references are removed at start and then every
   * `intervalMs` (default 10 min), unless written or used within `graceMs` (default 1 h): an
   * upload whose deploy has not arrived yet is kept.
   */
  storeGc?: { graceMs?: number; intervalMs?: number };
  /**
   * Gateway processes serving `port` (default 1: this process serves it). With more, this process
   * keeps the driver, autoscaler, function store and build service, and node:cluster workers
   * serve the port (worker-pool.ts).
   */
  workers?: number;
}

/** How the process driver keeps functions apart, for `fn up` to print. */
export type IsolationStatus =
  | { kind: 'users'; runDir: string }
  | { kind: 'none'; reason: 'not-root' | 'turned-off' }
  | { kind: 'containers' };

/** Default age below which an unreferenced bundle or app is kept, in ms. */
export const defaultStoreGraceMs = 60 * 60 * 1000;
/** Default time between two collections of unreferenced bundles and apps, in ms. */
export const defaultStoreGcIntervalMs = 10 * 60 * 1000;

/** Where the platform's NATS is, for `fn up` to print. */
export type NatsStatus =
  | { kind: 'external'; url: string }
  | { kind: 'local'; url: string; pid: number; store: string }
  /** A local server starts when the gateway first needs NATS. */
  | { kind: 'on-demand' }
  | { kind: 'failed'; error: unknown }
  | { kind: 'off' };

export interface EmbeddedPlatform {
  url: string;
  token: string;
  driver: Driver & { restore(): Promise<string[]> };
  /** The running autoscaler (a new one after a restart by the test hook). */
  readonly autoscaler: Autoscaler;
  /** Where NATS is now (a local server may start after startEmbedded resolved). */
  nats(): NatsStatus;
  isolation: IsolationStatus;
  /** With `workers` above 1: the gateway workers' pids by slot (undefined while one restarts). */
  workers?: { count: number; pids(): (number | undefined)[] };
  close(): Promise<void>;
}

export async function startEmbedded(options: EmbeddedOptions): Promise<EmbeddedPlatform> {
  await mkdir(options.home, { recursive: true, mode: 0o700 });
  const lock = await lockHome(options.home);
  let platform: EmbeddedPlatform;
  try {
    platform = await startOnHome(options);
  } catch (err) {
    await lock.release();
    throw err;
  }
  // Wrapped in place, not copied: `autoscaler` is a getter.
  const close = platform.close;
  platform.close = async () => {
    try {
      await close();
    } finally {
      await lock.release();
    }
  };
  return platform;
}

/** startEmbedded once the state directory is this process's alone. */
async function startOnHome(options: EmbeddedOptions): Promise<EmbeddedPlatform> {
  if (options.workers !== undefined && (!Number.isSafeInteger(options.workers) || options.workers < 1)) {
    throw new KubefnError('BAD_REQUEST', `workers must be a whole number of at least 1, not ${options.workers}`);
  }
  const token = options.token !== undefined ? strongToken(options.token, '--token') : await loadOrCreateToken(options.home);
  const cacheDir = path.join(options.home, 'cache');
  const client = new RegistryClient({ insecureRegistries: options.insecureRegistries ?? [], credentials: (r) => loadCredentials(r) });
  const base = options.base ?? hostBaseName;
  let driver: ProcessDriver | PodmanDriver;
  let publish: Publisher;
  let bundles: BundleStore | undefined;
  let apps: AppStore | undefined;
  let isolationStatus: IsolationStatus = { kind: 'containers' };
  // One store for either driver, so secrets outlive a switch of --driver: <home>/secrets, its key <home>/secrets.key.
  const secrets = new FileSecretStore(options.home);
  if ((options.driver ?? 'process') === 'podman') {
    const podman = options.podman ?? {};
    const poolSize = options.pool?.size ?? defaultWarmPoolSize;
    // The pool's image: the functions' base with the warm runtime, built and loaded once per base
    // and runtime. Only images on that base can be taken from the pool.
    const poolImage = poolSize > 0 ? await warmPoolImage({ client, base, cacheDir, podman: new Podman(podman) }) : undefined;
    const podmanDriver = new PodmanDriver({
      ...podman,
      stateDir: path.join(options.home, 'podman'),
      secrets,
      // One owner per state directory: a restart removes what a crashed run left.
      owner: createHash('sha256').update(path.resolve(options.home)).digest('hex').slice(0, 12),
      insecureRegistries: options.insecureRegistries ?? [],
      ...(options.maxBodyBytes !== undefined ? { maxBodyBytes: options.maxBodyBytes } : {}),
      ...(poolImage ? { pool: { size: poolSize, memoryBytes: options.pool?.memoryBytes, image: poolImage } } : {}),
      onPoolLog: (message) => options.logger?.warn(message),
    });
    await podmanDriver.checkPodman();
    driver = podmanDriver;
    publish = options.registry
      ? registryPublisher({ client, base, cacheDir, registry: options.registry })
      : podmanLoadPublisher({ client, base, cacheDir, podman: new Podman(podman) });
  } else {
    bundles = await BundleStore.open(path.join(options.home, 'bundles'));
    apps = await AppStore.open(path.join(options.home, 'apps'));
    // A blob that failed its digest check, or an unpacked app that changed, says so in the platform log.
    bundles.onWarning = apps.onWarning = (message) => options.logger?.warn(message);
    const isolate = options.isolation ?? canIsolate();
    const isolation = isolate
      ? await ProcessIsolation.open({
          runDir: options.runDir ?? defaultRunDir(options.home),
          usersFile: path.join(options.home, 'function-users.json'),
          nodePath: process.execPath,
        })
      : undefined;
    isolationStatus = isolation ? { kind: 'users', runDir: isolation.runDir } : { kind: 'none', reason: canIsolate() ? 'turned-off' : 'not-root' };
    driver = new ProcessDriver({
      bundles,
      apps,
      stateDir: options.home,
      secrets,
      ...(isolation ? { isolation } : {}),
      pool: { size: options.pool?.size ?? defaultWarmPoolSize, memoryBytes: options.pool?.memoryBytes, entry: warmRuntimeEntry },
      ...(options.maxBodyBytes !== undefined ? { maxBodyBytes: options.maxBodyBytes } : {}),
      onPoolLog: (message) => options.logger?.warn(message),
    });
    publish = appPublisher(apps);
  }
  // A NATS that cannot be reached ends the start: the driver (and its warm pool) goes with it.
  const nats = options.nats ? await connectNats(options.nats, options.logger).catch(async (err: unknown) => {
    await driver.close();
    throw err;
  }) : undefined;
  const local = !nats && options.localNats ? localNatsConnector(options.home, options.logger) : undefined;
  const builds = buildServicePlugin({
    scratchDir: path.join(options.home, 'builds'),
    build: async ({ dir, handler, name, log }) => ({ ...(await publish({ dir, handler, name, log })) }),
  });
  // Scratch directories of builds a killed `fn up` left behind: the state lock says none is running.
  await rm(path.join(options.home, 'builds'), { recursive: true, force: true });
  await mkdir(path.join(options.home, 'builds'), { recursive: true });
  // With workers, they serve the port and this gateway serves them: deploys through it reach
  // every worker's catalog at once.
  const workers = options.workers ?? 1;
  const workerToken = workers > 1 ? internalToken() : undefined;
  let front: WorkerFront | undefined;
  const gateway = createGateway({
    driver: workers > 1 ? notifyingDriver(driver, (name) => front?.pool.changed(name)) : driver,
    ...(bundles ? { bundles } : {}),
    ...(apps ? { apps } : {}),
    token,
    ...(options.token ? {} : { tokenHint: `\`fn up\` wrote it to ${path.join(options.home, 'token')}` }),
    systemPlugins: [builds],
    scaleDefaults: scaleDefaultsOf(options.autoscalerConfig, options),
    ...(nats ? { nats } : local ? { nats: local.connect } : {}),
    ...(options.maxBodyBytes !== undefined ? { maxBodyBytes: options.maxBodyBytes } : {}),
    ...(options.pipelining !== undefined ? { pipelining: options.pipelining } : {}),
    // Without request lines, fastify's own info lines ("Server listening") are noise next to fn up's.
    ...(options.logger
      ? {
          logger: options.logger.pino.child({ component: 'gateway' }, { level: options.requestLog ? 'info' : 'warn' }) as FastifyBaseLogger,
          requestLog: options.requestLog ?? false,
        }
      : {}),
    info: { builds: true, needsImage: driver.kind !== 'process', ...(options.registry ? { registry: options.registry } : {}), base },
  });
  // The config in effect: the file's at start, then each valid new version of it.
  const liveConfig = new LiveAutoscalerConfig({
    initial: options.autoscalerConfig,
    apply: (config) => {
      autoscaler.setConfig(config);
      gateway.setScaleDefaults(scaleDefaultsOf(config, options));
    },
    ...(options.logger ? { logger: options.logger } : {}),
  });
  const autoscalerOptions = (): AutoscalerOptions => ({
    target: driver,
    // A reader of its own: reading takes nothing from any other reader of the gateway's stats.
    sources: [
      withStatsBlackout(gateway.stats.reader(), process.env.KUBEFN_TEST_STATS_BLACKOUT),
      ...(workerToken ? [workerStatsSource(() => front?.pool, workerToken, options.logger)] : []),
    ],
    ...(options.logger ? { logger: options.logger } : {}),
    ...(liveConfig.current ? { config: liveConfig.current } : {}),
    onActivation: (name, stall) => gateway.setActivation(name, stall),
  });
  let autoscaler = new Autoscaler(autoscalerOptions());
  // Read at each call: a poke goes to the autoscaler running now.
  // The gateway keeps one poke in flight per function (gateway/src/poker.ts): the promise is it.
  gateway.onNoReplica = (name, body) =>
    autoscaler.poke(name, body).catch((err: unknown) => options.logger?.warn('scale from zero failed', { function: name, err }));
  const configWatch = options.autoscalerConfigFile ? watchAutoscalerConfigFile(options.autoscalerConfigFile, liveConfig) : undefined;
  const restartHook = autoscalerRestartHook(process.env.KUBEFN_TEST_AUTOSCALER_RESTART, async () => {
    // As a new autoscaler process would start: same options, no history. The new one takes the
    // pokes before the old one has stopped.
    const old = autoscaler;
    autoscaler = new Autoscaler(autoscalerOptions());
    await old.stop();
    autoscaler.start();
    options.logger?.info('autoscaler restarted (test hook)');
  }, (err) => options.logger?.warn('autoscaler restart (test hook) failed', { err }));
  const gc = storeCollector(options, driver, { bundles, apps });
  const abandon = async (): Promise<void> => {
    configWatch?.close();
    await restartHook?.stop();
    await gc.stop();
    await gateway.close().catch(() => {});
    await driver.close();
    await nats?.close();
    await local?.close();
  };
  // Bring back what was deployed before, then listen: a platform that cannot read its own state
  // must not answer /healthz as if it were fine.
  try {
    await driver.restore();
  } catch (err) {
    await abandon();
    throw new KubefnError('START_FAILED', `cannot restore the functions saved in ${options.home}: ${(err as Error).message}`, {
      hint: `fix or move the state directory (${path.join(options.home, 'functions')} must be a directory), or start with another --home`,
      cause: err,
    });
  }
  await gc.run();
  let url: string;
  try {
    if (workerToken) {
      front = await startWorkerFront({
        count: workers,
        port: options.port,
        host: options.host,
        gateway,
        driver,
        poke: (name, body) => autoscaler.poke(name, body),
        internalToken: workerToken,
        ...(options.maxBodyBytes !== undefined ? { maxBodyBytes: options.maxBodyBytes } : {}),
        ...(options.pipelining !== undefined ? { pipelining: options.pipelining } : {}),
        json: options.logger?.json ?? false,
        requestLog: options.requestLog ?? false,
        ...(options.logger ? { logger: options.logger } : {}),
      });
      url = front.url;
    } else {
      url = await gateway.app.listen({ port: options.port, host: options.host });
    }
  } catch (err) {
    await abandon();
    if ((err as { code?: string }).code === 'EADDRINUSE') {
      throw new KubefnError('START_FAILED', `port ${options.port} on ${options.host} is in use`, {
        hint: 'is another `fn up` running? stop it, or pass --port',
        cause: err,
      });
    }
    throw err;
  }
  autoscaler.start();
  gc.start();
  restartHook?.start();
  let closing: Promise<void> | undefined;
  return {
    url,
    token,
    driver,
    get autoscaler() {
      return autoscaler;
    },
    nats: () => (nats ? { kind: 'external', url: options.nats! } : (local?.status() ?? { kind: 'off' })),
    isolation: isolationStatus,
    ...(front ? { workers: { count: workers, pids: () => front!.pool.pids() } } : {}),
    close: () =>
      (closing ??= (async () => {
        // The workers first: they call replicas and pass calls on to this gateway.
        await front?.close();
        configWatch?.close();
        await restartHook?.stop();
        await gc.stop();
        await autoscaler.stop();
        await gateway.close();
        await nats?.drain().catch(() => {});
        await local?.close();
        await driver.close();
      })()),
  };
}

/**
 * Removes the bundles and apps no function references (see collectStores): once at start, after
 * the functions are restored, then every interval, never two runs at once. A failed run is
 * logged and tried again at the next interval.
 */
function storeCollector(options: EmbeddedOptions, driver: Driver, stores: { bundles: BundleStore | undefined; apps: AppStore | undefined }) {
  const graceMs = options.storeGc?.graceMs ?? defaultStoreGraceMs;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  const once = async (): Promise<void> => {
    if (!stores.bundles && !stores.apps) return;
    try {
      const referenced = await referencedDigests(options.home, (await driver.list()).map((s) => s.spec.image));
      const removed = await collectStores(stores, referenced, { graceMs });
      if (removed.bundles.length || removed.apps.length) options.logger?.info('removed bundles and apps no function uses', { ...removed });
    } catch (err) {
      options.logger?.warn('cannot collect unused bundles and apps', { err });
    }
  };
  const run = (): Promise<void> => (running ??= once().finally(() => (running = undefined)));
  return {
    run,
    start: () => {
      timer ??= setInterval(() => void run(), options.storeGc?.intervalMs ?? defaultStoreGcIntervalMs);
      timer.unref();
    },
    /** Stops the timer and waits for a run in progress: after close the home may be another process's. */
    stop: async (): Promise<void> => {
      clearInterval(timer);
      await running;
    },
  };
}

/**
 * The gateway's lazy NATS connector when no --nats is given: the first call starts nats-server
 * (startLocalNats), later calls share it. A failed start is not remembered, so a later call (after
 * `apt-get install nats-server`) tries again; after close() every call is refused.
 */
function localNatsConnector(home: string, log: Logger | undefined) {
  let starting: Promise<LocalNats> | undefined;
  let status: NatsStatus = { kind: 'on-demand' };
  let closed = false;
  return {
    connect: (): Promise<NatsConnection> => {
      if (closed) return Promise.reject(new KubefnError('SHUTTING_DOWN', 'the platform is stopping'));
      starting ??= startLocalNats({ home, ...(log ? { log } : {}) }).then(
        (server) => {
          status = { kind: 'local', url: server.url, pid: server.pid, store: server.dir };
          watchStatus(server.connection, log);
          return server;
        },
        (err: unknown) => {
          starting = undefined;
          status = { kind: 'failed', error: err };
          throw err;
        },
      );
      return starting.then((server) => server.connection);
    },
    status: (): NatsStatus => status,
    close: async (): Promise<void> => {
      closed = true;
      const server = await starting?.catch(() => undefined);
      await server?.close();
    },
  };
}

/** Connects to NATS, saying which server could not be reached and how to get one. */
async function connectNats(servers: string, log: Logger | undefined): Promise<NatsConnection> {
  try {
    const nc = await connect({ servers: servers.split(',').map((s) => s.trim()), name: 'kubefn-gateway', maxReconnectAttempts: -1 });
    log?.info('connected to NATS', { server: nc.getServer() });
    watchStatus(nc, log);
    return nc;
  } catch (err) {
    throw new KubefnError('START_FAILED', `cannot connect to NATS at ${servers}: ${err instanceof Error ? err.message : String(err)}`, {
      cause: err,
      hint: 'start it, or leave out --nats: `fn up` then starts its own nats-server (apt-get install nats-server)',
    });
  }
}

/** Says when the connection to NATS drops and comes back. */
function watchStatus(nc: NatsConnection, log: Logger | undefined): void {
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect' || s.type === 'reconnect') log?.warn(`NATS ${s.type}`, { server: s.server });
    }
  })().catch(() => {});
}


/**
 * For the autoscaler's blackout test only: while the file `blackoutFile` names exists, the
 * gateway's stats do not answer, as a scrape of a gateway that fails. Without it, `stats` itself.
 */
function withStatsBlackout(stats: StatsSource, blackoutFile: string | undefined): StatsSource {
  if (!blackoutFile) return stats;
  return { collect: (now) => (existsSync(blackoutFile) ? { samples: [], answered: 0, expected: 1 } : stats.collect(now)) };
}

/** What the gateway reports for the scale knobs a spec leaves out: `config`'s, from the file when one was given. */
function scaleDefaultsOf(config: AutoscalerConfig | undefined, options: EmbeddedOptions) {
  return { values: clusterScaleDefaults(config), from: config || options.autoscalerConfigFile ? ('config' as const) : ('default' as const) };
}

/** How often the restart hook's file is read, ms. */
const restartHookPollMs = 250;

/**
 * For the autoscaler's restart test only: when the file `hookFile` names appears or its content
 * changes, `restart` runs (one at a time). Without a file name, no hook. A file there at start
 * counts as seen.
 */
function autoscalerRestartHook(hookFile: string | undefined, restart: () => Promise<void>, onError: (err: unknown) => void) {
  if (!hookFile) return undefined;
  const read = () => readFile(hookFile, 'utf8').catch(() => undefined);
  let last: Promise<string | undefined> = read();
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();
  const poll = (): void => {
    running = running.then(async () => {
      const [before, now] = [await last, await read()];
      last = Promise.resolve(now);
      if (now !== undefined && now !== before) await restart();
    }).catch(onError);
  };
  return {
    start: () => {
      timer ??= setInterval(poll, restartHookPollMs);
      timer.unref();
    },
    stop: async (): Promise<void> => {
      clearInterval(timer);
      await running;
    },
  };
}
