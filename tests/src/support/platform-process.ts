// Starts the real `fn up` in a child process on a free port, for end-to-end tests and benchmarks.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { onExit, stopSync } from './exit-cleanup.js';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const fnBin = path.join(repoRoot, 'cli', 'bin', 'fn.js');

export interface RunningPlatform {
  url: string;
  token: string;
  home: string;
  /** The NATS server `fn up` reported (its own nats-server's, or --nats), if any. */
  nats: string | undefined;
  child: ChildProcess;
  /** The last lines the platform printed (at most 500), for assertions and failure reports. */
  output: string[];
  /** SIGTERM and wait for exit; resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export async function newHome(): Promise<string> {
  return mkdtemp(path.join(tmpdir(), 'kubefn-home-'));
}

/** Starts `fn up --json` and resolves once it reports where it listens. */
export async function startPlatform(
  home: string,
  options: { timeoutMs?: number; env?: Record<string, string>; args?: string[]; nodeArgs?: string[] } = {},
): Promise<RunningPlatform> {
  // nodeArgs: flags for node itself, e.g. --cpu-prof (which NODE_OPTIONS may not carry).
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), fnBin, 'up', '--port', '0', '--host', '127.0.0.1', '--home', home, '--json', ...(options.args ?? [])], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...options.env },
  });
  const output: string[] = [];
  const keep = (l: string) => {
    output.push(l);
    if (output.length > 500) output.shift();
  };
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  // A test or benchmark that dies (or is killed at its timeout) takes its platform along.
  const forgetExitHook = onExit(() => stopSync([child.pid!]));
  void exited.then(forgetExitHook);
  createInterface({ input: child.stderr! }).on('line', keep);
  const { url, nats } = await new Promise<{ url: string; nats: string | undefined }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`fn up did not start within ${options.timeoutMs ?? 30_000} ms:\n${output.join('\n')}`)), options.timeoutMs ?? 30_000);
    let listening = false;
    createInterface({ input: child.stdout! }).on('line', (l) => {
      keep(l);
      // Parsed only until it listens: a benchmark's request log is many lines a second.
      if (listening) return;
      try {
        const ev = JSON.parse(l) as { msg?: string; url?: string; nats?: string };
        if (ev.msg === 'listening' && ev.url) {
          listening = true;
          clearTimeout(timer);
          resolve({ url: ev.url, nats: ev.nats });
        }
      } catch {
        // not JSON: keep it in the output only
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`fn up exited with ${code} before listening:\n${output.join('\n')}`));
    });
  });
  const token = (await readFile(path.join(home, 'token'), 'utf8')).trim();
  return {
    url,
    token,
    home,
    nats,
    child,
    output,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}
