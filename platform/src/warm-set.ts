// What every warm pool shares (warm-pool.ts for processes, podman-pool.ts for containers):
// members started ahead of need, holding no function; `take()` hands one out for good and a
// replacement starts a moment later; the pool is bounded by a count and by a memory budget for
// its idle members; members that die before they are warm are counted, and starting again backs
// off. How one member starts, reports warm and dies is the flavour's.

import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { WarmPoolStats } from './driver.js';
import { defaultWarmPoolMemoryBytes } from './runtime-contract.js';

/** One pre-started runtime as its pool sees it. */
export interface WarmMember<T> {
  /** What the taker gets. */
  readonly value: T;
  /** Resolves once it is warm (ready to be specialized); never settles if it dies first. */
  readonly warm: Promise<void>;
  /** Resolves once it is gone, whatever the reason, with how it ended when known (an exit code). */
  readonly gone: Promise<string | undefined>;
  /** Whether it still runs (checked again when it is taken). */
  alive(): boolean;
  /** Ends it at once; `gone` follows. */
  kill(): void;
  /** Its resident memory, bytes, when that can be read; asked once it is warm. */
  residentBytes?(): Promise<number | undefined>;
  /** Called when it is handed out: the pool's own listeners let go, the taker's start. */
  detach?(): void;
}

export interface WarmSetOptions<T> {
  /** Idle members to keep; 0 keeps none. */
  size: number;
  /** Budget for the idle members' resident memory, in bytes (default 256 MiB). */
  memoryBytes?: number | undefined;
  /** Starts one member. A throw counts as a failed start. */
  start(): WarmMember<T>;
  /** What one member is taken to use before one has been measured, in bytes. */
  assumedBytes: number;
  /** A member not warm by then is killed and counted a failure, in ms. */
  warmTimeoutMs: number;
  /** How long after a take its replacement starts, in ms: a start takes a core the specialized one needs more. */
  refillDelayMs: number;
  /** Where a failed start is reported. */
  log?: ((message: string) => void) | undefined;
  /** How a member is named in those reports ("warm runtime", "warm container"). */
  noun: string;
}

/** Waits between failed starts, doubling up to the last, in ms. */
const retryDelaysMs = [250, 1_000, 5_000, 30_000];

interface Slot<T> {
  member: WarmMember<T>;
  warm: boolean;
  timer: NodeJS.Timeout | undefined;
}

export class WarmSet<T> {
  readonly #o: WarmSetOptions<T>;
  readonly #slots = new Set<Slot<T>>();
  #taken = 0;
  #failed = 0;
  #failuresInARow = 0;
  #retryTimer: NodeJS.Timeout | undefined;
  #refillTimer: NodeJS.Timeout | undefined;
  #memberBytes: number;
  #closed = false;

  constructor(options: WarmSetOptions<T>) {
    this.#o = options;
    this.#memberBytes = options.assumedBytes;
    this.#fill();
  }

  /** A warm member, now the caller's for good, or none when none is warm. */
  take(): T | undefined {
    for (const slot of this.#slots) {
      if (!slot.warm) continue;
      this.#slots.delete(slot);
      slot.member.detach?.();
      // One that died a moment ago is not worth handing out.
      if (!slot.member.alive()) continue;
      this.#taken++;
      this.#refillLater();
      return slot.member.value;
    }
    return undefined;
  }

  stats(): WarmPoolStats {
    let idle = 0;
    for (const s of this.#slots) if (s.warm) idle++;
    return { size: this.#o.size, allowed: this.#allowed(), idle, starting: this.#slots.size - idle, taken: this.#taken, failed: this.#failed };
  }

  /** Ends every idle member and waits until they are gone; the ones taken are their functions'. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#retryTimer);
    clearTimeout(this.#refillTimer);
    const gone = [...this.#slots].map((s) => {
      clearTimeout(s.timer);
      s.member.kill();
      return s.member.gone;
    });
    this.#slots.clear();
    await Promise.all(gone);
  }

  /** How many members the memory budget holds. */
  #allowed(): number {
    const budget = this.#o.memoryBytes ?? defaultWarmPoolMemoryBytes;
    return Math.max(0, Math.min(this.#o.size, Math.floor(budget / this.#memberBytes)));
  }

  #fill(): void {
    if (this.#closed || this.#retryTimer) return;
    while (this.#slots.size < this.#allowed()) {
      if (!this.#start()) break;
    }
  }

  #start(): boolean {
    let member: WarmMember<T>;
    try {
      member = this.#o.start();
    } catch (err) {
      this.#failedStart(`could not start: ${(err as Error).message}`);
      return false;
    }
    const slot: Slot<T> = { member, warm: false, timer: undefined };
    this.#slots.add(slot);
    slot.timer = setTimeout(() => member.kill(), this.#o.warmTimeoutMs);
    slot.timer.unref();
    void member.warm.then(() => {
      clearTimeout(slot.timer);
      slot.timer = undefined;
      if (!this.#slots.has(slot)) return;
      slot.warm = true;
      this.#failuresInARow = 0;
      void member.residentBytes?.().then((bytes) => {
        if (bytes && bytes > this.#memberBytes) this.#memberBytes = bytes;
      });
      this.#fill();
    });
    void member.gone.then((how) => {
      clearTimeout(slot.timer);
      if (!this.#slots.delete(slot) || this.#closed) return;
      if (slot.warm) this.#fill();
      else this.#failedStart(`exited before it was warm${how ? ` (${how})` : ''}`);
    });
    return true;
  }

  #failedStart(why: string): void {
    this.#failed++;
    this.#failuresInARow++;
    this.#o.log?.(`a ${this.#o.noun} ${why}; ${this.#failuresInARow} in a row`);
    this.#retryLater();
  }

  #refillLater(): void {
    if (this.#refillTimer || this.#closed) return;
    this.#refillTimer = setTimeout(() => {
      this.#refillTimer = undefined;
      this.#fill();
    }, this.#o.refillDelayMs);
    this.#refillTimer.unref();
  }

  #retryLater(): void {
    if (this.#retryTimer || this.#closed) return;
    const delay = retryDelaysMs[Math.min(this.#failuresInARow, retryDelaysMs.length) - 1]!;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.#fill();
    }, delay);
    this.#retryTimer.unref();
  }
}

/** Whether `child` (its process, IPC channel and output pipes) keeps this process's event loop alive. */
export function holdOpen(child: ChildProcess, hold: boolean): void {
  for (const handle of [child, child.channel, child.stdout, child.stderr] as ({ ref?(): unknown; unref?(): unknown } | null | undefined)[]) {
    if (hold) handle?.ref?.();
    else handle?.unref?.();
  }
}

/** The resident memory of process `pid`, in bytes, from /proc; undefined where that cannot be read. */
export function residentBytesOf(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const pages = Number(readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ')[1]);
    return pages > 0 ? pages * 4096 : undefined;
  } catch {
    return undefined; // No /proc (not Linux), or it is gone: the assumed size stays.
  }
}
