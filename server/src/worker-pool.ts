// The primary's side of `fn up --workers N`: N gateway processes (node:cluster workers, which
// share the one listening port: the primary accepts and deals connections round-robin) in front
// of this process, which keeps the one driver, autoscaler, function store and build service.
//
// It is the cluster's design on one machine, through the same seams: a worker is a gateway pod
// whose driver is the primary's (primary-driver.ts: statuses over loopback HTTP, ready replicas
// pushed over IPC from here), whose management API is the primary's gateway (forward.ts, as a
// cluster gateway's /system/builds goes to the builder), which pokes the autoscaler over HTTP
// (pokeAutoscaler, as a cluster gateway does) and whose stats the autoscaler scrapes
// (HttpStatsSource, over a loopback port of the worker's own). containerConcurrency is split
// across the workers and the primary's gateway (which calls functions for event triggers) as
// across gateway pods: worker i is gateway i of N + 1, the primary's is gateway N.
//
// A worker that exits is started again in its slot, after a back-off when it keeps failing;
// close() stops every worker (they drain their calls) before the primary stops. A worker whose
// primary dies exits with it: node:cluster ends a worker whose IPC channel closes.

import cluster, { type Worker } from 'node:cluster';
import { createServer, type AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { StatsPeer } from '@kubefn/autoscaler';
import { errorFromBody, KubefnError, type Driver, type Endpoint } from '@kubefn/platform';
import type { Logger } from './logger.js';
import { isMessage, type ToPrimary, type ToWorker, type WorkerConfig } from './worker-protocol.js';

/** The file node:cluster runs in each worker. */
export const workerEntry = fileURLToPath(new URL('./worker-main.js', import.meta.url));

/** Functions one worker may watch, or report calls of, at most: far above any deployment, so more is a bug, not load. */
const maxFunctionsPerWorker = 10_000;
/** A worker that ran at least this long before it exited restarts at once, ms. */
const healthyRunMs = 10_000;
/** Longest back-off before a failing worker's restart, ms. */
const maxBackoffMs = 30_000;

export interface WorkerPoolOptions {
  count: number;
  /** What every worker is told, but its index. */
  config: Omit<WorkerConfig, 'index'>;
  /** The primary's driver: workers watch its endpoint sets. */
  driver: Pick<Driver, 'endpoints'>;
  logger?: Logger;
  /** A worker served `count` more calls of `name` (what `fn list` counts). */
  onInvocations?: (name: string, count: number) => void;
  /** Longest a worker may take to listen, ms (default 30 000). */
  startTimeoutMs?: number;
  /** Longest a worker may take to drain on stop before it is killed, ms (default 30 000). */
  stopTimeoutMs?: number;
}

interface Slot {
  index: number;
  worker: Worker | undefined;
  /** Set once the worker listens. */
  ready: { url: string; statsUrl: string } | undefined;
  /** Endpoint sets the worker watches: the unsubscribe of each. */
  watches: Map<string, () => void>;
  /** The worker's invocation counts as last reported. */
  invocations: Map<string, number>;
  startedAt: number;
  /** Exits in a row, each after less than healthyRunMs. */
  failures: number;
  restart: NodeJS.Timeout | undefined;
  /** Settles the start of this slot's worker: ready, or why not. */
  started: { resolve: () => void; reject: (err: unknown) => void } | undefined;
}

export class WorkerPool {
  readonly #o: WorkerPoolOptions;
  readonly #slots: Slot[];
  #config: Omit<WorkerConfig, 'index'>;
  #closing: Promise<void> | undefined;

  private constructor(options: WorkerPoolOptions) {
    this.#o = options;
    this.#config = { ...options.config };
    this.#slots = Array.from({ length: options.count }, (_, index) => ({
      index,
      worker: undefined,
      ready: undefined,
      watches: new Map(),
      invocations: new Map(),
      startedAt: 0,
      failures: 0,
      restart: undefined,
      started: undefined,
    }));
  }

  /**
   * Starts the workers and resolves once all listen. Port 0 is made a free port first: node:cluster
   * shares one listening socket among workers that listen alike, and one that listened on port 0
   * would get a new port were it restarted after all the others had died.
   */
  static async start(options: WorkerPoolOptions): Promise<WorkerPool> {
    if (!cluster.isPrimary) throw new KubefnError('START_FAILED', 'gateway workers are started by the primary process only');
    const pool = new WorkerPool(options);
    try {
      if (pool.#config.port === 0) pool.#config.port = await freePort(pool.#config.host);
      await Promise.all(pool.#slots.map((slot) => pool.#start(slot)));
    } catch (err) {
      await pool.close();
      throw err;
    }
    return pool;
  }

  /** Where the workers listen (the shared port). */
  get url(): string {
    const ready = this.#slots.find((s) => s.ready)?.ready;
    return ready?.url ?? `http://${this.#config.host}:${this.#config.port}`;
  }

  get count(): number {
    return this.#slots.length;
  }

  /** The pids of the workers running now, by slot (undefined while a slot restarts). */
  pids(): (number | undefined)[] {
    return this.#slots.map((s) => s.worker?.process.pid);
  }

  /** The listening workers' stats ports, for the autoscaler's HttpStatsSource. */
  statsPeers(): StatsPeer[] {
    // Stopping workers are no missing data: the autoscaler stops with them.
    if (this.#closing) return [];
    return this.#slots.flatMap((s) => (s.ready && s.worker ? [{ id: `worker-${s.index}-${s.worker.process.pid}`, url: s.ready.statsUrl }] : []));
  }

  /** A function was deployed, updated or removed: every worker forgets its cached spec. */
  changed(name: string): void {
    for (const slot of this.#slots) this.#send(slot, { kind: 'changed', name });
  }

  /** Stops every worker: each drains its calls, and is killed past stopTimeoutMs. Idempotent. */
  close(): Promise<void> {
    return (this.#closing ??= Promise.all(this.#slots.map((slot) => this.#stop(slot))).then(() => {}));
  }

  #start(slot: Slot): Promise<void> {
    const worker = this.#fork(slot);
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        slot.started = undefined;
        reject(new KubefnError('START_FAILED', `gateway worker ${slot.index} did not listen within ${this.#startTimeoutMs / 1000} s`, { hint: 'see its lines above' }));
        worker.process.kill('SIGKILL');
      }, this.#startTimeoutMs);
      slot.started = {
        resolve: () => (clearTimeout(timer), resolve()),
        reject: (err) => (clearTimeout(timer), reject(err)),
      };
    });
  }

  get #startTimeoutMs(): number {
    return this.#o.startTimeoutMs ?? 30_000;
  }

  #fork(slot: Slot): Worker {
    cluster.setupPrimary({ exec: workerEntry, args: [], silent: false });
    const worker = cluster.fork();
    slot.worker = worker;
    slot.ready = undefined;
    slot.startedAt = Date.now();
    worker.on('message', (m: unknown) => this.#onMessage(slot, worker, m));
    worker.once('exit', (code, signal) => this.#onExit(slot, worker, code, signal));
    // A send to a worker that just died: its exit is handled above.
    worker.on('error', () => {});
    return worker;
  }

  #onMessage(slot: Slot, worker: Worker, m: unknown): void {
    if (slot.worker !== worker || !isMessage<ToPrimary>(m, ['hello', 'ready', 'failed', 'watch', 'unwatch', 'invocations'])) return;
    switch (m.kind) {
      case 'hello':
        this.#send(slot, { kind: 'config', config: { ...this.#config, index: slot.index } });
        return;
      case 'ready':
        slot.ready = { url: m.url, statsUrl: m.statsUrl };
        this.#o.logger?.info('gateway worker listening', { worker: slot.index, pid: worker.process.pid, url: m.url });
        slot.started?.resolve();
        slot.started = undefined;
        return;
      case 'failed': {
        const err = errorFromBody(500, m.error);
        if (slot.started) {
          slot.started.reject(err);
          slot.started = undefined;
        } else {
          this.#o.logger?.warn('gateway worker could not start', { worker: slot.index, pid: worker.process.pid, err: m.error });
        }
        return;
      }
      case 'watch':
        this.#watch(slot, m.name);
        return;
      case 'unwatch':
        slot.watches.get(m.name)?.();
        slot.watches.delete(m.name);
        return;
      case 'invocations':
        this.#invocations(slot, m.totals);
        return;
    }
  }

  /** Pushes `name`'s ready replicas to the slot's worker now and on every change. */
  #watch(slot: Slot, name: string): void {
    const push = (endpoints: readonly Endpoint[]) => this.#send(slot, { kind: 'endpoints', name, endpoints: [...endpoints] });
    const set = this.#o.driver.endpoints(name);
    if (!slot.watches.has(name)) {
      if (slot.watches.size >= maxFunctionsPerWorker) {
        this.#o.logger?.warn('gateway worker watches too many functions: not pushing more', { worker: slot.index, function: name, max: maxFunctionsPerWorker });
        return;
      }
      slot.watches.set(name, set.subscribe(push));
    }
    push(set.current());
  }

  /** Passes on the calls a worker served since its last report. */
  #invocations(slot: Slot, totals: unknown): void {
    if (!Array.isArray(totals)) return;
    for (const entry of totals as unknown[]) {
      if (!Array.isArray(entry)) continue;
      const [name, total] = entry as unknown[];
      if (typeof name !== 'string' || typeof total !== 'number' || !Number.isSafeInteger(total)) continue;
      const delta = total - (slot.invocations.get(name) ?? 0);
      if (!slot.invocations.has(name) && slot.invocations.size >= maxFunctionsPerWorker) continue;
      slot.invocations.set(name, total);
      if (delta > 0) this.#o.onInvocations?.(name, delta);
    }
  }

  #onExit(slot: Slot, worker: Worker, code: number | null, signal: string | null): void {
    if (slot.worker !== worker) return;
    for (const unsubscribe of slot.watches.values()) unsubscribe();
    slot.watches.clear();
    // A new worker counts from zero.
    slot.invocations.clear();
    slot.worker = undefined;
    slot.ready = undefined;
    if (slot.started) {
      slot.started.reject(new KubefnError('START_FAILED', `gateway worker ${slot.index} exited (${signal ?? `code ${code}`}) before it listened`, { hint: 'see its lines above' }));
      slot.started = undefined;
      return;
    }
    if (this.#closing) return;
    const ranMs = Date.now() - slot.startedAt;
    slot.failures = ranMs >= healthyRunMs ? 0 : slot.failures + 1;
    const delayMs = slot.failures === 0 ? 0 : Math.min(maxBackoffMs, 250 * 2 ** (slot.failures - 1));
    this.#o.logger?.warn('gateway worker exited: starting another', { worker: slot.index, pid: worker.process.pid, code, signal, inMs: delayMs });
    slot.restart = setTimeout(() => {
      slot.restart = undefined;
      if (this.#closing) return;
      this.#start(slot).catch((err: unknown) => this.#o.logger?.warn('gateway worker did not start again', { worker: slot.index, err }));
    }, delayMs);
  }

  async #stop(slot: Slot): Promise<void> {
    clearTimeout(slot.restart);
    const worker = slot.worker;
    if (!worker || worker.isDead()) return;
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    this.#send(slot, { kind: 'stop' });
    const kill = setTimeout(() => {
      this.#o.logger?.warn('gateway worker did not stop in time: killing it', { worker: slot.index, pid: worker.process.pid });
      worker.process.kill('SIGKILL');
    }, this.#o.stopTimeoutMs ?? 30_000);
    await exited;
    clearTimeout(kill);
  }

  #send(slot: Slot, message: ToWorker): void {
    const worker = slot.worker;
    if (!worker?.isConnected()) return;
    try {
      worker.send(message);
    } catch {
      // The channel closed under us: the worker's exit is handled in #onExit.
    }
  }
}

/** A port free on `host` now. */
function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen({ port: 0, host, exclusive: true }, () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
