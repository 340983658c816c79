// Test support: an in-memory Io that records stdout/stderr, for running main() inside a test.

import { Readable } from 'node:stream';
import type { Io } from './app.js';

export interface MemoryIo extends Io {
  /** Everything written to stdout so far. */
  out(): string;
  /** Everything written to stderr so far. */
  err(): string;
}

export function memoryIo(options: { env?: Record<string, string | undefined>; cwd?: string; homedir?: string; stdin?: string; now?: number } = {}): MemoryIo {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const decoder = (chunk: string | Uint8Array) => (typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
  const stdin = Readable.from(options.stdin === undefined ? [] : [Buffer.from(options.stdin)]) as Readable & { isTTY?: boolean };
  // No stdin text given: behave like a terminal, so nothing waits on it.
  if (options.stdin === undefined) stdin.isTTY = true;
  return {
    stdout: { write: (c) => (stdout.push(decoder(c)), true), isTTY: false },
    stderr: { write: (c) => (stderr.push(decoder(c)), true), isTTY: false },
    stdin,
    env: options.env ?? {},
    cwd: options.cwd ?? process.cwd(),
    homedir: options.homedir ?? '/nonexistent-home',
    signal: new AbortController().signal,
    now: () => options.now ?? Date.now(),
    out: () => stdout.join(''),
    err: () => stderr.join(''),
  };
}
