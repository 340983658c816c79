// A pool of warm runtimes (warm-runtime.ts): node processes started ahead of need, holding no
// function. Scaling a function from zero takes one and specializes it over IPC, which skips the
// process start; the taken runtime is the function's for good, and the pool starts another in
// the background. The pool is bounded by a count and by a memory budget for the idle runtimes.

import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import type { WarmPoolStats } from './driver.js';
import { LineSplitter } from './log-buffer.js';
import { forgetChild, trackChild } from './process-replica.js';
import { defaultWarmPoolMemoryBytes } from './runtime-contract.js';


/** What an idle runtime is taken to use before one has been measured, in bytes. */
const assumedRuntimeBytes = 48 * 1024 * 1024;
/** A runtime that has not reported warm by then is killed and counted a failure, in ms. */
const warmTimeoutMs = 10_000;
/**
 * How long after a runtime is taken its replacement starts, in ms: a node process starting takes
 * a core for about 100 ms, which the runtime being specialized and its first calls need more.
 */
const refillDelayMs = 250;
/** Waits between failed starts, doubling up to the last, in ms. */
const retryDelaysMs = [250, 1_000, 5_000, 30_000];

export interface WarmPoolOptions {
  /** Idle runtimes to keep; 0 keeps none. */
  size: number;
  /** Budget for the idle runtimes' resident memory, in bytes (default 256 MiB). */
  memoryBytes?: number | undefined;
  nodePath: string;
  /** Node flags of every runtime (a replica started plainly would get the same). */
  nodeArgs: string[];
  /** The warm runtime's script (runtime-node's warm.js; the builder exports its path). */
  entry: string;
  /** Where a failed start or a warm runtime's own output is reported. */
  log?: (message: string) => void;
}

interface WarmRuntime {
  child: ChildProcess;
  /** Set while it is starting: the timer that gives up on it. */
  timer: NodeJS.Timeout | undefined;
  warm: boolean;
  detach: () => void;
}

export class WarmPool {
  readonly #options: WarmPoolOptions;
  readonly #entry: string;
  readonly #runtimes = new Set<WarmRuntime>();
  #taken = 0;
  #failed = 0;
  #failuresInARow = 0;
  #retryTimer: NodeJS.Timeout | undefined;
  #refillTimer: NodeJS.Timeout | undefined;
  #runtimeBytes = assumedRuntimeBytes;
  #closed = false;

  constructor(options: WarmPoolOptions) {
    this.#options = options;
    this.#entry = options.entry;
    this.#fill();
  }

  /** A warm runtime, now the caller's (its IPC channel and stdio unread), or none when the pool is empty. */
  take(): ChildProcess | undefined {
    for (const r of this.#runtimes) {
      if (!r.warm) continue;
      this.#runtimes.delete(r);
      r.detach();
      // One that died a moment ago is not worth handing out.
      if (r.child.exitCode !== null || r.child.signalCode !== null || !r.child.connected) {
        forgetChild(r.child);
        continue;
      }
      this.#taken++;
      this.#refillLater();
      holdOpen(r.child, true);
      return r.child;
    }
    return undefined;
  }

  stats(): WarmPoolStats {
    let idle = 0;
    for (const r of this.#runtimes) if (r.warm) idle++;
    return { size: this.#options.size, allowed: this.#allowed(), idle, starting: this.#runtimes.size - idle, taken: this.#taken, failed: this.#failed };
  }

  /** Stops every idle runtime; the ones taken are their functions'. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#retryTimer);
    clearTimeout(this.#refillTimer);
    const gone = [...this.#runtimes].map((r) => {
      clearTimeout(r.timer);
      const exited = new Promise<void>((resolve) => {
        if (r.child.exitCode !== null || r.child.signalCode !== null) resolve();
        else r.child.once('exit', () => resolve());
      });
      // Held open until it is gone, so close() resolves once it has.
      holdOpen(r.child, true);
      r.child.kill('SIGKILL');
      return exited;
    });
    this.#runtimes.clear();
    await Promise.all(gone);
  }

  /** How many runtimes the memory budget holds. */
  #allowed(): number {
    const budget = this.#options.memoryBytes ?? defaultWarmPoolMemoryBytes;
    return Math.max(0, Math.min(this.#options.size, Math.floor(budget / this.#runtimeBytes)));
  }

  #fill(): void {
    if (this.#closed || this.#retryTimer) return;
    while (this.#runtimes.size < this.#allowed()) this.#start();
  }

  #start(): void {
    const log = this.#options.log;
    const child = spawn(this.#options.nodePath, [...this.#options.nodeArgs, this.#entry], {
      // Nothing of the platform's environment: the function's replaces it when specialized.
      env: { PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin', HOME: tmpdir() },
      cwd: tmpdir(),
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    trackChild(child);
    const runtime: WarmRuntime = { child, timer: undefined, warm: false, detach: () => {} };
    this.#runtimes.add(runtime);
    const lines = new LineSplitter((text) => log?.(`warm runtime pid ${child.pid ?? 'none'}: ${text}`));
    const onData = (chunk: Buffer): void => lines.write(chunk);
    const onMessage = (m: unknown): void => {
      if ((m as { type?: unknown } | null)?.type !== 'kubefn:warm' || runtime.warm) return;
      clearTimeout(runtime.timer);
      runtime.timer = undefined;
      runtime.warm = true;
      this.#failuresInARow = 0;
      this.#measure(child.pid);
      this.#fill();
    };
    const onGone = (): void => {
      clearTimeout(runtime.timer);
      forgetChild(child);
      if (!this.#runtimes.delete(runtime) || this.#closed) return;
      if (!runtime.warm) {
        this.#failed++;
        this.#failuresInARow++;
        log?.(`a warm runtime exited before it was warm (${child.exitCode ?? child.signalCode ?? 'spawn failed'}); ${this.#failuresInARow} in a row`);
        this.#retryLater();
      } else {
        this.#fill();
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.on('message', onMessage);
    child.once('exit', onGone);
    child.once('error', () => {
      if (child.pid === undefined) onGone();
    });
    runtime.timer = setTimeout(() => child.kill('SIGKILL'), warmTimeoutMs);
    runtime.timer.unref();
    // An idle runtime keeps no process alive: one whose driver was never closed exits at once
    // (and takes its runtimes along, trackChild). A taken one is held open again.
    holdOpen(child, false);
    runtime.detach = () => {
      child.stdout!.off('data', onData);
      child.stderr!.off('data', onData);
      child.off('message', onMessage);
      child.off('exit', onGone);
      child.stdout!.pause();
      child.stderr!.pause();
    };
  }

  #refillLater(): void {
    if (this.#refillTimer || this.#closed) return;
    this.#refillTimer = setTimeout(() => {
      this.#refillTimer = undefined;
      this.#fill();
    }, refillDelayMs);
    this.#refillTimer.unref();
  }

  #retryLater(): void {
    if (this.#retryTimer) return;
    const delay = retryDelaysMs[Math.min(this.#failuresInARow, retryDelaysMs.length) - 1]!;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.#fill();
    }, delay);
    this.#retryTimer.unref();
  }

  /** The largest resident size seen of a warm runtime, which the memory budget is divided by. */
  #measure(pid: number | undefined): void {
    if (pid === undefined) return;
    try {
      const pages = Number(readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ')[1]);
      if (pages > 0) this.#runtimeBytes = Math.max(this.#runtimeBytes, pages * 4096);
    } catch {
      // No /proc (not Linux): keep the assumed size.
    }
  }
}

/** Whether `child` (its process, IPC channel and output pipes) keeps this process's event loop alive. */
function holdOpen(child: ChildProcess, hold: boolean): void {
  for (const handle of [child, child.channel, child.stdout, child.stderr] as ({ ref?(): unknown; unref?(): unknown } | null | undefined)[]) {
    if (hold) handle?.ref?.();
    else handle?.unref?.();
  }
}
