// A gateway's cumulative per-function counters, and how a reader turns two readings of them into
// the per-interval FunctionSamples of the scaling contract. Counters only grow, so reading them
// takes nothing from anyone: each reader keeps its own previous reading and takes differences.

import type { BackfillSecond, FunctionSample } from './scaling-contract.js';

/** One function's counters in one gateway: cumulative since the counters' life `gen` began, plus levels. */
export interface FunctionCounters {
  name: string;
  /**
   * Which life of the function's counters this is in the gateway instance: a new number each time
   * they start again from zero (the function was forgotten, or dropped after going quiet). A
   * reader whose previous reading has another `gen` counts from zero. 0: no counters (pending only).
   */
  gen: number;
  /** Requests started (cumulative). */
  requests: number;
  /** In-flight requests x ms, time-weighted (cumulative): its delta over an interval / the interval's ms = mean in flight. */
  inFlightMs: number;
  /** Calls that released their replica (cumulative): the calls `serviceMs` is measured on. */
  completed: number;
  /** Requests in flight now, queued ones included (a level). */
  inFlight: number;
  /** Requests waiting in the gateway's queue now (a level); absent when the gateway does not know. */
  queued?: number;
  /** Moving average of the time a call holds its replica, ms (a level); absent until a call finished. */
  serviceMs?: number;
  /** Trigger messages waiting (a level), as FunctionSample.pending. */
  pending?: number;
}

/** A gateway's counters at one moment of its own clock. */
export interface CountersReading {
  /** The gateway's clock when read, ms. */
  now: number;
  functions: FunctionCounters[];
}

/**
 * The reply of GET /system/stats: the counters, which gateway process they come from and the
 * how-manieth reply this is. `instance` is random per process start: a new one is a restarted
 * gateway whose counters began again from zero. `seq` rises by one with every reply, so a reply
 * that arrives late (seq not above the last one read) is told from a new one.
 */
export interface StatsReply extends CountersReading {
  instance: string;
  seq: number;
  /** Only when asked for (`?history=1`): the gateway's ring of recent seconds. */
  history?: StatsHistory;
}

/** A gateway's last seconds, for a reader reading it for the first time. */
export interface StatsHistory {
  /**
   * The counters at the end of the newest second in `seconds`: a first reader's baseline, so its
   * first interval runs from there to the reply and meets the ring without a gap or an overlap.
   */
  base: CountersReading;
  /** Oldest first; ageMs is how long before the reply's `now` each second ended; answered is 1. */
  seconds: BackfillSecond[];
}

/** Query parameter of GET /system/stats that asks for `history`. */
export const statsHistoryParam = 'history';

/**
 * The samples of the interval between two readings of one gateway: requests and completed are the
 * counters' deltas, concurrency the in-flight area's delta over the elapsed ms (a reply lost in
 * between makes a longer interval, so its mean is over the real elapsed time and its counts are
 * whole), and queued, serviceMs and pending the levels of `cur`. A function whose `gen` differs
 * from `prev`'s, or that is missing from `prev`, or whose counters went backwards, counts from
 * zero. A function is reported when it had traffic or a level in the interval, or was reported
 * as active in the previous interval (`wasActive`), so the drop to quiet is seen once; the names
 * active in this interval come back as `active` for the next call.
 *
 * Example: prev {now 1000, requests 10, inFlightMs 4000}, cur {now 3000, requests 16, inFlightMs
 * 9000} (the reply at 2000 was lost) -> requests 6, concurrency (9000 - 4000) / 2000 = 2.5.
 */
export function intervalSamples(
  prev: CountersReading,
  cur: CountersReading,
  wasActive: ReadonlySet<string> = new Set(),
): { samples: FunctionSample[]; active: Set<string> } {
  const before = new Map(prev.functions.map((f) => [f.name, f]));
  const elapsed = cur.now - prev.now;
  const samples: FunctionSample[] = [];
  const active = new Set<string>();
  for (const f of cur.functions) {
    let p = before.get(f.name);
    if (p && (p.gen !== f.gen || f.requests < p.requests || f.inFlightMs < p.inFlightMs || f.completed < p.completed)) p = undefined;
    const requests = f.requests - (p?.requests ?? 0);
    const completed = f.completed - (p?.completed ?? 0);
    const area = f.inFlightMs - (p?.inFlightMs ?? 0);
    const concurrency = elapsed > 0 ? area / elapsed : f.inFlight;
    const busy = requests > 0 || completed > 0 || concurrency > 0 || f.inFlight > 0 || (f.queued ?? 0) > 0 || f.pending !== undefined;
    if (busy) active.add(f.name);
    if (!busy && !wasActive.has(f.name)) continue;
    const sample: FunctionSample = { name: f.name, concurrency, requests, completed };
    // Every interval says how long it was: ticks drift past 1 s on a busy machine (1.2 s of
    // arrivals read as one second would overstate the rate by a fifth), and a lost reply or a
    // slow scrape spans several seconds.
    if (elapsed > 0 && elapsed !== 1000) sample.spanMs = elapsed;
    if (f.queued !== undefined) sample.queued = f.queued;
    if (f.serviceMs !== undefined) sample.serviceMs = f.serviceMs;
    if (f.pending !== undefined) sample.pending = f.pending;
    samples.push(sample);
  }
  return { samples, active };
}
