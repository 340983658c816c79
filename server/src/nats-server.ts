// A local nats-server for `fn up` when no --nats is given: JetStream on, its store, pid file and
// ports file in <home>/nats, listening on 127.0.0.1 on a port the OS picks, and gone when `fn up`
// goes, however it ends (nats-supervisor.ts stands between them).

import { spawn, type ChildProcess } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import { access, mkdir, readdir, readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { KubefnError } from '@kubefn/platform';
import { isRunning } from './home-lock.js';
import type { Logger } from './logger.js';
import type { SupervisorMessage } from './nats-supervisor.js';
import { settlesWithin } from './settles.js';

export interface LocalNatsOptions {
  /** The platform's state directory: the server keeps its store, pid file and ports file in `<home>/nats`. */
  home: string;
  log?: Pick<Logger, 'info' | 'warn'>;
  /** Where `nats-server` is looked up (PATH) and what it runs with; default process.env. */
  env?: NodeJS.ProcessEnv;
  /** The executable; default `nats-server` found on PATH. */
  bin?: string;
  /** How long the server may take to accept a connection, ms (default 20000). */
  startTimeoutMs?: number;
  /** How long a stop waits after SIGTERM before SIGKILL, ms (default 5000). */
  stopGraceMs?: number;
}

export interface LocalNats {
  /** nats://127.0.0.1:<port> */
  url: string;
  /** The gateway's connection to it (reconnects forever; close() drains it). */
  connection: NatsConnection;
  /** nats-server's process id. */
  pid: number;
  /** `<home>/nats`: the JetStream store is its `jetstream` folder. */
  dir: string;
  /** The server's last output lines (at most `outputLines`). */
  output(): string[];
  /** Drains the connection and stops the server (SIGTERM, SIGKILL after the grace); idempotent. */
  close(): Promise<void>;
}

/** Lines of the server's output kept for error messages. */
export const outputLines = 200;
/** Longest output line kept, characters. */
const maxLineChars = 2000;
const installHint = 'apt-get install nats-server, or pass --nats nats://host:4222; --no-nats runs without NATS';

export async function startLocalNats(options: LocalNatsOptions): Promise<LocalNats> {
  const env = options.env ?? process.env;
  const startTimeoutMs = options.startTimeoutMs ?? 20_000;
  const graceMs = options.stopGraceMs ?? 5_000;
  const bin = options.bin ?? (await findOnPath('nats-server', env));
  if (!bin) {
    throw new KubefnError('NOT_SUPPORTED', 'cannot start a local NATS server: nats-server is not on PATH', { hint: installHint });
  }
  const dir = path.join(path.resolve(options.home), 'nats');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const pidFile = path.join(dir, 'nats-server.pid');
  await stopStale(pidFile, dir, graceMs, options.log);

  const args = ['-a', '127.0.0.1', '-p', '-1', '-n', 'kubefn-local', '-js', '-sd', dir, '-P', pidFile, '--ports_file_dir', dir];
  // Resolved here, not at import: a bundle of the platform image never starts a local server.
  const supervisor = fileURLToPath(new URL('./nats-supervisor.js', import.meta.url));
  // Detached: a Ctrl-C in the terminal goes to `fn up` alone, which then stops NATS after the
  // gateway, instead of the server vanishing under the gateway's last calls.
  const child = spawn(process.execPath, [supervisor, String(graceMs), bin, ...args], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'], detached: true, env });
  const output = new LineRing(outputLines);
  child.stdout!.on('data', (chunk: Buffer) => output.write(chunk));
  child.stderr!.on('data', (chunk: Buffer) => output.write(chunk));
  const exited = new Promise<string>((resolve) => {
    child.once('exit', (code, signal) => resolve(signal ? `killed by ${signal}` : code === 127 ? 'could not be run' : `exited with code ${code}`));
    child.once('error', (err) => resolve(`could not be run (${err.message})`));
  });
  let pid: number | undefined;
  const spawned = new Promise<number>((resolve) => child.on('message', (m: SupervisorMessage) => m.type === 'spawned' && resolve((pid = m.pid))));

  const started = Date.now();
  // Aborted at the bound, or as soon as the start is over either way: the ports-file poll stops
  // then. (Not AbortSignal.timeout: with listeners, its timer holds the process for the bound.)
  const waiting = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    waiting.abort(new Error('start timeout'));
  }, startTimeoutMs);
  const deadline = waiting.signal;
  const failed = exited.then((how) => {
    throw new Error(`nats-server ${how} before accepting connections`);
  });
  failed.catch(() => {});
  let connection: NatsConnection;
  let connecting: Promise<NatsConnection> | undefined;
  let url: string;
  try {
    const serverPid = await Promise.race([spawned, failed, aborted(deadline)]);
    url = await Promise.race([portsFileUrl(dir, serverPid, deadline), failed]);
    connecting = connect({ servers: url, name: 'kubefn-gateway', maxReconnectAttempts: -1, timeout: Math.max(1, startTimeoutMs - (Date.now() - started)) });
    connection = await Promise.race([connecting, failed, aborted(deadline)]);
  } catch (err) {
    // A connection that arrives after the start gave up is closed, not leaked.
    void connecting?.then((nc) => nc.close(), () => {});
    await stopProcess(child, exited, pid, graceMs);
    const why = timedOut ? `nats-server did not accept connections within ${startTimeoutMs} ms` : (err as Error).message;
    const tail = output.lines().slice(-20);
    throw new KubefnError('START_FAILED', `cannot start a local NATS server: ${why}${tail.length ? `; its last output:\n  ${tail.join('\n  ')}` : ''}`, {
      hint: `the server's store is ${dir}; or pass --nats nats://host:4222, or --no-nats to run without NATS`,
      cause: err,
    });
  } finally {
    clearTimeout(timer);
    waiting.abort();
  }
  // Never what keeps `fn up` alive: close() stops it, and so does `fn up` ending without close().
  child.unref();
  child.channel?.unref();
  (child.stdout as unknown as { unref?: () => void }).unref?.();
  (child.stderr as unknown as { unref?: () => void }).unref?.();

  let closing: Promise<void> | undefined;
  void exited.then((how) => {
    if (!closing) options.log?.warn(`the local nats-server ${how}`, { pid, output: output.lines().slice(-10) });
  });
  options.log?.info('started nats-server', { nats: url, pid, store: dir });
  return {
    url,
    connection,
    pid: pid!,
    dir,
    output: () => output.lines(),
    close: () =>
      (closing ??= (async () => {
        await settlesWithin(connection.drain(), graceMs);
        if (!connection.isClosed()) await connection.close().catch(() => {});
        await stopProcess(child, exited, pid, graceMs);
      })()),
  };
}

/** The absolute path of `name` in the first PATH directory that has it executable. */
export async function findOnPath(name: string, env: NodeJS.ProcessEnv): Promise<string | undefined> {
  for (const d of (env.PATH ?? '').split(path.delimiter)) {
    if (!d) continue;
    const file = path.join(d, name);
    try {
      await access(file, fsConstants.X_OK);
      if ((await stat(file)).isFile()) return file;
    } catch {
      // not here
    }
  }
  return undefined;
}

/**
 * A nats-server a previous run left on this store (its `fn up` and supervisor were both killed)
 * would keep the store and hold the pid file: stop it, but only if the pid is still a nats-server
 * serving this very folder, never a process that reused the pid.
 */
async function stopStale(pidFile: string, dir: string, graceMs: number, log: LocalNatsOptions['log']): Promise<void> {
  const pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
  if (Number.isSafeInteger(pid) && pid > 0 && isRunning(pid)) {
    const command = await commandLine(pid);
    if (command && /nats-server/.test(command[0] ?? '') && command.includes(dir)) {
      log?.warn('stopping the nats-server a previous run left on this store', { pid, store: dir });
      sendSignal(pid, 'SIGTERM');
      if (!(await gone(pid, graceMs))) {
        sendSignal(pid, 'SIGKILL');
        await gone(pid, 5_000);
      }
    }
  }
  await rm(pidFile, { force: true });
  for (const f of await readdir(dir)) if (f.endsWith('.ports')) await rm(path.join(dir, f), { force: true });
}

/** nats-server writes `<executable>_<pid>.ports` (JSON: {"nats": ["nats://host:port"]}) once it listens. */
async function portsFileUrl(dir: string, pid: number, deadline: AbortSignal): Promise<string> {
  const suffix = `_${pid}.ports`;
  for (;;) {
    deadline.throwIfAborted();
    const name = (await readdir(dir)).find((f) => f.endsWith(suffix));
    if (name) {
      const text = await readFile(path.join(dir, name), 'utf8').catch(() => '');
      try {
        const url = (JSON.parse(text) as { nats?: unknown }).nats;
        if (Array.isArray(url) && typeof url[0] === 'string') return url[0];
      } catch {
        // written but not complete yet: read it again
      }
    }
    await delay(20);
  }
}

/** Stops the supervisor (which stops nats-server); SIGKILLs both when that takes longer than the grace. */
async function stopProcess(child: ChildProcess, exited: Promise<unknown>, serverPid: number | undefined, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  // Unreferenced while it runs; a stop is waited for.
  child.ref();
  if (child.connected) child.disconnect();
  else child.kill('SIGTERM');
  if (await settlesWithin(exited, graceMs + 2_000)) return;
  if (serverPid !== undefined) sendSignal(serverPid, 'SIGKILL');
  child.kill('SIGKILL');
  await settlesWithin(exited, 5_000);
}

async function commandLine(pid: number): Promise<string[] | undefined> {
  try {
    return (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').filter(Boolean);
  } catch {
    return undefined;
  }
}


function sendSignal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

async function gone(pid: number, withinMs: number): Promise<boolean> {
  for (const end = Date.now() + withinMs; Date.now() < end; await delay(25)) if (!isRunning(pid)) return true;
  return !isRunning(pid);
}

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));



function aborted(signal: AbortSignal): Promise<never> {
  return new Promise((_resolve, reject) => {
    if (signal.aborted) reject(signal.reason);
    signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
}

/** The last `capacity` lines of a byte stream, each cut at maxLineChars. */
class LineRing {
  readonly #lines: string[];
  #next = 0;
  #count = 0;
  #partial = '';

  constructor(readonly capacity: number) {
    this.#lines = new Array<string>(capacity);
  }

  write(chunk: Buffer): void {
    const parts = (this.#partial + chunk.toString('utf8')).split('\n');
    this.#partial = parts.pop()!.slice(0, maxLineChars);
    for (const line of parts) this.#push(line);
  }

  lines(): string[] {
    const out: string[] = [];
    for (let i = this.#count; i > 0; i--) out.push(this.#lines[(this.#next - i + this.capacity) % this.capacity]!);
    return this.#partial ? [...out, this.#partial] : out;
  }

  #push(line: string): void {
    this.#lines[this.#next] = line.replace(/\r$/, '').slice(0, maxLineChars);
    this.#next = (this.#next + 1) % this.capacity;
    this.#count = Math.min(this.#count + 1, this.capacity);
  }
}
