// One function replica as a child process: spawn, readiness over IPC, stdio lines, stop with a deadline.

import { spawn, type ChildProcess } from 'node:child_process';
import type { Endpoint } from './driver.js';
import { LineSplitter } from './log-buffer.js';
import type { RuntimeMessage } from './runtime-contract.js';

export type ReplicaState = 'starting' | 'ready' | 'draining' | 'exited';

export interface ReplicaExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** State the replica was in when it went: 'starting' means it never became ready. */
  phase: ReplicaState;
  /** Set when the driver (not the process itself) ended it: a stop, or the start timeout. */
  requested: 'stop' | 'start-timeout' | undefined;
  /** Set when the process could not be spawned at all. */
  error: Error | undefined;
  /** Last meaningful stderr lines, for failure messages. */
  stderrTail: string[];
}

export interface ProcessReplicaOptions {
  id: string;
  /** Order of creation within the function; higher is newer. */
  seq: number;
  /** Identifies the spec this replica runs, so a rolling update can tell old from new. */
  templateKey: string;
  nodePath: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  startTimeoutMs: number;
  /** Time a stopping replica gets between SIGTERM and SIGKILL. */
  drainMs: number;
  onLine(replica: ProcessReplica, stream: 'stdout' | 'stderr', text: string): void;
  onReady(replica: ProcessReplica): void;
  /** The replica stopped taking calls before the driver asked: it sent `kubefn:draining`, or its process is gone. */
  onUnroutable(replica: ProcessReplica, why: 'draining' | 'exited'): void;
  onExit(replica: ProcessReplica, exit: ReplicaExit): void;
}

const stderrTailLines = 20;
/** How long to wait after 'exit' for the last stdio bytes (a grandchild may hold the pipes open). */
const stdioFlushMs = 1000;

// Children still running, killed if this process exits without closing its drivers.
const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;

function trackChild(child: ChildProcess): void {
  liveChildren.add(child);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // One listener for all drivers. 'exit' handlers must be synchronous: kill is.
  process.on('exit', () => {
    for (const c of liveChildren) c.kill('SIGKILL');
  });
}

export class ProcessReplica {
  readonly id: string;
  readonly seq: number;
  readonly templateKey: string;
  readonly startedAtMs = Date.now();
  state: ReplicaState = 'starting';
  endpoint: Endpoint | undefined;
  readyAtMs: number | undefined;
  /** Resolves once the process is gone and its output read. */
  readonly exited: Promise<ReplicaExit>;

  readonly #options: ProcessReplicaOptions;
  readonly #child: ChildProcess | undefined;
  readonly #stderrTail: string[] = [];
  #requested: ReplicaExit['requested'];
  /** The process is gone, though its last output may still be arriving. */
  #processExited = false;
  #startTimer: NodeJS.Timeout | undefined;
  #killTimer: NodeJS.Timeout | undefined;
  #resolveExited!: (exit: ReplicaExit) => void;

  constructor(options: ProcessReplicaOptions) {
    this.#options = options;
    this.id = options.id;
    this.seq = options.seq;
    this.templateKey = options.templateKey;
    this.exited = new Promise((resolve) => (this.#resolveExited = resolve));
    let child: ChildProcess;
    try {
      child = spawn(options.nodePath, options.args, { env: options.env, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
    } catch (err) {
      this.#child = undefined;
      queueMicrotask(() => this.#finish(null, null, err as Error));
      return;
    }
    this.#child = child;
    trackChild(child);
    this.#wire(child);
    this.#startTimer = setTimeout(() => this.#startTimedOut(), options.startTimeoutMs);
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** True once the driver asked it to go (stop or start timeout). */
  get stopRequested(): boolean {
    return this.#requested !== undefined;
  }

  /** SIGTERM now, SIGKILL after the drain deadline; resolves when the process is gone. */
  stop(): Promise<ReplicaExit> {
    if (this.state === 'exited') return this.exited;
    this.#requested ??= 'stop';
    if (!this.#killTimer) {
      this.#child?.kill('SIGTERM');
      this.#killTimer = setTimeout(() => this.#child?.kill('SIGKILL'), this.#options.drainMs);
    }
    return this.exited;
  }

  #wire(child: ChildProcess): void {
    const out = new LineSplitter((text) => this.#options.onLine(this, 'stdout', text));
    const err = new LineSplitter((text) => {
      this.#rememberStderr(text);
      this.#options.onLine(this, 'stderr', text);
    });
    child.stdout!.on('data', (chunk: Buffer) => out.write(chunk));
    child.stderr!.on('data', (chunk: Buffer) => err.write(chunk));
    child.on('message', (message: unknown) => this.#onMessage(message));
    // 'error' with no pid means spawn failed and no 'exit' will follow; later errors (a failed
    // kill of a process that is already gone) are harmless.
    child.on('error', (error) => {
      if (child.pid === undefined) this.#finish(null, null, error);
    });
    child.on('exit', (code, signal) => {
      this.#processExited = true;
      // Unroutable now, even if a grandchild keeps the pipes open and delays 'close'.
      if (this.state === 'ready' || this.state === 'draining') this.#options.onUnroutable(this, 'exited');
      let flushed = false;
      const flush = (): void => {
        if (flushed) return;
        flushed = true;
        clearTimeout(timer);
        out.end();
        err.end();
        this.#finish(code, signal, undefined);
      };
      const timer = setTimeout(flush, stdioFlushMs);
      child.once('close', flush);
    });
  }

  #onMessage(message: unknown): void {
    if (this.#processExited || typeof message !== 'object' || message === null) return;
    const m = message as Partial<RuntimeMessage> & { port?: unknown; adminPort?: unknown };
    if (m.type === 'kubefn:ready' && this.state === 'starting') {
      if (!isPort(m.port) || !isPort(m.adminPort)) return;
      clearTimeout(this.#startTimer);
      if (this.stopRequested) return;
      this.state = 'ready';
      this.readyAtMs = Date.now();
      this.endpoint = {
        id: this.id,
        url: `http://127.0.0.1:${m.port}`,
        adminUrl: `http://127.0.0.1:${m.adminPort}`,
      };
      this.#options.onReady(this);
    } else if (m.type === 'kubefn:draining' && (this.state === 'ready' || this.state === 'starting')) {
      this.state = 'draining';
      this.#options.onUnroutable(this, 'draining');
    }
  }

  #startTimedOut(): void {
    if (this.state !== 'starting') return;
    this.#requested ??= 'start-timeout';
    this.#child?.kill('SIGKILL');
  }

  #rememberStderr(text: string): void {
    // Keep lines that say what went wrong, not the stack frames and banner around them.
    const t = text.trim();
    if (!t || /^at\s/.test(t) || /^Node\.js v\d/.test(t) || /^\^+$/.test(t)) return;
    this.#stderrTail.push(t.length > 500 ? `${t.slice(0, 500)}...` : t);
    if (this.#stderrTail.length > stderrTailLines) this.#stderrTail.shift();
  }

  #finish(code: number | null, signal: NodeJS.Signals | null, error: Error | undefined): void {
    if (this.state === 'exited') return;
    const phase = this.state;
    this.state = 'exited';
    clearTimeout(this.#startTimer);
    clearTimeout(this.#killTimer);
    if (this.#child) liveChildren.delete(this.#child);
    const exit: ReplicaExit = { code, signal, phase, requested: this.#requested, error, stderrTail: [...this.#stderrTail] };
    this.#resolveExited(exit);
    this.#options.onExit(this, exit);
  }
}

function isPort(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value > 0 && value < 65536;
}

/** "exited with code 3", "was killed by SIGKILL", "could not be started: spawn node ENOENT". */
export function describeExit(exit: ReplicaExit): string {
  if (exit.error) return `could not be started: ${exit.error.message}`;
  if (exit.signal) return `was killed by ${exit.signal}`;
  return `exited with code ${exit.code ?? 'unknown'}`;
}

/**
 * Why a replica the driver did not stop has gone: START_FAILED if it never became ready (with
 * the last stderr lines, which usually hold the error), REPLICA_FAILED if it crashed later.
 */
export function describeFailure(
  replica: ProcessReplica,
  exit: ReplicaExit,
  startTimeoutMs: number,
  upMs: number | undefined,
): { code: 'START_FAILED' | 'REPLICA_FAILED'; message: string } {
  if (exit.requested === 'start-timeout' || exit.phase === 'starting') {
    const why =
      exit.requested === 'start-timeout'
        ? `did not report ready within ${startTimeoutMs} ms and was killed`
        : `${describeExit(exit)} before it was ready`;
    const tail = exit.stderrTail.slice(-3).join(' | ');
    return { code: 'START_FAILED', message: `replica ${replica.id} failed to start: ${why}${tail ? `; last stderr: ${tail}` : ''}` };
  }
  const upS = Math.round((upMs ?? 0) / 1000);
  return { code: 'REPLICA_FAILED', message: `replica ${replica.id} crashed: ${describeExit(exit)} after ${upS} s ready` };
}
