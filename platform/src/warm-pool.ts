// A pool of warm runtimes (runtime-node's warm.ts): node processes started ahead of need, holding
// no function. Scaling a function from zero takes one and specializes it over IPC, which skips
// the process start; the taken runtime is the function's for good, and the pool starts another
// in the background (warm-set.ts: the count, the memory budget, the back-off).

import { spawn, type ChildProcess } from 'node:child_process';
import { tmpdir } from 'node:os';
import { LineSplitter } from './log-buffer.js';
import { forgetChild, trackChild } from './process-replica.js';
import { holdOpen, residentBytesOf, WarmSet, type WarmMember } from './warm-set.js';

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

/** Hands out warm runtimes: each taken one is the caller's (its IPC channel and stdio unread). */
export class WarmPool extends WarmSet<ChildProcess> {
  constructor(options: WarmPoolOptions) {
    super({
      size: options.size,
      memoryBytes: options.memoryBytes,
      start: () => startRuntime(options),
      assumedBytes: 48 * 1024 * 1024,
      warmTimeoutMs: 10_000,
      // A node process starting takes a core for about 100 ms, which the runtime being
      // specialized and its first calls need more.
      refillDelayMs: 250,
      log: options.log,
      noun: 'warm runtime',
    });
  }
}

function startRuntime(options: WarmPoolOptions): WarmMember<ChildProcess> {
  const log = options.log;
  const child = spawn(options.nodePath, [...options.nodeArgs, options.entry], {
    // Nothing of the platform's environment: the function's replaces it when specialized.
    env: { PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin', HOME: tmpdir() },
    cwd: tmpdir(),
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  trackChild(child);
  const lines = new LineSplitter((text) => log?.(`warm runtime pid ${child.pid ?? 'none'}: ${text}`));
  const onData = (chunk: Buffer): void => lines.write(chunk);
  let onMessage: (m: unknown) => void = () => {};
  const warm = new Promise<void>((resolve) => {
    onMessage = (m) => {
      if ((m as { type?: unknown } | null)?.type === 'kubefn:warm') resolve();
    };
  });
  let detached = false;
  const gone = new Promise<string | undefined>((resolve) => {
    const onGone = (): void => {
      // A taken runtime is its replica's to track from here on.
      if (!detached) forgetChild(child);
      resolve(String(child.exitCode ?? child.signalCode ?? 'spawn failed'));
    };
    child.once('exit', onGone);
    child.once('error', () => {
      if (child.pid === undefined) onGone();
    });
  });
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  child.on('message', onMessage);
  // An idle runtime keeps no process alive: one whose driver was never closed exits at once (and
  // takes its runtimes along, trackChild). A taken one is held open again.
  holdOpen(child, false);
  return {
    value: child,
    warm,
    gone,
    alive: () => child.exitCode === null && child.signalCode === null && child.connected,
    kill: () => {
      // Held open until it is gone, so a close() waiting for it resolves once it has.
      holdOpen(child, true);
      child.kill('SIGKILL');
    },
    residentBytes: async () => residentBytesOf(child.pid),
    detach: () => {
      detached = true;
      // The taker's now: it keeps this process running.
      holdOpen(child, true);
      child.stdout!.off('data', onData);
      child.stderr!.off('data', onData);
      child.off('message', onMessage);
      child.stdout!.pause();
      child.stderr!.pause();
      if (child.exitCode !== null || child.signalCode !== null) forgetChild(child);
    },
  };
}
