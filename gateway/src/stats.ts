// What the autoscaler reads from every gateway: per function, monotonic counters of requests, of
// in-flight x time and of completed calls, the levels in flight, queued and pending, and a moving
// average of service time; and a ring of the last seconds for a reader that starts late. Reading
// changes nothing: each reader (StatsReader, or an HTTP scraper of GET /system/stats) keeps its
// own previous reading and takes differences, so two readers see the same traffic.

import { randomUUID } from 'node:crypto';
import {
  intervalSamples,
  type BackfillSecond,
  type CountersReading,
  type FunctionCounters,
  type FunctionSample,
  type StatsCollection,
  type StatsReply,
  type StatsSource,
} from '@kubefn/platform';

interface Counter {
  gen: number;
  inFlight: number;
  /** In-flight x ms accumulated up to `lastChange`. */
  area: number;
  lastChange: number;
  requests: number;
  completed: number;
  /** Service time EWMA as a decayed sum over a decayed weight (see served()). */
  serviceSum: number;
  serviceWeight: number;
  serviceAt: number;
  /** Last begin, end or served, this.now(). */
  lastActive: number;
}

export interface ConcurrencyStatsOptions {
  /**
   * A pending count not set again within this long is no longer reported, ms (default 30 000):
   * a reader that stopped leaves the count unknown rather than holding the function up forever.
   */
  pendingMaxAgeMs?: number;
  /** Requests waiting in the gateway's queue per function now (RouterPool.queueDepths); none: `queued` is not reported. */
  queueDepths?: () => Iterable<[string, number]>;
  /** Seconds the ring keeps for a late reader's backfill (default 60, the default stable window). */
  historySeconds?: number;
  /** Most functions one ring second keeps, the busiest (default 1000): the ring's memory is bounded. */
  maxFunctions?: number;
  /** Half-life of the service-time average, ms (default 5000; see served()). */
  serviceHalfLifeMs?: number;
  /** A function with nothing in flight and no call for this long has its counters dropped, ms (default 60 000). */
  idleForgetMs?: number;
  /** This gateway process's id in replies (default a random UUID). */
  instance?: string;
}

/** One ring slot: the samples of the second that ended at `end` (this.now() clock). */
interface RingSecond {
  end: number;
  samples: FunctionSample[];
}

export class ConcurrencyStats implements StatsSource {
  /** Random per process start: a reader that sees another one knows the counters began again. */
  readonly instance: string;
  readonly #fns = new Map<string, Counter>();
  /** Messages waiting per function, and when they were read (this.now()). */
  readonly #pending = new Map<string, { messages: number; at: number }>();
  readonly #pendingMaxAgeMs: number;
  readonly #queueDepths: (() => Iterable<[string, number]>) | undefined;
  readonly #historySeconds: number;
  readonly #maxFunctions: number;
  readonly #halfLifeMs: number;
  readonly #idleForgetMs: number;
  #gen = 0;
  #seq = 0;
  /** The ring: slot (end / 1000) % historySeconds. */
  readonly #ring: (RingSecond | undefined)[];
  /** End of the second being counted now, and the counters at its start. */
  #nextEnd: number;
  #boundary: CountersReading;
  readonly #default: StatsReader;

  constructor(
    private readonly now: () => number = Date.now,
    options: ConcurrencyStatsOptions = {},
  ) {
    this.#pendingMaxAgeMs = options.pendingMaxAgeMs ?? 30_000;
    this.#queueDepths = options.queueDepths;
    this.#historySeconds = positiveInt(options.historySeconds ?? 60, 'historySeconds');
    this.#maxFunctions = positiveInt(options.maxFunctions ?? 1000, 'maxFunctions');
    this.#halfLifeMs = options.serviceHalfLifeMs ?? 5000;
    if (!(this.#halfLifeMs > 0)) throw new RangeError(`serviceHalfLifeMs must be above 0 (got ${options.serviceHalfLifeMs})`);
    this.#idleForgetMs = options.idleForgetMs ?? 60_000;
    this.instance = options.instance ?? randomUUID();
    this.#ring = new Array<RingSecond | undefined>(this.#historySeconds);
    const t = this.now();
    this.#nextEnd = Math.floor(t / 1000) * 1000 + 1000;
    this.#boundary = { now: t, functions: [] };
    this.#default = this.reader();
  }

  /** A request for `name` arrived (it counts from here, queued or not). */
  begin(name: string): void {
    const t = this.#tick();
    let c = this.#fns.get(name);
    if (!c) {
      c = { gen: ++this.#gen, inFlight: 0, area: 0, lastChange: t, requests: 0, completed: 0, serviceSum: 0, serviceWeight: 0, serviceAt: t, lastActive: t };
      this.#fns.set(name, c);
    }
    advance(c, t);
    c.inFlight++;
    c.requests++;
    c.lastActive = t;
  }

  end(name: string): void {
    const c = this.#fns.get(name);
    if (!c) return;
    const t = this.#tick();
    advance(c, t);
    c.inFlight = Math.max(0, c.inFlight - 1);
    c.lastActive = t;
  }

  /**
   * A call of `name` released its replica after holding it `serviceMs`: one more completed call,
   * and the service-time average moves toward it. The average is time-decayed with each call
   * weighing the same: sum and weight both halve every serviceHalfLifeMs, then the call adds
   * its time and 1; the average is sum / weight. With many calls it is the mean of the last
   * ~7 s of calls (5 s / ln 2), so one odd call barely moves it while a lasting change is most of
   * the way in within a few seconds; after a long quiet, the next call all but replaces it.
   * Example: calls at a steady 100 a second that took 20 ms take 60 ms from t = 0: the average
   * is 40 ms at t = 5 s, 50 at 10 s, 55 at 15 s.
   */
  served(name: string, serviceMs: number): void {
    const c = this.#fns.get(name);
    if (!c || !Number.isFinite(serviceMs)) return;
    const t = this.#tick();
    const decay = Math.pow(2, -Math.max(0, t - c.serviceAt) / this.#halfLifeMs);
    c.serviceSum = c.serviceSum * decay + Math.max(0, serviceMs);
    c.serviceWeight = c.serviceWeight * decay + 1;
    c.serviceAt = t;
    c.completed++;
    c.lastActive = t;
  }

  /**
   * `lease` (a router's hold on a replica) with a release() that also reports the time from
   * now until that release as a served call of `name`: the upstream service time, with the
   * wait for the lease (queue, cold start) left out. The release counts once.
   */
  track<L extends { release(): void }>(name: string, lease: L): L {
    const at = this.now();
    let released = false;
    return {
      ...lease,
      release: () => {
        if (!released) {
          released = true;
          this.served(name, this.now() - at);
        }
        lease.release();
      },
    };
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
   * (for JetStream: num_pending of its durable consumers, summed over the function's triggers).
   * Reported in every reading as `pending` until set again, cleared with `undefined`, or older
   * than `pendingMaxAgeMs`. Throws a RangeError on a count that is not a non-negative finite number.
   */
  setPending(name: string, messages: number | undefined): void {
    if (messages === undefined) {
      this.#pending.delete(name);
      return;
    }
    if (!Number.isFinite(messages) || messages < 0) throw new RangeError(`pending messages for ${name} must be a non-negative number (got ${messages})`);
    this.#pending.set(name, { messages, at: this.#tick() });
  }

  /** Drops what was counted for `name`: a function deployed again under the name starts from none (a new gen). */
  forget(name: string): void {
    this.#tick();
    this.#fns.delete(name);
    this.#pending.delete(name);
  }

  /** A new reader: its first collect covers the traffic from now on, plus the ring as backfill. */
  reader(): StatsReader {
    return new StatsReader(this, this.read(this.now()));
  }

  /**
   * The default reader's collection (one made with the stats): samples since its previous
   * collect. Other readers are not affected; see reader().
   */
  collect(now: number): StatsCollection {
    return this.#default.collect(now);
  }

  /** The counters as of `now`. Also closes ring seconds that ended and drops long-quiet counters. */
  read(now: number): CountersReading {
    this.#roll(now);
    for (const [name, c] of this.#fns) {
      if (c.inFlight === 0 && now - c.lastActive >= this.#idleForgetMs) this.#fns.delete(name);
    }
    return this.#readAt(now);
  }

  /** The reply of GET /system/stats: the counters with this instance and the next seq; the ring when asked. */
  reply(now: number, history = false): StatsReply {
    const out: StatsReply = { instance: this.instance, seq: ++this.#seq, ...this.read(now) };
    if (history) out.history = { base: this.#boundary, seconds: this.history(now, this.#boundary.now) };
    return out;
  }

  /**
   * The ring seconds that ended by `until` (default `now`), oldest first, with their age before
   * `now`: what a reader whose baseline is `until` has not seen. answered is 1 (this gateway).
   */
  history(now: number, until = now): BackfillSecond[] {
    this.#roll(now);
    const oldest = now - this.#historySeconds * 1000;
    return this.#ring
      .filter((s): s is RingSecond => s !== undefined && s.end <= until && s.end > oldest)
      .sort((a, b) => a.end - b.end)
      // Copies: what a reader does with them does not change the ring.
      .map((s) => ({ ageMs: Math.max(0, now - s.end), samples: s.samples.map((x) => ({ ...x })), answered: 1 }));
  }

  /** Closes ring seconds that ended by this.now() (a 1 s timer calls it so seconds close on time); returns the time. */
  tick(): number {
    return this.#tick();
  }

  #tick(): number {
    const t = this.now();
    this.#roll(t);
    return t;
  }

  /**
   * Closes every second that ended by `t` into the ring. Counters change only in begin/end/
   * served, which roll first, so between the last change and `t` they held still and the
   * counters at any boundary in between are exact.
   */
  #roll(t: number): void {
    if (t < this.#nextEnd) return;
    const lastEnd = Math.floor(t / 1000) * 1000;
    const keep = this.#historySeconds * 1000;
    if (lastEnd - this.#nextEnd >= keep) {
      // Quiet for longer than the ring: only its last seconds are worth closing.
      this.#nextEnd = lastEnd - keep + 1000;
      this.#boundary = this.#readAt(this.#nextEnd - 1000);
    }
    for (let end = this.#nextEnd; end <= lastEnd; end += 1000) {
      const at = this.#readAt(end);
      let { samples } = intervalSamples(this.#boundary, at);
      if (samples.length > this.#maxFunctions) {
        samples = samples.sort((a, b) => b.concurrency - a.concurrency || b.requests - a.requests).slice(0, this.#maxFunctions);
      }
      this.#ring[Math.floor(end / 1000) % this.#historySeconds] = { end, samples };
      this.#boundary = at;
    }
    this.#nextEnd = lastEnd + 1000;
  }

  #readAt(t: number): CountersReading {
    const queued = this.#queueDepths ? new Map(this.#queueDepths()) : undefined;
    const pending = new Map<string, number>();
    for (const [name, p] of this.#pending) {
      if (t - p.at > this.#pendingMaxAgeMs) this.#pending.delete(name);
      else pending.set(name, p.messages);
    }
    const functions: FunctionCounters[] = [];
    for (const [name, c] of this.#fns) {
      const f: FunctionCounters = {
        name,
        gen: c.gen,
        requests: c.requests,
        inFlightMs: c.area + c.inFlight * Math.max(0, t - c.lastChange),
        completed: c.completed,
        inFlight: c.inFlight,
      };
      if (queued) f.queued = queued.get(name) ?? 0;
      if (c.serviceWeight > 0) f.serviceMs = c.serviceSum / c.serviceWeight;
      const p = pending.get(name);
      if (p !== undefined) {
        f.pending = p;
        pending.delete(name);
      }
      functions.push(f);
    }
    // Messages waiting for a function with no calls here.
    for (const [name, p] of pending) functions.push({ name, gen: 0, requests: 0, inFlightMs: 0, completed: 0, inFlight: 0, pending: p });
    return { now: t, functions };
  }
}

/**
 * One reader of a gateway's stats in process: each collect reports the interval since its
 * previous one (see intervalSamples), taking nothing from other readers; its first also carries
 * the gateway's ring from before the reader was made as `backfill`.
 */
export class StatsReader implements StatsSource {
  readonly #stats: ConcurrencyStats;
  #prev: CountersReading;
  #active = new Set<string>();
  #first = true;

  constructor(stats: ConcurrencyStats, baseline: CountersReading) {
    this.#stats = stats;
    this.#prev = baseline;
  }

  /** In process, the gateway always answers: answered = expected = 1. */
  collect(now: number): StatsCollection {
    const cur = this.#stats.read(now);
    const { samples, active } = intervalSamples(this.#prev, cur, this.#active);
    const out: StatsCollection = { samples, answered: 1, expected: 1 };
    if (this.#first) {
      out.backfill = this.#stats.history(now, this.#prev.now);
      this.#first = false;
    }
    this.#prev = cur;
    this.#active = active;
    return out;
  }
}

function advance(c: Counter, t: number): void {
  if (t > c.lastChange) {
    c.area += c.inFlight * (t - c.lastChange);
    c.lastChange = t;
  }
}

function positiveInt(n: number, what: string): number {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`${what} must be a whole number above 0 (got ${n})`);
  return n;
}
