// Kills process replicas whose resident memory passes their limit: what V8's heap limit does not
// see (Buffers, native addons, wasm memory). One timer for every watched process.

import { readFileSync } from 'node:fs';

/** How often RSS is read when every process is well under its limit, in ms. */
export const defaultIntervalMs = 500;
/** How often once some process is above `nearFraction` of its limit, in ms: a fast leak is caught sooner. */
export const defaultNearIntervalMs = 100;
/** Share of its limit above which a process counts as near it. */
export const nearFraction = 0.75;

/** Resident memory of `pid` in bytes, or undefined when the process is gone. */
export type RssReader = (pid: number) => number | undefined;

/** Reads VmRSS (kB, whatever the page size) from /proc/<pid>/status. */
export function procRss(pid: number): number | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'latin1');
  } catch {
    return undefined;
  }
  const m = /^VmRSS:\s+(\d+) kB/m.exec(text);
  // A zombie has no VmRSS line: it holds no memory any more.
  return m ? Number(m[1]) * 1024 : undefined;
}

export interface MemoryWatchdogOptions {
  intervalMs?: number;
  nearIntervalMs?: number;
  readRss?: RssReader;
}

interface Watched {
  pid: number;
  limitBytes: number;
  onOver: (usedBytes: number) => void;
}

export class MemoryWatchdog {
  readonly #intervalMs: number;
  readonly #nearIntervalMs: number;
  readonly #readRss: RssReader;
  readonly #watched = new Set<Watched>();
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(options: MemoryWatchdogOptions = {}) {
    this.#intervalMs = options.intervalMs ?? defaultIntervalMs;
    this.#nearIntervalMs = options.nearIntervalMs ?? defaultNearIntervalMs;
    this.#readRss = options.readRss ?? procRss;
  }

  /** Processes watched now. */
  get size(): number {
    return this.#watched.size;
  }

  /** True while the one timer is set (some process is watched). */
  get ticking(): boolean {
    return this.#timer !== undefined;
  }

  /**
   * Calls `onOver` once with the RSS read when `pid` uses more than `limitBytes`, then stops
   * watching it (the caller kills it). Returns the function that stops watching it sooner.
   */
  watch(pid: number, limitBytes: number, onOver: (usedBytes: number) => void): () => void {
    if (this.#closed) return () => {};
    const entry: Watched = { pid, limitBytes, onOver };
    this.#watched.add(entry);
    this.#schedule(this.#intervalMs);
    return () => {
      this.#watched.delete(entry);
      if (this.#watched.size === 0) this.#stopTimer();
    };
  }

  /** Reads every watched process once; called by the timer, and by tests. */
  sweep(): void {
    let near = false;
    for (const entry of [...this.#watched]) {
      const rss = this.#readRss(entry.pid);
      if (rss === undefined) {
        this.#watched.delete(entry);
        continue;
      }
      if (rss > entry.limitBytes) {
        this.#watched.delete(entry);
        entry.onOver(rss);
        continue;
      }
      if (rss > entry.limitBytes * nearFraction) near = true;
    }
    if (this.#watched.size === 0) this.#stopTimer();
    else this.#schedule(near ? this.#nearIntervalMs : this.#intervalMs, true);
  }

  /** Stops the timer and forgets every process. Idempotent. */
  close(): void {
    this.#closed = true;
    this.#watched.clear();
    this.#stopTimer();
  }

  #schedule(ms: number, replace = false): void {
    if (this.#closed || (this.#timer && !replace)) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.sweep();
    }, ms);
    // Watching alone does not keep the process alive: the replicas' pipes do.
    this.#timer.unref();
  }

  #stopTimer(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
