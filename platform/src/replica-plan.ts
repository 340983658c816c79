// Pure replica decisions for drivers that manage replicas themselves: which to start and stop
// (scaling and rolling updates), and how long to back off after crashes.

export interface ReplicaView {
  id: string;
  /** Creation order within the function; higher is newer. */
  seq: number;
  /** Runs the function's current spec (false: left from before an update). */
  current: boolean;
  ready: boolean;
}

export interface ReplicaPlan {
  /** How many current-spec replicas to start. */
  start: number;
  /** Replicas to stop, in the order to stop them. */
  stop: string[];
}

/**
 * Moves the replicas towards `desired` running the current spec. During a rolling update an old
 * replica is kept while it stands in for a current one that is not ready yet, so a function
 * that had ready replicas never drops to zero. Old replicas that are not ready help nobody and go.
 *
 * Example: desired 2, old A and B ready, current C ready and D starting -> keep one old (2 - 1
 * ready current), stop the newer of A and B.
 */
export function planReplicas(desired: number, replicas: readonly ReplicaView[]): ReplicaPlan {
  const current = replicas.filter((r) => r.current);
  const old = replicas.filter((r) => !r.current);
  const stop: string[] = [];

  // Surplus current replicas: not-ready ones first (they serve nothing yet), then the newest.
  const byStopPreference = [...current].sort((a, b) => Number(a.ready) - Number(b.ready) || b.seq - a.seq);
  const surplus = Math.max(0, current.length - desired);
  const stopping = new Set(byStopPreference.slice(0, surplus).map((r) => r.id));
  stop.push(...stopping);
  const keptCurrent = current.filter((r) => !stopping.has(r.id));
  const start = Math.max(0, desired - keptCurrent.length);

  const currentReady = keptCurrent.filter((r) => r.ready).length;
  const keepOld = Math.max(0, desired - currentReady);
  const oldReady = old.filter((r) => r.ready).sort((a, b) => a.seq - b.seq);
  stop.push(...old.filter((r) => !r.ready).map((r) => r.id));
  stop.push(...oldReady.slice(keepOld).reverse().map((r) => r.id));
  return { start, stop };
}

export interface CrashBackoff {
  /** Crashes or failed starts in a row. */
  failures: number;
  /** Earliest time (epoch ms) the next replica may start. */
  nextStartAtMs: number;
}

export const crashBackoffBaseMs = 100;
export const crashBackoffMaxMs = 10_000;
/** A replica that stayed ready this long ends a crash streak. */
export const crashResetAfterMs = 10_000;

/**
 * The backoff after a replica died on its own. `upMs` is how long it had been ready (undefined
 * if it never was). 100 ms after the first failure, doubling to 10 s: 100, 200, 400, ... 10000.
 */
export function nextBackoff(previous: CrashBackoff, upMs: number | undefined, nowMs: number): CrashBackoff & { delayMs: number } {
  const streak = upMs !== undefined && upMs >= crashResetAfterMs ? 0 : previous.failures;
  const failures = streak + 1;
  const delayMs = Math.min(crashBackoffMaxMs, crashBackoffBaseMs * 2 ** Math.min(failures - 1, 20));
  return { failures, nextStartAtMs: nowMs + delayMs, delayMs };
}
