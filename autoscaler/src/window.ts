// A bounded series of 1-second metric buckets and the averages the decider reads.

/** One second of one function's traffic, as a gateway measured it. */
export interface Bucket {
  /** Start of the second, ms since the epoch (a multiple of 1000). */
  t: number;
  /** Time-weighted mean of in-flight requests over the second. */
  concurrency: number;
  /** Requests that started in the second. */
  requests: number;
  /** Messages waiting in the function's event triggers; undefined when no gateway read them. */
  pending?: number;
}

/**
 * Keeps the buckets of the last `capacityMs` and averages over the most recent part.
 * Several gateways add into the same second: their concurrency and requests sum, as each saw a
 * share of the traffic; their pending counts take the max, as all read the same consumer.
 */
export class MetricWindow {
  #buckets: Bucket[] = [];
  constructor(private readonly capacityMs: number) {}

  /** `pending` undefined: no reading this time, which leaves the second's pending as it was. */
  add(t: number, concurrency: number, requests: number, pending?: number): void {
    const second = Math.floor(t / 1000) * 1000;
    const last = this.#buckets.at(-1);
    const fold = (b: Bucket) => {
      b.concurrency += concurrency;
      b.requests += requests;
      if (pending !== undefined) b.pending = Math.max(b.pending ?? 0, pending);
    };
    if (last && last.t === second) {
      fold(last);
    } else if (!last || second > last.t) {
      this.#buckets.push(pending === undefined ? { t: second, concurrency, requests } : { t: second, concurrency, requests, pending });
    } else {
      // A late sample for an older second: fold it into that second if kept.
      const b = this.#buckets.find((x) => x.t === second);
      if (b) fold(b);
    }
    const oldest = second - this.capacityMs;
    while (this.#buckets.length > 0 && this.#buckets[0]!.t <= oldest) this.#buckets.shift();
  }

  /**
   * Mean per second over the buckets in (now - windowMs, now], or undefined with no data.
   * A window that started recently averages over the seconds it has, as Knative does:
   * 3 s of data at concurrency 10 in a 60 s window gives 10, not 0.5.
   */
  average(now: number, windowMs: number, metric: 'concurrency' | 'rps'): number | undefined {
    const from = now - windowMs;
    let sum = 0;
    let first = Infinity;
    let n = 0;
    for (const b of this.#buckets) {
      if (b.t <= from || b.t > now) continue;
      sum += metric === 'concurrency' ? b.concurrency : b.requests;
      first = Math.min(first, b.t);
      n++;
    }
    if (n === 0) return undefined;
    // Seconds without a bucket inside the covered span count as zero traffic.
    const span = Math.max(n, Math.floor((now - first) / 1000) + 1);
    return sum / Math.min(span, Math.ceil(windowMs / 1000));
  }

  /**
   * Mean of the pending readings in (now - windowMs, now], or undefined with none. Pending is a
   * level, so a second without a reading is unknown and left out, not counted as zero: readings
   * of 40, none, 20 average 30.
   */
  pendingAverage(now: number, windowMs: number): number | undefined {
    const from = now - windowMs;
    let sum = 0;
    let n = 0;
    for (const b of this.#buckets) {
      if (b.t <= from || b.t > now || b.pending === undefined) continue;
      sum += b.pending;
      n++;
    }
    return n === 0 ? undefined : sum / n;
  }

  /** The newest pending reading in (now - withinMs, now], or undefined with none that recent. */
  pendingLatest(now: number, withinMs: number): number | undefined {
    for (let i = this.#buckets.length - 1; i >= 0; i--) {
      const b = this.#buckets[i]!;
      if (b.t > now) continue;
      if (b.t <= now - withinMs) return undefined;
      if (b.pending !== undefined) return b.pending;
    }
    return undefined;
  }

  /** How long this window has held data at `now`, in ms (0 when empty). */
  observedMs(now: number): number {
    const first = this.#buckets[0];
    return first ? Math.max(0, now - first.t) : 0;
  }

  get size(): number {
    return this.#buckets.length;
  }
}
