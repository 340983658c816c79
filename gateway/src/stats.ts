// Per-function in-flight and request counts, averaged over each collection interval, and the
// messages waiting in each function's event triggers: what the autoscaler reads from every gateway.

import type { FunctionSample, StatsCollection, StatsSource } from '@kubefn/platform';

interface Counter {
  inFlight: number;
  /** In-flight x ms accumulated since `since`. */
  area: number;
  lastChange: number;
  since: number;
  requests: number;
}

export interface ConcurrencyStatsOptions {
  /**
   * A pending count not set again within this long is no longer reported, ms (default 30 000):
   * a reader that stopped leaves the count unknown rather than holding the function up forever.
   */
  pendingMaxAgeMs?: number;
}

export class ConcurrencyStats implements StatsSource {
  readonly #fns = new Map<string, Counter>();
  /** Messages waiting per function, and when they were read (this.now()). */
  readonly #pending = new Map<string, { messages: number; at: number }>();
  readonly #pendingMaxAgeMs: number;

  constructor(
    private readonly now: () => number = Date.now,
    options: ConcurrencyStatsOptions = {},
  ) {
    this.#pendingMaxAgeMs = options.pendingMaxAgeMs ?? 30_000;
  }

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

  /**
   * The messages waiting for `name` in its event triggers, as just read by whoever watches them
   * (for JetStream: num_pending + num_ack_pending of its durable consumers, summed over the
   * function's triggers). Reported in every collect as `pending` until set again, cleared with
   * `undefined`, or older than `pendingMaxAgeMs`. Throws a RangeError on a count that is not a
   * non-negative finite number.
   */
  setPending(name: string, messages: number | undefined): void {
    if (messages === undefined) {
      this.#pending.delete(name);
      return;
    }
    if (!Number.isFinite(messages) || messages < 0) throw new RangeError(`pending messages for ${name} must be a non-negative number (got ${messages})`);
    this.#pending.set(name, { messages, at: this.now() });
  }

  /** Drops what was counted for `name`: a function deployed again under the name starts from none. */
  forget(name: string): void {
    this.#fns.delete(name);
    this.#pending.delete(name);
  }

  /**
   * Mean concurrency and request count per function since the last collect, which resets them;
   * and the pending count where one is known, which a collect leaves as it is (a level, not a
   * count of the interval). In process, this gateway always answers: answered = expected = 1.
   */
  collect(now: number): StatsCollection {
    return { samples: this.#take(now), answered: 1, expected: 1 };
  }

  #take(now: number): FunctionSample[] {
    const out: FunctionSample[] = [];
    const pending = new Map<string, number>();
    for (const [name, p] of this.#pending) {
      if (now - p.at > this.#pendingMaxAgeMs) this.#pending.delete(name);
      else pending.set(name, p.messages);
    }
    for (const [name, c] of this.#fns) {
      this.#advance(c, now);
      const span = now - c.since;
      const sample: FunctionSample = { name, concurrency: span > 0 ? c.area / span : c.inFlight, requests: c.requests };
      const p = pending.get(name);
      if (p !== undefined) {
        sample.pending = p;
        pending.delete(name);
      }
      out.push(sample);
      c.area = 0;
      c.since = now;
      c.requests = 0;
      // Forget functions that have gone quiet, so the map stays bounded by live traffic.
      if (c.inFlight === 0 && sample.requests === 0 && sample.concurrency === 0) this.#fns.delete(name);
    }
    // Messages waiting for a function with no calls here.
    for (const [name, p] of pending) out.push({ name, concurrency: 0, requests: 0, pending: p });
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
