// One replica of a function as the replica driver sees it, whatever runs it (a child process,
// a container): how it starts, becomes ready, stops, and why it went.

import type { ChildProcess } from 'node:child_process';
import type { ColdStartPath, Endpoint } from './driver.js';
import { LineSplitter } from './log-buffer.js';
import { describeOutOfMemory, isHeapOutOfMemory, type OutOfMemory } from './out-of-memory.js';
import { loadFailedPrefix, parseLoadFailure, type LoadFailure } from './runtime-contract.js';
import type { FunctionSpec } from './spec.js';

export type ReplicaState = 'starting' | 'ready' | 'draining' | 'exited';

export interface ReplicaExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** State the replica was in when it went: 'starting' means it never became ready. */
  phase: ReplicaState;
  /** Set when the driver (not the replica itself) ended it: a stop, or the start timeout. */
  requested: 'stop' | 'start-timeout' | undefined;
  /** Set when the replica could not be started at all. */
  error: Error | undefined;
  /** Last meaningful stderr lines, for failure messages. */
  stderrTail: string[];
  /** What the runtime reported when the handler could not load (its load-failed line). */
  loadFailure?: LoadFailure | undefined;
  /** Set when it went for memory: over its limit (killed), or V8 out of heap. */
  outOfMemory?: OutOfMemory | undefined;
}

export interface Replica {
  readonly id: string;
  /** Order of creation within the function; higher is newer. */
  readonly seq: number;
  /** Identifies the spec this replica runs, so a rolling update can tell old from new. */
  readonly templateKey: string;
  readonly startedAtMs: number;
  readonly state: ReplicaState;
  /** Set once ready. */
  readonly endpoint: Endpoint | undefined;
  readonly readyAtMs: number | undefined;
  /** Resolves once the replica is gone and its output read. */
  readonly exited: Promise<ReplicaExit>;
  /** True once the driver asked it to go (stop or start timeout). */
  readonly stopRequested: boolean;
  /** Asks it to drain, kills it after the drain deadline; resolves when it is gone. */
  stop(): Promise<ReplicaExit>;
  /** Kills it at once (SIGKILL, no drain); resolves nothing itself: `exited` says when it is gone. */
  kill(): void;
  /** For the function's log: "pid 4242", "container kubefn-hello-3". */
  describe(): string;
}

/** What the driver hands a launcher for each replica it starts. */
export interface ReplicaStart {
  id: string;
  seq: number;
  templateKey: string;
  spec: FunctionSpec;
  startTimeoutMs: number;
  /** Time a stopping replica gets to finish its calls before it is killed. */
  drainMs: number;
  onLine(replica: Replica, stream: 'stdout' | 'stderr', text: string): void;
  onReady(replica: Replica): void;
  /** The replica stopped taking calls before the driver asked: it is draining, or it is gone. */
  onUnroutable(replica: Replica, why: 'draining' | 'exited'): void;
  /** Called exactly once, also when the replica could not be started. */
  onExit(replica: Replica, exit: ReplicaExit): void;
}

/** How one kind of replica is started. `A` is what a spec resolves to: a bundle file, an image. */
export interface ReplicaLauncher<A> {
  /** How `spec`'s replicas start from zero, for launchers with a warm pool (FunctionStatus.coldStart). */
  coldStartPath?(spec: FunctionSpec): ColdStartPath | undefined;
  /** The driver kind: "process", "podman". */
  readonly kind: string;
  /** Resolves what replicas of `spec` run, or throws the KubefnError that says why it cannot. */
  prepare(spec: FunctionSpec): Promise<A>;
  start(artifact: A, start: ReplicaStart): Replica;
  /**
   * Called after a replica of `spec` failed: checks that what it ran from is still sound (a
   * stored bundle still matches its digest), repairing what it can; throws the KubefnError that
   * says what is wrong otherwise, which the status then shows.
   */
  check?(spec: FunctionSpec): Promise<void>;
  /** Called once a function is removed and its replicas are gone, to drop what prepare() left. */
  forget?(name: string): Promise<void>;
  /** Called once after the driver stopped every replica. */
  close?(): Promise<void>;
  /** What of `spec` (its resources) this launcher cannot enforce here; shown at deploy. */
  warnings?(spec: FunctionSpec): string[];
}

const stderrTailLines = 20;

/** Keeps the last stderr lines that say what went wrong, not the stack frames and banner around them. */
export class StderrTail {
  readonly #lines: string[] = [];
  #loadFailure: LoadFailure | undefined;
  #heapOutOfMemory = false;

  add(text: string): void {
    // Seen once, even if the native stack V8 prints after it pushes it out of the tail.
    if (isHeapOutOfMemory(text)) this.#heapOutOfMemory = true;
    if (text.startsWith(loadFailedPrefix)) {
      this.#loadFailure ??= parseLoadFailure(text);
      return;
    }
    const t = text.trim();
    if (!t || /^at\s/.test(t) || /^Node\.js v\d/.test(t) || /^\^+$/.test(t)) return;
    this.#lines.push(t.length > 500 ? `${t.slice(0, 500)}...` : t);
    if (this.#lines.length > stderrTailLines) this.#lines.shift();
  }

  lines(): string[] {
    return [...this.#lines];
  }

  /** The runtime's load-failed report, when it wrote one. */
  loadFailure(): LoadFailure | undefined {
    return this.#loadFailure;
  }

  /** V8 wrote "JavaScript heap out of memory" before the process went. */
  get heapOutOfMemory(): boolean {
    return this.#heapOutOfMemory;
  }
}

/** "exited with code 3", "was killed by SIGKILL", "could not be started: spawn node ENOENT". */
export function describeExit(exit: ReplicaExit): string {
  if (exit.error) return `could not be started: ${exit.error.message}`;
  if (exit.signal) return `was killed by ${exit.signal}`;
  return `exited with code ${exit.code ?? 'unknown'}`;
}

/**
 * Why a replica the driver did not stop has gone: LOAD_FAILED if the runtime reported that the
 * handler cannot load (with its message and source location), START_FAILED if it never became
 * ready otherwise (with the last stderr lines, which usually hold the error), REPLICA_FAILED if
 * it crashed later, OUT_OF_MEMORY if it went for memory (whatever its phase).
 */
export function describeFailure(
  replica: Pick<Replica, 'id'>,
  exit: ReplicaExit,
  startTimeoutMs: number,
  upMs: number | undefined,
): { code: 'LOAD_FAILED' | 'START_FAILED' | 'REPLICA_FAILED' | 'OUT_OF_MEMORY'; message: string; location?: string } {
  if (exit.outOfMemory && exit.requested === undefined) return { code: 'OUT_OF_MEMORY', message: describeOutOfMemory(replica.id, exit.outOfMemory) };
  if (exit.loadFailure && exit.phase === 'starting' && exit.requested === undefined) {
    const f = exit.loadFailure;
    const what = f.stage === 'init' ? 'init() threw' : f.stage === 'export' ? 'the handler module is not usable' : 'the handler module threw while loading';
    return {
      code: 'LOAD_FAILED',
      message: `replica ${replica.id}: ${what}: ${f.message}${f.location ? ` (at ${f.location})` : ''}`,
      ...(f.location ? { location: f.location } : {}),
    };
  }
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

export function isPort(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value > 0 && value < 65536;
}

/** How long to wait after 'exit' for the last stdio bytes (a grandchild may hold the pipes open). */
const stdioFlushMs = 1000;

export interface ChildWatch {
  /** One line of the child's stdout or stderr. */
  line(stream: 'stdout' | 'stderr', text: string): void;
  /** The process is gone; its last output may still be arriving. */
  exited?(code: number | null, signal: NodeJS.Signals | null): void;
  /** The process is gone and its output read (or the flush deadline passed). Called once. */
  done(code: number | null, signal: NodeJS.Signals | null, error: Error | undefined): void;
}

/** Reads a replica's child process (piped stdout and stderr) line by line until it is gone. */
export function watchChild(child: ChildProcess, watch: ChildWatch): void {
  const out = new LineSplitter((text) => watch.line('stdout', text));
  const err = new LineSplitter((text) => watch.line('stderr', text));
  child.stdout!.on('data', (chunk: Buffer) => out.write(chunk));
  child.stderr!.on('data', (chunk: Buffer) => err.write(chunk));
  // 'error' with no pid means spawn failed and no 'exit' will follow; later errors (a failed
  // kill of a process that is already gone) are harmless.
  child.on('error', (error) => {
    if (child.pid === undefined) watch.done(null, null, error);
  });
  child.on('exit', (code, signal) => {
    watch.exited?.(code, signal);
    let flushed = false;
    const flush = (): void => {
      if (flushed) return;
      flushed = true;
      clearTimeout(timer);
      out.end();
      err.end();
      watch.done(code, signal, undefined);
    };
    const timer = setTimeout(flush, stdioFlushMs);
    child.once('close', flush);
  });
}
