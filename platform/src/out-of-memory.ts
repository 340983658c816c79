// How a replica that went for memory is told apart and reported (OUT_OF_MEMORY), whichever
// driver ran it and whatever stopped it: the memory watchdog, V8's heap limit, the kernel.

import { formatMiB } from './process-limits.js';

export interface OutOfMemory {
  /**
   * 'rss': the memory watchdog killed it over its limit; 'heap': V8 stopped it at its heap
   * limit; 'container': the kernel's OOM killer ended it in its container.
   */
  kind: 'rss' | 'heap' | 'container';
  /** The spec's limit as written ("128Mi"); absent when it set none (V8's own heap default). */
  limit?: string | undefined;
  /** RSS when the watchdog read it over the limit, in bytes. */
  usedBytes?: number | undefined;
  /** V8's old-space limit the driver set from the limit, in MiB. */
  heapMiB?: number | undefined;
  /**
   * 'container' only: false when the container was SIGKILLed under a memory limit but podman did
   * not confirm an OOM kill (State.OOMKilled stays false with runc on some cgroup v1 machines).
   */
  confirmed?: boolean | undefined;
}

/** V8's last words before it aborts for memory: "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory". */
export function isHeapOutOfMemory(stderrLine: string): boolean {
  return /JavaScript heap out of memory|Fatal JavaScript out of memory|Fatal process out of memory/.test(stderrLine);
}

/** The status and log message: "replica hello-3 used 131 MiB, over its 128Mi limit; killed". */
export function describeOutOfMemory(replicaId: string, oom: OutOfMemory): string {
  const limit = oom.limit ? ` ${oom.limit}` : '';
  switch (oom.kind) {
    case 'rss':
      return `replica ${replicaId} used ${formatMiB(oom.usedBytes ?? 0)}, over its${limit} limit; killed`;
    case 'heap':
      return oom.heapMiB !== undefined && oom.limit
        ? `replica ${replicaId} ran out of JavaScript heap (${oom.heapMiB} MiB, set from its ${oom.limit} limit); V8 stopped it`
        : `replica ${replicaId} ran out of JavaScript heap; V8 stopped it`;
    case 'container':
      return oom.confirmed === false
        ? `replica ${replicaId} was killed (SIGKILL, exit 137) under its${limit} memory limit, most likely by the kernel's OOM killer (podman did not confirm it)`
        : `replica ${replicaId} reached its${limit} memory limit; killed by the kernel (OOM)`;
  }
}
