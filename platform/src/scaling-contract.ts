// The gateway <-> autoscaler contract: the per-function samples a gateway reports (in-process, or
// as GET /system/stats over HTTP), and the cold poke the gateway sends when a request finds no
// replica (POST /poke/<name> on an autoscaler replica).

/** One function's traffic over the last collection interval, from one gateway. */
export interface FunctionSample {
  name: string;
  /** Time-weighted mean in-flight requests over the interval. */
  concurrency: number;
  /** Requests that started in the interval. */
  requests: number;
  /**
   * Messages waiting for the function in its event triggers as this gateway last read them: the
   * backlog of the trigger's durable consumer, summed over the function's triggers: its
   * num_pending, the messages not yet delivered to any gateway (those delivered are calls in
   * flight and count as concurrency already; KEDA's lag adds num_ack_pending). Absent when the gateway has no reading
   * for the function (no such trigger, or no recent read): unknown, not 0.
   *
   * Unlike `concurrency` and `requests`, which each gateway measures for its own share of the
   * traffic and the autoscaler sums, every gateway reads the same shared consumer, so the
   * autoscaler combines `pending` across gateways with MAX: two gateways reporting 50 mean 50
   * messages waiting, not 100. Messages both in flight and counted here do not count twice
   * either: the autoscaler scales to the larger of the concurrency and the pending demand, not
   * their sum. A level, not a rate: a scrape does not reset it.
   */
  pending?: number;
  /**
   * Requests waiting in this gateway's queue for the function at the end of the interval (no
   * replica ready, or none with room under containerConcurrency): a level, like `pending`, and
   * summed across gateways (each holds its own queue). Absent from older gateways: unknown.
   */
  queued?: number;
  /** Calls to the function that finished in the interval (weights `serviceMs` across gateways). */
  completed?: number;
  /**
   * The gateway's moving average (EWMA) of the function's upstream service time, ms: how long a
   * call holds its replica, from the lease to its release, so waiting in the queue is not in it.
   * Absent until a call finished. Demand in replicas is arrivals x serviceMs / 1000 / target.
   */
  serviceMs?: number;
  /**
   * How long the interval this sample covers was, ms: about 1 s, more when the reader's ticks
   * drift on a busy machine, and several seconds after a failed or lost scrape (the next one
   * covers the gap). The autoscaler reads `requests` and `completed` as counts over it (a rate
   * per second is count x 1000 / spanMs) and `concurrency` as its mean. Absent: one second.
   */
  spanMs?: number;
}

/**
 * One second from before a reader's first collection, kept in the gateways' rings (see
 * StatsCollection.backfill): the samples of that second from every gateway that had it.
 */
export interface BackfillSecond {
  /** How long before this collection the second ended, ms (>= 0; a multiple of about 1000). */
  ageMs: number;
  samples: FunctionSample[];
  /** Gateways whose samples for this second are in `samples`. */
  answered: number;
}

/**
 * One collection from a source: the samples, and how many of the gateways it reads answered.
 * A gateway that did not answer reported nothing, which is not zero traffic: the autoscaler
 * scales a partial answer up by expected / answered (each gateway carries a like share of the
 * traffic), and files nothing for a second in which none answered (an unknown second).
 * Example: 2 of 3 gateways answer with 100 and 110 in flight -> 210 x 3 / 2 = 315.
 */
export interface StatsCollection {
  samples: FunctionSample[];
  /** Gateways whose samples are in `samples`. */
  answered: number;
  /** Gateways the source meant to read. */
  expected: number;
  /**
   * Only in a reader's first collection from a gateway: that gateway's last stable window of
   * per-second samples, oldest first, so a new autoscaler decides on a full window at once
   * instead of starting blind. Seconds are combined across gateways by age.
   */
  backfill?: BackfillSecond[];
}

/**
 * What the autoscaler needs from a gateway (in-process, or scraped over HTTP). A bare array of
 * samples is one gateway that answered (`{ samples, answered: 1, expected: 1 }`); a collect that
 * throws is one gateway that did not.
 */
export interface StatsSource {
  collect(now: number): StatsCollection | FunctionSample[] | Promise<StatsCollection | FunctionSample[]>;
}

/** The gateway's stats route; answers a StatsReply (stats-counters.ts: cumulative counters) behind the management token. */
export const statsPath = '/system/stats';

/** The autoscaler's poke route (fastify syntax); answers 202 `{ function: name }` behind the token. */
export const pokeRoute = '/poke/:name';

/** pokeRoute for function `name`. */
export function pokePath(name: string): string {
  return `/poke/${encodeURIComponent(name)}`;
}

/**
 * The optional JSON body of a poke: what the poking gateway holds for the function now, so the
 * autoscaler sizes the scale-up to the backlog instead of asking for one replica. An empty body
 * is a poke with nothing known (read as 1 request queued).
 */
export interface PokeBody {
  /** Requests waiting in the gateway's queue for the function. */
  queued?: number;
}

/**
 * Why a function's activation stalled: replicas were asked for and none became ready within the
 * function's p99 start-up (or the nodes have no room), so the autoscaler stops adding replicas.
 * Shown by `fn describe` and on the Function's status; cleared when a replica becomes ready.
 */
export interface ActivationStall {
  /** One sentence, e.g. "no replica became ready within 4.2 s (p99 start-up); 3 asked for". */
  reason: string;
  /** When the stall was declared, ISO 8601. */
  since: string;
}
