// CPU time of other processes, from Linux's /proc: what a benchmark reads around a run to report
// CPU per message, a figure that moves much less than a rate on a shared, busy machine.

import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

let ticksPerSecond: number | undefined;

/** User plus system CPU time of process `pid` so far, ms (10 ms steps); undefined when it cannot be read. */
export function cpuMs(pid: number): number | undefined {
  try {
    ticksPerSecond ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces; utime and stime are fields 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / ticksPerSecond;
  } catch {
    return undefined;
  }
}

/** The child processes of `pid`, with their command names. */
export function childrenOf(pid: number): { pid: number; comm: string }[] {
  const out: { pid: number; comm: string }[] = [];
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      for (const child of readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(' ').filter(Boolean)) {
        const comm = readFileSync(`/proc/${child}/comm`, 'utf8').trim();
        out.push({ pid: Number(child), comm });
      }
    }
  } catch {
    // not Linux, or the process went
  }
  return out;
}

/** Reads the CPU time of a fixed set of processes; `since()` gives each one's ms used since the last mark. */
export class CpuMeter<K extends string> {
  readonly #pids: Record<K, number | undefined>;
  #marks: Record<K, number | undefined>;

  constructor(pids: Record<K, number | undefined>) {
    this.#pids = pids;
    this.#marks = this.#read();
  }

  #read(): Record<K, number | undefined> {
    const out = {} as Record<K, number | undefined>;
    for (const k of Object.keys(this.#pids) as K[]) out[k] = this.#pids[k] === undefined ? undefined : cpuMs(this.#pids[k]);
    return out;
  }

  mark(): void {
    this.#marks = this.#read();
  }

  /** CPU ms of each process since the last mark(), or null where it could not be read. */
  since(): Record<K, number | null> {
    const now = this.#read();
    const out = {} as Record<K, number | null>;
    for (const k of Object.keys(now) as K[]) {
      const a = this.#marks[k];
      const b = now[k];
      out[k] = a === undefined || b === undefined ? null : b - a;
    }
    return out;
  }
}
