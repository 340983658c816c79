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
}

/**
 * What the autoscaler needs from a gateway (in-process, or scraped over HTTP). A bare array of
 * samples is one gateway that answered (`{ samples, answered: 1, expected: 1 }`); a collect that
 * throws is one gateway that did not.
 */
export interface StatsSource {
  collect(now: number): StatsCollection | FunctionSample[] | Promise<StatsCollection | FunctionSample[]>;
}

/** The gateway's stats route; answers `{ samples: FunctionSample[] }` behind the management token. */
export const statsPath = '/system/stats';

/** The autoscaler's poke route (fastify syntax); answers 202 `{ function: name }` behind the token. */
export const pokeRoute = '/poke/:name';

/** pokeRoute for function `name`. */
export function pokePath(name: string): string {
  return `/poke/${encodeURIComponent(name)}`;
}
