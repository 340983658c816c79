// A function's metric window: a fixed ring of one-second slots and the averages the decider reads,
// each in constant time.

/**
 * Values are kept in thousandths (a concurrency of 1.2345 is kept as 1235), as whole numbers, so
 * the sums below are exact: no rounding drift, and a window of zeros averages exactly 0.
 */
const unitsPerValue = 1000;
/** Sums are rebased before they pass this, well inside the 2^53 of exact whole numbers. */
const rebaseAbove = 2 ** 50;

const quantize = (v: number) => Math.round(v * unitsPerValue);

/**
 * Keeps the seconds of the last `capacityMs` and averages over the most recent part of them.
 *
 * A second is known once a sample was added for it, and unknown otherwise (a failed scrape, the
 * autoscaler not yet running): unknown seconds are left out of the averages, not counted as zero.
 * Several gateways add into the same second: their concurrency and requests sum, as each saw a
 * share of the traffic; their pending counts take the max, as all read the same consumer.
 *
 * Layout: per slot, the running sums (since the window began) of concurrency, requests and known
 * seconds up to and including that second, so the sum over any span the ring holds is one
 * subtraction. `capacity + 1` slots: the slot before the oldest second anchors its sum.
 * A 60 s window is 61 x (2 x 8 + 2) bytes, about 1.1 KB; pending readings take another
 * 61 x 10 bytes, allocated for the functions that have them.
 */
export class MetricWindow {
  #slots: number;
  /** Running sums: concurrency at [i], requests at [slots + i]. */
  #sums: Float64Array;
  /** Running count of known seconds, modulo 2^16 (differences stay exact: they are <= slots). */
  #known: Uint16Array;
  /** Running sum of pending readings, and of the seconds that have one; undefined until one. */
  #pending: Float64Array | undefined;
  #pendingKnown: Uint16Array | undefined;
  /** The newest second the ring holds (seconds since the epoch); undefined while empty. */
  #latest: number | undefined;
  /** The first known second ever, in ms. */
  #firstKnownMs: number | undefined;

  constructor(capacityMs: number) {
    this.#slots = slotsFor(capacityMs);
    this.#sums = new Float64Array(2 * this.#slots);
    this.#known = new Uint16Array(this.#slots);
  }

  /** How long a span the window keeps, ms. */
  get capacityMs(): number {
    return (this.#slots - 1) * 1000;
  }

  /**
   * Keeps `capacityMs` from now on: the seconds both sizes hold are kept, older ones dropped.
   */
  resize(capacityMs: number): void {
    const slots = slotsFor(capacityMs);
    if (slots === this.#slots) return;
    const sums = new Float64Array(2 * slots);
    const known = new Uint16Array(slots);
    const pending = this.#pending && new Float64Array(slots);
    const pendingKnown = this.#pendingKnown && new Uint16Array(slots);
    if (this.#latest !== undefined) {
      // Seconds older than the old ring held take its oldest slot's sums: unknown, no traffic.
      for (let k = 0; k < slots; k++) {
        const s = this.#latest - k;
        const from = mod(this.#latest - Math.min(k, this.#slots - 1), this.#slots);
        const to = mod(s, slots);
        sums[to] = this.#sums[from]!;
        sums[slots + to] = this.#sums[this.#slots + from]!;
        known[to] = this.#known[from]!;
        if (pending) pending[to] = this.#pending![from]!;
        if (pendingKnown) pendingKnown[to] = this.#pendingKnown![from]!;
      }
    }
    this.#slots = slots;
    this.#sums = sums;
    this.#known = known;
    this.#pending = pending;
    this.#pendingKnown = pendingKnown;
  }

  /**
   * Makes the second of `t` known and adds the sample to it. `pending` undefined: no reading this
   * time, which leaves the second's pending as it was. A sample for a second older than the ring
   * holds is dropped.
   */
  add(t: number, concurrency: number, requests: number, pending?: number): void {
    const s = Math.floor(t / 1000);
    if (this.#latest === undefined) {
      // Everything before the first second is unknown, with sums of 0.
      this.#latest = s - 1;
    }
    if (s > this.#latest) this.#advanceTo(s);
    const latest = this.#latest!;
    // The slot before `s` anchors its sum, so it must still be in the ring.
    if (s <= latest - this.#slots + 1) return;
    const n = this.#slots;
    const c = quantize(concurrency);
    const r = quantize(requests);
    const newlyKnown = this.#known[mod(s, n)]! !== this.#known[mod(s - 1, n)]! ? 0 : 1;
    if (this.#firstKnownMs === undefined || s * 1000 < this.#firstKnownMs) this.#firstKnownMs = s * 1000;
    let pendingDelta = 0;
    let pendingNewlyKnown = 0;
    if (pending !== undefined) {
      if (!this.#pending) {
        this.#pending = new Float64Array(n);
        this.#pendingKnown = new Uint16Array(n);
      }
      const p = quantize(pending);
      const had = this.#pendingKnown![mod(s, n)]! !== this.#pendingKnown![mod(s - 1, n)]!;
      const old = had ? this.#pending[mod(s, n)]! - this.#pending[mod(s - 1, n)]! : 0;
      pendingDelta = had ? Math.max(0, p - old) : p;
      pendingNewlyKnown = had ? 0 : 1;
    }
    // Usually s is the newest second and this is one slot; a late sample also moves the sums after it.
    for (let k = s; k <= latest; k++) {
      const i = mod(k, n);
      this.#sums[i] = this.#sums[i]! + c;
      this.#sums[n + i] = this.#sums[n + i]! + r;
      this.#known[i] = this.#known[i]! + newlyKnown;
      if (this.#pending) {
        this.#pending[i] = this.#pending[i]! + pendingDelta;
        this.#pendingKnown![i] = this.#pendingKnown![i]! + pendingNewlyKnown;
      }
    }
  }

  /**
   * Mean per known second over (now - windowMs, now], or undefined with no known second there.
   * A window that started recently averages over the seconds it has, as Knative does: 3 s of data
   * at concurrency 10 in a 60 s window gives 10, not 0.5; seconds without a sample are left out.
   */
  average(now: number, windowMs: number, metric: 'concurrency' | 'rps'): number | undefined {
    const span = this.#span(now, windowMs);
    if (!span) return undefined;
    const known = this.#knownBetween(span.lo, span.hi);
    if (known === 0) return undefined;
    const offset = metric === 'concurrency' ? 0 : this.#slots;
    const sum = this.#sums[offset + mod(span.hi, this.#slots)]! - this.#sums[offset + mod(span.lo - 1, this.#slots)]!;
    return sum / unitsPerValue / known;
  }

  /** Known seconds in (now - windowMs, now]. */
  knownSeconds(now: number, windowMs: number): number {
    const span = this.#span(now, windowMs);
    return span ? this.#knownBetween(span.lo, span.hi) : 0;
  }

  /**
   * The share (0..1) of the seconds in (now - windowMs, now] that are known, counting from the
   * first known second: a window that began 2 s ago with 2 known seconds is fully covered, as
   * the seconds before its history are not missing data. 0 before any sample.
   */
  coverage(now: number, windowMs: number): number {
    if (this.#firstKnownMs === undefined) return 0;
    const from = Math.max(Math.floor((now - windowMs) / 1000) + 1, this.#firstKnownMs / 1000);
    const seconds = Math.floor(now / 1000) - from + 1;
    return seconds > 0 ? Math.min(1, this.knownSeconds(now, windowMs) / seconds) : 0;
  }

  /**
   * Mean of the pending readings in (now - windowMs, now], or undefined with none. Pending is a
   * level, so a second without a reading is unknown and left out, not counted as zero: readings
   * of 40, none, 20 average 30.
   */
  pendingAverage(now: number, windowMs: number): number | undefined {
    const span = this.#pending && this.#span(now, windowMs);
    if (!span) return undefined;
    const n = this.#slots;
    const known = (this.#pendingKnown![mod(span.hi, n)]! - this.#pendingKnown![mod(span.lo - 1, n)]!) & 0xffff;
    if (known === 0) return undefined;
    return (this.#pending![mod(span.hi, n)]! - this.#pending![mod(span.lo - 1, n)]!) / unitsPerValue / known;
  }

  /** The newest pending reading in (now - withinMs, now], or undefined with none that recent. */
  pendingLatest(now: number, withinMs: number): number | undefined {
    const span = this.#pending && this.#span(now, withinMs);
    if (!span) return undefined;
    const n = this.#slots;
    // Walks back over the seconds without a reading: at most the panic window's few.
    for (let s = span.hi; s >= span.lo; s--) {
      if (this.#pendingKnown![mod(s, n)] !== this.#pendingKnown![mod(s - 1, n)]) {
        return (this.#pending![mod(s, n)]! - this.#pending![mod(s - 1, n)]!) / unitsPerValue;
      }
    }
    return undefined;
  }

  /** How long this window has held data at `now`, in ms, from its first known second (0 when none). */
  observedMs(now: number): number {
    return this.#firstKnownMs === undefined ? 0 : Math.max(0, now - this.#firstKnownMs);
  }

  /** When the first known second began, ms; undefined before any sample. */
  get firstKnownMs(): number | undefined {
    return this.#firstKnownMs;
  }

  /** Known seconds the ring holds now. */
  get size(): number {
    if (this.#latest === undefined) return 0;
    return this.#knownBetween(this.#latest - this.#slots + 2, this.#latest);
  }

  /** Bytes of the typed arrays behind this window. */
  get bytes(): number {
    return this.#sums.byteLength + this.#known.byteLength + (this.#pending?.byteLength ?? 0) + (this.#pendingKnown?.byteLength ?? 0);
  }

  /** The seconds lo..hi of (now - windowMs, now] that the ring holds, or undefined if none. */
  #span(now: number, windowMs: number): { lo: number; hi: number } | undefined {
    if (this.#latest === undefined) return undefined;
    const hi = Math.min(Math.floor(now / 1000), this.#latest);
    const lo = Math.max(Math.floor((now - windowMs) / 1000) + 1, this.#latest - this.#slots + 2);
    return hi >= lo ? { lo, hi } : undefined;
  }

  #knownBetween(lo: number, hi: number): number {
    return (this.#known[mod(hi, this.#slots)]! - this.#known[mod(lo - 1, this.#slots)]!) & 0xffff;
  }

  /** Moves the ring on to second `s`: the seconds in between are unknown (their sums carry over). */
  #advanceTo(s: number): void {
    const n = this.#slots;
    const latest = this.#latest!;
    const from = mod(latest, n);
    const c = this.#sums[from]!;
    const r = this.#sums[n + from]!;
    const k = this.#known[from]!;
    const p = this.#pending?.[from] ?? 0;
    const pk = this.#pendingKnown?.[from] ?? 0;
    for (let x = Math.max(latest + 1, s - n + 1); x <= s; x++) {
      const i = mod(x, n);
      this.#sums[i] = c;
      this.#sums[n + i] = r;
      this.#known[i] = k;
      if (this.#pending) {
        this.#pending[i] = p;
        this.#pendingKnown![i] = pk;
      }
    }
    this.#latest = s;
    if (c > rebaseAbove || r > rebaseAbove || p > rebaseAbove) this.#rebase();
  }

  /** Takes the oldest slot's sums off every slot: the differences, all the averages read, stay. */
  #rebase(): void {
    const n = this.#slots;
    const oldest = mod(this.#latest! + 1, n);
    const c = this.#sums[oldest]!;
    const r = this.#sums[n + oldest]!;
    const p = this.#pending?.[oldest] ?? 0;
    for (let i = 0; i < n; i++) {
      this.#sums[i] = this.#sums[i]! - c;
      this.#sums[n + i] = this.#sums[n + i]! - r;
      if (this.#pending) this.#pending[i] = this.#pending[i]! - p;
    }
  }
}

function slotsFor(capacityMs: number): number {
  if (!(capacityMs >= 1000) || !Number.isFinite(capacityMs)) throw new RangeError(`a metric window keeps at least 1 s (got ${capacityMs} ms)`);
  return Math.ceil(capacityMs / 1000) + 1;
}

function mod(a: number, n: number): number {
  const m = a % n;
  return m < 0 ? m + n : m;
}
