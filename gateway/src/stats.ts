// Per-function in-flight and request counts, averaged over each collection interval: what the
// autoscaler reads from every gateway.

import type { FunctionSample, StatsSource } from '@kubefn/platform';

interface Counter {
  inFlight: number;
  /** In-flight x ms accumulated since `since`. */
  area: number;
  lastChange: number;
  since: number;
  requests: number;
}

export class ConcurrencyStats implements StatsSource {
  readonly #fns = new Map<string, Counter>();
  constructor(private readonly now: () => number = Date.now) {}

  /** A request for `name` arrived (it counts from here, queued or not). */
  begin(name: string): void {
    const c = this.#counter(name);
    this.#advance(c, this.now());
    c.inFlight++;
    c.requests++;
  }

  end(name: string): void {
    const c = this.#fns.get(name);
    if (!c) return;
    this.#advance(c, this.now());
    c.inFlight = Math.max(0, c.inFlight - 1);
  }

  /** In-flight requests per function right now. */
  *inFlightAll(): Iterable<[string, number]> {
    for (const [name, c] of this.#fns) yield [name, c.inFlight];
  }

  inFlight(name: string): number {
    return this.#fns.get(name)?.inFlight ?? 0;
  }

  /** Drops what was counted for `name`: a function deployed again under the name starts from none. */
  forget(name: string): void {
    this.#fns.delete(name);
  }

  /** Mean concurrency and request count per function since the last collect; resets them. */
  collect(now: number): FunctionSample[] {
    const out: FunctionSample[] = [];
    for (const [name, c] of this.#fns) {
      this.#advance(c, now);
      const span = now - c.since;
      const sample = { name, concurrency: span > 0 ? c.area / span : c.inFlight, requests: c.requests };
      out.push(sample);
      c.area = 0;
      c.since = now;
      c.requests = 0;
      // Forget functions that have gone quiet, so the map stays bounded by live traffic.
      if (c.inFlight === 0 && sample.requests === 0 && sample.concurrency === 0) this.#fns.delete(name);
    }
    return out;
  }

  #counter(name: string): Counter {
    let c = this.#fns.get(name);
    if (!c) {
      const t = this.now();
      c = { inFlight: 0, area: 0, lastChange: t, since: t, requests: 0 };
      this.#fns.set(name, c);
    }
    return c;
  }

  #advance(c: Counter, t: number): void {
    if (t > c.lastChange) {
      c.area += c.inFlight * (t - c.lastChange);
      c.lastChange = t;
    }
  }
}
