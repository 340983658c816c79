// How a spec's `resources` hold a `node` child process: memory through V8's old-space limit (so
// a heap leak stops inside V8) and the RSS ceiling the memory watchdog kills at, CPU through a
// cgroup quota where the machine lets us write one; what cannot be held becomes a deploy warning.

import { openCpuLimiter, type CpuLimiter } from './cpu-cgroup.js';
import { MemoryWatchdog } from './memory-watchdog.js';
import { parseQuantity } from './quantity.js';
import type { FunctionSpec } from './spec.js';

const MiB = 2 ** 20;

/**
 * Memory a replica needs besides its old space, in MiB: node's own code and buffers, V8's young
 * generation (two 16 MiB semi-spaces) and code space. Measured on node 20: RSS is the old space
 * plus 40 to 47 MiB when a heap leak hits the limit.
 */
export const nonHeapReserveMiB = 64;

/** Smallest old space worth starting with, in MiB: runtime-node and a small handler fit in it. */
export const minHeapMiB = 16;

/**
 * The `--max-old-space-size` (MiB) for a replica limited to `limitBytes`: the limit less
 * room for what is not old space, a quarter of the limit or `nonHeapReserveMiB`, whichever
 * is more. Worked examples: 128Mi gives 64 (RSS about 110 MiB when the heap is full, under
 * the limit, so V8 stops a heap leak before the watchdog has to); 1Gi gives 768; 64Mi gives 16
 * (the floor: a limit that small is below what node needs, and deploy warns about it).
 */
export function heapLimitMiB(limitBytes: number): number {
  const limitMiB = Math.floor(limitBytes / MiB);
  const reserve = Math.max(nonHeapReserveMiB, Math.ceil(limitMiB / 4));
  return Math.max(minHeapMiB, limitMiB - reserve);
}

/** What a process replica of a spec is held to; absent fields are not limited. */
export interface ProcessMemoryLimit {
  /** The spec's quantity as written, for messages ("128Mi"). */
  quantity: string;
  /** RSS above this is killed by the memory watchdog, in bytes. */
  bytes: number;
  /** V8's old-space limit, in MiB. */
  heapMiB: number;
}

/** The memory limit of `spec`, or undefined when it sets none. */
export function processMemoryLimit(spec: FunctionSpec): ProcessMemoryLimit | undefined {
  const quantity = spec.resources?.memory;
  if (!quantity) return undefined;
  const bytes = Math.floor(parseQuantity(quantity));
  return { quantity, bytes, heapMiB: heapLimitMiB(bytes) };
}

/** The node flags that hold a replica to its memory limit: its V8 old-space limit. */
export function memoryNodeArgs(limit: ProcessMemoryLimit | undefined): string[] {
  return limit ? [`--max-old-space-size=${limit.heapMiB}`] : [];
}

/** Below this a node replica hardly starts: node itself takes about 45 MiB, in bytes. */
export const smallestUsefulLimitBytes = nonHeapReserveMiB * MiB + minHeapMiB * MiB;

/** Deploy warnings about the memory limit itself (one that node cannot live in). */
export function memoryLimitWarnings(limit: ProcessMemoryLimit | undefined): string[] {
  if (!limit || limit.bytes >= smallestUsefulLimitBytes) return [];
  return [
    `resources.memory ${limit.quantity} is below the ${smallestUsefulLimitBytes / MiB}Mi a node replica needs to run (node alone takes about 45 MiB): replicas may be killed as they start`,
  ];
}

/** "131 MiB", rounded up so a replica just over its limit never reads as at it. */
export function formatMiB(bytes: number): string {
  return `${Math.ceil(bytes / MiB)} MiB`;
}

/** What the limiter needs of a started replica (a ProcessReplica). */
export interface LimitedReplica {
  readonly id: string;
  readonly pid: number | undefined;
  readonly exited: Promise<unknown>;
  /** Kills it for using `usedBytes`, over its limit; its exit then says so. */
  killOverMemory(usedBytes: number): void;
}

/** Holds one process driver's replicas to their limits: one memory watchdog, one cpu cgroup group. */
export class ProcessLimiter {
  readonly #watchdog: MemoryWatchdog;
  readonly #openCpu: () => CpuLimiter;
  #cpu: CpuLimiter | undefined;
  /** The last time the kernel refused to place a replica in its cpu cgroup. */
  #cpuFailure: string | undefined;

  constructor(options: { watchdog?: MemoryWatchdog; openCpu?: () => CpuLimiter } = {}) {
    this.#watchdog = options.watchdog ?? new MemoryWatchdog();
    this.#openCpu = options.openCpu ?? (() => openCpuLimiter());
  }

  /** What of `spec`'s resources this driver does not hold on this machine, one sentence each. */
  warnings(spec: FunctionSpec): string[] {
    const out = memoryLimitWarnings(processMemoryLimit(spec));
    const cpu = spec.resources?.cpu;
    if (cpu) {
      const limiter = this.#cpuLimiter();
      if (!limiter.enforced) out.push(`resources.cpu ${cpu} is not enforced by the process driver on this machine: ${limiter.reason}`);
      else if (this.#cpuFailure) out.push(`resources.cpu ${cpu} may not be enforced: ${this.#cpuFailure}`);
    }
    if (spec.resources?.gpu) out.push(`resources.gpu ${spec.resources.gpu} is not assigned by the process driver: replicas see whatever GPUs the machine has`);
    return out;
  }

  /** Starts holding a replica just spawned to `spec`'s limits, until it is gone. */
  hold(replica: LimitedReplica, spec: FunctionSpec, memory: ProcessMemoryLimit | undefined): void {
    const pid = replica.pid;
    if (pid === undefined) return;
    const releases: (() => void)[] = [];
    if (memory) releases.push(this.#watchdog.watch(pid, memory.bytes, (used) => replica.killOverMemory(used)));
    const cpu = spec.resources?.cpu;
    const limiter = cpu ? this.#cpuLimiter() : undefined;
    if (cpu && limiter?.enforced) {
      try {
        releases.push(limiter.limit(pid, replica.id, parseQuantity(cpu)));
      } catch (err) {
        this.#cpuFailure = `the kernel refused to put replica ${replica.id} in its cpu cgroup: ${(err as Error).message}`;
      }
    }
    if (releases.length) void replica.exited.then(() => releases.forEach((release) => release()));
  }

  /** Call once every replica is gone. Idempotent. */
  close(): void {
    this.#watchdog.close();
    this.#cpu?.close();
  }

  #cpuLimiter(): CpuLimiter {
    this.#cpu ??= this.#openCpu();
    return this.#cpu;
  }
}
