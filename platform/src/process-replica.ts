// One function replica as a child process: spawn, readiness over IPC, stdio lines, stop with a deadline.

import { spawn, type ChildProcess } from 'node:child_process';
import type { Endpoint } from './driver.js';
import type { OutOfMemory } from './out-of-memory.js';
import type { ProcessMemoryLimit } from './process-limits.js';
import { isPort, StderrTail, watchChild, type Replica, type ReplicaExit, type ReplicaStart, type ReplicaState } from './replica.js';
import type { RuntimeMessage, SpecializeMessage } from './runtime-contract.js';

export interface ProcessReplicaOptions extends ReplicaStart {
  nodePath: string;
  args: string[];
  /** Working directory: the app root, as /app is in an image. */
  cwd?: string;
  env: NodeJS.ProcessEnv;
  /** The user (and group) the process runs as; default this process's. */
  uid?: number | undefined;
  gid?: number | undefined;
  /** Its memory limit, for the OUT_OF_MEMORY report (args carry the heap flag). */
  memoryLimit?: ProcessMemoryLimit | undefined;
  /**
   * A warm runtime to specialize instead of spawning: it is sent the bundle (args' last), cwd,
   * env and user over IPC. `nodePath` and the other args are then what it was started with.
   */
  warm?: ChildProcess | undefined;
}

// Children still running, killed if this process exits without closing its drivers.
const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;

/** Kills `child` if this process exits while it still runs. */
export function trackChild(child: ChildProcess): void {
  liveChildren.add(child);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // One listener for all drivers. 'exit' handlers must be synchronous: kill is.
  process.on('exit', () => {
    for (const c of liveChildren) c.kill('SIGKILL');
  });
}

/** No longer this module's to kill on exit: gone, or about to be tracked again by its new owner. */
export function forgetChild(child: ChildProcess): void {
  liveChildren.delete(child);
}

export class ProcessReplica implements Replica {
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
  readonly #stderrTail = new StderrTail();
  #requested: ReplicaExit['requested'];
  /** The process is gone, though its last output may still be arriving. */
  #processExited = false;
  #startTimer: NodeJS.Timeout | undefined;
  #killTimer: NodeJS.Timeout | undefined;
  #resolveExited!: (exit: ReplicaExit) => void;
  #overMemory: OutOfMemory | undefined;
  /** Specialized from the warm pool rather than spawned. */
  #warm = false;

  constructor(options: ProcessReplicaOptions) {
    this.#options = options;
    this.id = options.id;
    this.seq = options.seq;
    this.templateKey = options.templateKey;
    this.exited = new Promise((resolve) => (this.#resolveExited = resolve));
    if (options.warm) {
      this.#child = options.warm;
      this.#warm = true;
      trackChild(options.warm);
      this.#wire(options.warm);
      this.#specialize(options.warm);
      this.#startTimer = setTimeout(() => this.#startTimedOut(), options.startTimeoutMs);
      return;
    }
    let child: ChildProcess;
    try {
      child = spawn(options.nodePath, options.args, {
        env: options.env,
        cwd: options.cwd,
        stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
        ...(options.uid !== undefined ? { uid: options.uid, gid: options.gid ?? options.uid } : {}),
      });
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

  /** Hands the warm runtime its function; a channel that fails to take it means a dead runtime. */
  #specialize(child: ChildProcess): void {
    const o = this.#options;
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(o.env)) if (v !== undefined) env[k] = v;
    const message: SpecializeMessage = {
      type: 'kubefn:specialize',
      file: o.args[o.args.length - 1]!,
      cwd: o.cwd ?? process.cwd(),
      env,
      ...(o.uid !== undefined ? { uid: o.uid, gid: o.gid ?? o.uid } : {}),
    };
    try {
      child.send(message, (err) => {
        if (err) child.kill('SIGKILL');
      });
    } catch {
      child.kill('SIGKILL');
    }
    child.stdout?.resume();
    child.stderr?.resume();
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  describe(): string {
    return `pid ${this.pid ?? 'none'}${this.#warm ? ', a warm runtime from the pool' : ''}`;
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

  /** Kills it for using `usedBytes`, over its memory limit; its exit then says so (OUT_OF_MEMORY). */
  killOverMemory(usedBytes: number): void {
    if (this.#processExited || this.state === 'exited') return;
    this.#overMemory ??= { kind: 'rss', limit: this.#options.memoryLimit?.quantity, usedBytes };
    this.#child?.kill('SIGKILL');
  }

  kill(): void {
    if (this.state !== 'exited') this.#child?.kill('SIGKILL');
  }

  #wire(child: ChildProcess): void {
    child.on('message', (message: unknown) => this.#onMessage(message));
    watchChild(child, {
      line: (stream, text) => {
        if (stream === 'stderr') this.#stderrTail.add(text);
        this.#options.onLine(this, stream, text);
      },
      exited: () => {
        this.#processExited = true;
        // Unroutable now, even if a grandchild keeps the pipes open and delays 'close'.
        if (this.state === 'ready' || this.state === 'draining') this.#options.onUnroutable(this, 'exited');
      },
      done: (code, signal, error) => this.#finish(code, signal, error),
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

  #finish(code: number | null, signal: NodeJS.Signals | null, error: Error | undefined): void {
    if (this.state === 'exited') return;
    const phase = this.state;
    this.state = 'exited';
    clearTimeout(this.#startTimer);
    clearTimeout(this.#killTimer);
    if (this.#child) liveChildren.delete(this.#child);
    const exit: ReplicaExit = { code, signal, phase, requested: this.#requested, error, stderrTail: this.#stderrTail.lines(), loadFailure: this.#stderrTail.loadFailure(), outOfMemory: this.#outOfMemory() };
    this.#resolveExited(exit);
    this.#options.onExit(this, exit);
  }

  #outOfMemory(): OutOfMemory | undefined {
    if (this.#overMemory || !this.#stderrTail.heapOutOfMemory) return this.#overMemory;
    const limit = this.#options.memoryLimit;
    return { kind: 'heap', limit: limit?.quantity, heapMiB: limit?.heapMiB };
  }
}
