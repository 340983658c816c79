// An informer that keeps itself running: client-node's ListWatch, restarted with backoff after an
// error, with a first start that fails loudly and a way to wait for the cache to see a write.

import type { Informer, KubeConfig, KubernetesListObject, KubernetesObject, ObjectCache, Watch } from '@kubernetes/client-node';
import type { KubernetesClient } from './client.js';

/** How long the API server keeps one watch open before ending it, s (client-node sends none). */
export const defaultWatchTimeoutSeconds = 300;

export interface WatchedInformerOptions {
  labelSelector?: string;
  fieldSelector?: string;
  /** Sent with every watch request (default 300): a watch that went silent ends and is made again. */
  timeoutSeconds?: number;
  /** Called at every watch request made (the first, and each after the server ended one). */
  onWatch?: () => void;
}

/**
 * client-node's informer (its ListWatch) with `timeoutSeconds` on every watch request. Without
 * it a watch whose connection died silently (a dropped route, a blackholed API server) waits
 * forever, and the cache never sees another change; with it the server ends each watch in time,
 * and ListWatch makes the next one from the last resource version.
 */
export function watchedInformer<T extends KubernetesObject>(
  k8s: KubernetesClient,
  kc: KubeConfig,
  path: string,
  list: () => Promise<KubernetesListObject<T>>,
  options: WatchedInformerOptions = {},
): Informer<T> & ObjectCache<T> {
  const watch = new k8s.Watch(kc);
  const timeoutSeconds = options.timeoutSeconds ?? defaultWatchTimeoutSeconds;
  const timed = {
    watch: (query: string, params: Record<string, string | number | boolean | undefined>, callback: Parameters<Watch['watch']>[2], done: Parameters<Watch['watch']>[3]) => {
      options.onWatch?.();
      return watch.watch(query, { ...params, timeoutSeconds }, callback, done);
    },
  } as unknown as Watch;
  return new k8s.ListWatch<T>(path, timed, list, false, options.labelSelector, options.fieldSelector);
}

export interface KeptInformerOptions {
  /** What is watched, for warnings: "functions in team-a". */
  what: string;
  /** The namespace watched, for cache lookups by name. */
  namespace: string;
  onWarning: (message: string, err?: unknown) => void;
  /** First pause before a restart, in ms (default 500); doubles up to maxBackoffMs. */
  minBackoffMs?: number;
  /** Longest pause before a restart, in ms, before jitter (default 5000). */
  maxBackoffMs?: number;
}

/** The next pause after a failure: `minMs` first, then double the last, at most `maxMs`. */
export function nextBackoffMs(previousMs: number, minMs: number, maxMs: number): number {
  return Math.min(previousMs <= 0 ? minMs : previousMs * 2, maxMs);
}

/**
 * `ms` spread over 80..120 %, so the watches of every pod that lost the API server at the same
 * moment do not all come back in the same instant.
 */
export function withJitter(ms: number, random: () => number = Math.random): number {
  return Math.round(ms * (0.8 + 0.4 * random()));
}

/**
 * client-node's ListWatch re-lists by itself when the server says the resource version is gone
 * (410) and reconnects when a watch ends cleanly or times out, but after any other error (the
 * list failing, the connection refused) it calls its 'error' handlers and stops. This restarts it
 * after a growing pause; start() keeps the last resource version, so a restart resumes the watch
 * where it was and falls back to a full list when that version has expired.
 */
export class KeptInformer<T extends KubernetesObject> {
  readonly cache: ObjectCache<T>;
  readonly #informer: Informer<T> & ObjectCache<T>;
  readonly #options: KeptInformerOptions;
  #backoffMs = 0;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #startError: unknown;
  #starting = false;
  /** Bumped on every event for a name, so a writer can wait for the cache to move. */
  readonly #seen = new Map<string, number>();
  readonly #waiters = new Set<() => void>();

  constructor(informer: Informer<T> & ObjectCache<T>, options: KeptInformerOptions) {
    this.#informer = informer;
    this.cache = informer;
    this.#options = options;
    informer.on('error', (err) => this.#failed(err));
    const seen = (obj: T): void => {
      const name = obj.metadata?.name ?? '';
      this.#seen.set(name, (this.#seen.get(name) ?? 0) + 1);
      for (const w of [...this.#waiters]) w();
    };
    informer.on('add', seen);
    informer.on('update', seen);
    informer.on('delete', seen);
  }

  on(verb: 'add' | 'update' | 'delete', cb: (obj: T) => void): void {
    this.#informer.on(verb, cb);
  }

  off(verb: 'add' | 'update' | 'delete', cb: (obj: T) => void): void {
    this.#informer.off(verb, cb);
  }

  /** Lists and starts watching; throws what the first list failed with. */
  async start(): Promise<void> {
    this.#starting = true;
    this.#startError = undefined;
    try {
      await this.#informer.start();
    } finally {
      this.#starting = false;
    }
    if (this.#startError !== undefined) {
      const err = this.#startError;
      await this.stop();
      throw err;
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    for (const w of [...this.#waiters]) w();
    await this.#informer.stop();
  }

  /**
   * Resolves once the cache holds `name` at `resourceVersion`, or has seen a later event for it,
   * or after `timeoutMs` — read-your-writes for callers that write, then read the cache.
   */
  async caughtUp(name: string, resourceVersion: string | undefined, timeoutMs = 5000): Promise<void> {
    const start = this.#seen.get(name) ?? 0;
    const done = (): boolean =>
      this.#stopped ||
      resourceVersion === undefined ||
      atOrAfter(this.cache.get(name, this.#options.namespace)?.metadata?.resourceVersion, resourceVersion) ||
      (this.#seen.get(name) ?? 0) > start + 1;
    if (done()) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(finish, timeoutMs);
      function finish(): void {
        clearTimeout(timer);
        waiters.delete(check);
        resolve();
      }
      const waiters = this.#waiters;
      const check = (): void => {
        if (done()) finish();
      };
      waiters.add(check);
    });
  }

  /** Resolves once `done()` holds for the cache, re-checked on every event, or after `timeoutMs`; returns whether it held. */
  async until(done: () => boolean, timeoutMs: number): Promise<boolean> {
    if (done()) return true;
    return new Promise<boolean>((resolve) => {
      const waiters = this.#waiters;
      const timer = setTimeout(() => finish(done()), timeoutMs);
      function finish(ok: boolean): void {
        clearTimeout(timer);
        waiters.delete(check);
        resolve(ok);
      }
      const check = (): void => {
        if (this.#stopped) finish(done());
        else if (done()) finish(true);
      };
      waiters.add(check);
    });
  }

  #failed(err: unknown): void {
    if (this.#starting) {
      this.#startError ??= err;
      return;
    }
    if (this.#stopped) return;
    this.#backoffMs = nextBackoffMs(this.#backoffMs, this.#options.minBackoffMs ?? 500, this.#options.maxBackoffMs ?? 5000);
    const pauseMs = withJitter(this.#backoffMs);
    this.#options.onWarning(`watch of ${this.#options.what} failed; restarting in ${pauseMs} ms`, err);
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.#restart(), pauseMs);
  }

  async #restart(): Promise<void> {
    if (this.#stopped) return;
    let failed = false;
    const onError = (): void => {
      failed = true;
    };
    this.#informer.on('error', onError);
    try {
      await this.#informer.start();
    } finally {
      this.#informer.off('error', onError);
    }
    // A start that listed and connected resets the backoff; a failed one already rescheduled.
    if (!failed) this.#backoffMs = 0;
  }
}

/**
 * Whether the cached object's resourceVersion is `wanted` or later. Resource versions are opaque
 * to clients, but the API server's are etcd revisions, decimal integers that only grow: compared
 * as numbers when both are, so a cache that already moved past a write (the Deployment controller
 * updated the status right after it) counts as caught up instead of waiting for two more events.
 */
function atOrAfter(cached: string | undefined, wanted: string): boolean {
  if (cached === undefined) return false;
  if (cached === wanted) return true;
  return /^\d+$/.test(cached) && /^\d+$/.test(wanted) && BigInt(cached) > BigInt(wanted);
}
