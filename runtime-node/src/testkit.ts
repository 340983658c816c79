// Helpers for this package's tests: deadlines, captured logs, raw HTTP, and runtime child processes.

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { RuntimeMessage } from '@kubefn/platform/runtime-contract';
import type { HandlerModule } from './handler.js';
import { serve, type RuntimeServer, type ServeOptions } from './serve.js';

/** Generous on purpose: these tests must pass on a loaded 2-core machine. Never a timing assertion. */
export const deadlineMs = 15_000;

export function withDeadline<T>(promise: Promise<T>, what: string, ms = deadlineMs): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

/** A promise plus its resolve, for handlers that tell the test what happened to them. */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** An in-process runtime on free ports with captured logs; `base` is the function port's URL. */
export async function startRuntime(
  mod: HandlerModule,
  options: ServeOptions = {},
): Promise<{ server: RuntimeServer; logs: LogCapture; base: string }> {
  const logs = new LogCapture();
  const server = await serve(mod, {
    port: 0,
    adminPort: 0,
    host: '127.0.0.1',
    functionName: 'fn',
    instance: 'fn-0',
    log: logs.sink,
    ...options,
  });
  return { server, logs, base: `http://127.0.0.1:${server.port}` };
}

export type LogLine = Record<string, unknown> & { level: string; msg: string };

/** Collects JSON log lines and lets a test wait for one. */
export class LogCapture {
  readonly lines: LogLine[] = [];
  private waiters: { match: (line: LogLine) => boolean; resolve: (line: LogLine) => void }[] = [];

  readonly sink = (line: string): void => {
    const parsed = JSON.parse(line) as LogLine;
    this.lines.push(parsed);
    this.waiters = this.waiters.filter((w) => {
      if (!w.match(parsed)) return true;
      w.resolve(parsed);
      return false;
    });
  };

  waitFor(match: (line: LogLine) => boolean, what: string): Promise<LogLine> {
    const found = this.lines.find(match);
    if (found) return Promise.resolve(found);
    return withDeadline(new Promise((resolve) => this.waiters.push({ match, resolve })), what);
  }

  count(match: (line: LogLine) => boolean): number {
    return this.lines.filter(match).length;
  }

  /** Resolves once `n` lines match. */
  waitForCount(match: (line: LogLine) => boolean, n: number, what: string): Promise<void> {
    let seen = this.count(match);
    if (seen >= n) return Promise.resolve();
    return withDeadline(
      new Promise<void>((resolve) => {
        const counting = (line: LogLine): boolean => match(line) && ++seen >= n;
        this.waiters.push({ match: counting, resolve: () => resolve() });
      }),
      what,
    );
  }
}

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export function readResponse(res: http.IncomingMessage): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
    res.on('error', reject);
  });
}

/** One call on its own connection; `body` is sent whole. */
export function call(port: number, options: http.RequestOptions & { body?: string } = {}): Promise<RawResponse> {
  return withDeadline(
    new Promise<RawResponse>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, agent: false, ...options }, (res) => {
        readResponse(res).then(resolve, reject);
      });
      req.on('error', reject);
      req.end(options.body);
    }),
    `${options.method ?? 'GET'} ${options.path ?? '/'}`,
  );
}

/** Opens a TCP connection and resolves once it is established. */
export async function connect(port: number): Promise<net.Socket> {
  const socket = net.connect(port, '127.0.0.1');
  await withDeadline(once(socket, 'connect'), 'a TCP connection');
  return socket;
}

/** Everything a socket receives until the peer closes it. */
export function readUntilClose(socket: net.Socket): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => (text += d));
    socket.on('error', () => {});
    socket.on('close', () => resolve(text));
  });
}

const fixtures = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'test-fixtures');

/** A runtime child process started like the platform starts a replica: env in, IPC messages and JSON stdout out. */
export class RuntimeChild {
  readonly child: ChildProcess;
  readonly logs = new LogCapture();
  readonly messages: RuntimeMessage[] = [];
  readonly stderr: string[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private closed = false;

  constructor(fixture: string, env: Record<string, string> = {}) {
    this.child = spawn(process.execPath, [path.join(fixtures, fixture)], {
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      env: {
        PATH: process.env.PATH ?? '',
        PORT: '0',
        ADMIN_PORT: '0',
        KUBEFN_HOST: '127.0.0.1',
        KUBEFN_FUNCTION: 'fixture',
        KUBEFN_INSTANCE: 'fixture-0',
        ...env,
      },
    });
    // 'close' rather than 'exit': by then stdout and the IPC channel are fully read.
    this.exited = new Promise((resolve) =>
      this.child.once('close', (code, signal) => {
        this.closed = true;
        resolve({ code, signal });
      }),
    );
    let partial = '';
    this.child.stdout!.setEncoding('utf8');
    this.child.stdout!.on('data', (data: string) => {
      const parts = (partial + data).split('\n');
      partial = parts.pop() ?? '';
      for (const line of parts) if (line.trim()) this.logs.sink(line);
    });
    this.child.stderr!.setEncoding('utf8');
    this.child.stderr!.on('data', (data: string) => this.stderr.push(data));
    this.child.on('message', (m) => this.messages.push(m as RuntimeMessage));
  }

  /** Resolves with the first IPC message of this type, or rejects if the child exits first. */
  waitForMessage<T extends RuntimeMessage['type']>(type: T): Promise<Extract<RuntimeMessage, { type: T }>> {
    type M = Extract<RuntimeMessage, { type: T }>;
    const seen = this.messages.find((m) => m.type === type) as M | undefined;
    if (seen) return Promise.resolve(seen);
    if (this.closed) return Promise.reject(new Error(`child exited before sending ${type}`));
    const arrived = new Promise<M>((resolve, reject) => {
      const onMessage = (m: RuntimeMessage): void => {
        if (m.type !== type) return;
        this.child.off('close', onExit);
        this.child.off('message', onMessage);
        resolve(m as M);
      };
      const onExit = (code: number | null): void => {
        this.child.off('message', onMessage);
        reject(new Error(`child exited (code ${code}) before sending ${type}; stderr: ${this.stderr.join('')}`));
      };
      this.child.on('message', onMessage);
      this.child.once('close', onExit);
    });
    return withDeadline(arrived, `IPC message ${type}`);
  }

  /** Kills the child if it is still running; for test cleanup. */
  async kill(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    await this.exited;
  }
}
