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
}

/** What the autoscaler needs from a gateway (in-process, or scraped over HTTP). */
export interface StatsSource {
  collect(now: number): FunctionSample[] | Promise<FunctionSample[]>;
}

/** The gateway's stats route; answers `{ samples: FunctionSample[] }` behind the management token. */
export const statsPath = '/system/stats';

/** The autoscaler's poke route (fastify syntax); answers 202 `{ function: name }` behind the token. */
export const pokeRoute = '/poke/:name';

/** pokeRoute for function `name`. */
export function pokePath(name: string): string {
  return `/poke/${encodeURIComponent(name)}`;
}
