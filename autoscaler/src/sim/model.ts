// The world the simulated autoscaler scales: one or more gateways, each with its own bounded
// FIFO queue and its own stats, in front of replicas that each serve up to `capacity` requests at
// once, advanced in fixed time steps.
//
// Model, per step of `stepMs` (10 ms by default), in this order:
//   1. requests whose service time is over leave their replica (served);
//   2. replicas whose start-up is over become ready;
//   3. new requests arrive at a gateway (the caller draws them) and join its queue, or are
//      rejected (an overload 503) when it holds `queueDepth` already (Knative's activator: 10 000);
//   4. queued requests go, oldest first, to the ready replica with the fewest in flight and a
//      free slot (the gateway's pick: least in-flight, ties round-robin); with several gateways
//      they take one request each in turn, the first gateway rotating from step to step;
//   5. each gateway's in-flight count (serving + queued) is constant until the next step, so
//      adding it x stepMs gives the exact time-weighted mean the gateway reports when scraped.
// Service times are rounded to whole steps (at least one). A scale-up adds replicas that become
// ready a start-up time (`startupMs()`, one draw per replica) after they are scheduled: at once,
// or, beyond `nodeCapacity` replicas, when an older one is removed (never, if none is); a scale-down removes starting replicas first, then the ready ones with
// the fewest requests in flight, at once: they take no new request but finish what they hold.

export interface ClusterOptions {
  /** Requests one ready replica serves at once (its real capacity, not the autoscaler's target). */
  capacity: number;
  /** A start-up time, from scheduling to a ready replica, ms; one draw per replica (Infinity: never ready). */
  startupMs: () => number;
  /** Replicas the nodes can hold: those beyond it stay pending and never become ready. Default unlimited. */
  nodeCapacity?: number;
  /** Gateways, each with its own queue and stats; arrivals are split between them by the caller. Default 1. */
  gateways?: number;
  /** The initial replicas are ready at t = 0 (default); false: they start up like any other. */
  warm?: boolean;
  /** Simulation step, ms. */
  stepMs: number;
  /** Requests the gateway holds while no replica has a free slot. */
  queueDepth: number;
}

interface Replica {
  /** When it becomes ready; undefined while pending (not scheduled: no room on the nodes). */
  readyAt: number | undefined;
  ready: boolean;
  inFlight: number;
}

/** A gateway's side: its queue, its requests at replicas, and what it reports when scraped. */
interface Gateway {
  /** Arrival times of queued requests, a ring buffer. */
  queue: Float64Array;
  head: number;
  queued: number;
  /** Its requests at replicas. */
  inFlight: number;
  /** Since the last successful scrape (ConcurrencyStats: a failed scrape never reads or resets it). */
  scrape: { area: number; requests: number; since: number; completed: number };
  /** This second so far, for the gateway's own per-second ring (see closeSecond). */
  sec: { area: number; requests: number; completed: number; serviceSum: number; since: number };
  /** Its moving average of the service time of completed calls, ms; undefined before one. */
  serviceMs: number | undefined;
}

/** The gateway's service-time average takes a second's mean with this weight: a half-life of 5 s. */
const serviceWeight = 1 - 0.5 ** (1 / 5);

/** What one gateway reports when scraped: its mean in flight (queued included) and arrivals since the last scrape. */
export interface GatewaySample {
  concurrency: number;
  requests: number;
  /** Its queue at the scrape (a level). */
  queued: number;
  /** Calls completed since the last scrape. */
  completed: number;
  /** Its service-time average, ms, when it has one. */
  serviceMs?: number;
  /** The interval the sample covers, ms, when longer than a second (after failed scrapes). */
  spanMs?: number;
}

/** One second of traffic as the gateway saw it. */
export interface SecondStats {
  arrived: number;
  served: number;
  rejected: number;
  /** Time-weighted mean of requests at replicas over the second. */
  inFlight: number;
  /** Time-weighted mean of requests in the queue over the second. */
  queued: number;
}

export interface Totals {
  arrived: number;
  served: number;
  rejected: number;
  /** Requests that started after waiting more than 1 s in the queue. */
  waitedOver1s: number;
  maxWaitMs: number;
  maxQueued: number;
}

export class Cluster {
  /** Replicas asked for by the last scale call. */
  desired: number;
  readonly totals: Totals = { arrived: 0, served: 0, rejected: 0, waitedOver1s: 0, maxWaitMs: 0, maxQueued: 0 };
  readonly #o: ClusterOptions;
  /** Pending, starting and ready replicas; removed ones are only referenced by their pending completions. */
  #replicas: Replica[] = [];
  readonly #gateways: Gateway[];
  #firstGateway = 0;
  #inFlight = 0;
  /** Completion time (ms) -> the replica and gateway of each request that finishes then. */
  readonly #completions = new Map<number, { r: Replica; g: Gateway; ms: number }[]>();
  /** Started requests by wait, in steps: waits[k] requests waited k steps. */
  readonly #waits: number[] = [];
  #rr = 0;
  #sec = { arrived: 0, served: 0, rejected: 0, inFlightArea: 0, queuedArea: 0 };

  constructor(options: ClusterOptions, initialReplicas: number) {
    this.#o = options;
    const gateways = options.gateways ?? 1;
    this.#gateways = Array.from({ length: gateways }, () => ({
      queue: new Float64Array(options.queueDepth),
      head: 0,
      queued: 0,
      inFlight: 0,
      scrape: { area: 0, requests: 0, since: 0, completed: 0 },
      sec: { area: 0, requests: 0, completed: 0, serviceSum: 0, since: 0 },
      serviceMs: undefined,
    }));
    this.desired = initialReplicas;
    const fit = options.warm === false ? 0 : Math.min(initialReplicas, options.nodeCapacity ?? Infinity);
    for (let i = 0; i < initialReplicas; i++) {
      this.#replicas.push(i < fit ? { readyAt: 0, ready: true, inFlight: 0 } : { readyAt: undefined, ready: false, inFlight: 0 });
    }
    this.#schedule(0);
  }

  get gateways(): number {
    return this.#gateways.length;
  }

  get ready(): number {
    return this.#replicas.filter((r) => r.ready).length;
  }
  /** Asked for and not ready: starting, pending for room on the nodes, or never to be ready. */
  get starting(): number {
    return this.#replicas.length - this.ready;
  }
  /** Of `starting`, those the nodes have no room for. */
  get pending(): number {
    return this.#replicas.filter((r) => r.readyAt === undefined).length;
  }
  /** Requests at replicas, draining ones included. */
  get inFlight(): number {
    return this.#inFlight;
  }
  get queued(): number {
    return this.#gateways.reduce((a, g) => a + g.queued, 0);
  }

  /** What the scale call does: start or remove replicas to have `n`. */
  scaleTo(n: number, now: number): void {
    this.desired = n;
    while (this.#replicas.length < n) {
      const r: Replica = { readyAt: undefined, ready: false, inFlight: 0 };
      this.#replicas.push(r);
      this.#schedule(now);
    }
    if (this.#replicas.length > n) {
      // Keep the ready replicas with the most work; starting ones go first (newest first).
      const keep = [...this.#replicas]
        .map((r, i) => ({ r, i }))
        .sort((a, b) => Number(b.r.ready) - Number(a.r.ready) || b.r.inFlight - a.r.inFlight || a.i - b.i)
        .slice(0, n)
        .sort((a, b) => a.i - b.i);
      this.#replicas = keep.map((x) => x.r);
      this.#schedule(now);
    }
  }

  /** Pending replicas take the room the nodes have, oldest first; their start-up runs from now. */
  #schedule(now: number): void {
    let room = (this.#o.nodeCapacity ?? Infinity) - this.#replicas.filter((r) => r.readyAt !== undefined).length;
    for (const r of this.#replicas) {
      if (room <= 0) break;
      if (r.readyAt !== undefined) continue;
      const startup = this.#o.startupMs();
      r.readyAt = now + startup;
      r.ready = startup <= 0;
      room--;
    }
  }

  /** Steps 1 and 2: completions and readiness due at `t`. */
  advance(t: number): void {
    for (const { r, g, ms } of this.#completions.get(t) ?? []) {
      r.inFlight--;
      g.inFlight--;
      g.scrape.completed++;
      g.sec.completed++;
      g.sec.serviceSum += ms;
      this.#inFlight--;
      this.#sec.served++;
      this.totals.served++;
    }
    this.#completions.delete(t);
    for (const r of this.#replicas) if (!r.ready && r.readyAt !== undefined && r.readyAt <= t) r.ready = true;
  }

  /** Step 3: `n` requests arrive at `t` at gateway `gateway`. True when one of them found no ready replica (cold). */
  arrive(t: number, n: number, gateway = 0): boolean {
    const g = this.#gateways[gateway];
    if (!g) throw new RangeError(`no gateway ${gateway}`);
    for (let i = 0; i < n; i++) {
      this.totals.arrived++;
      this.#sec.arrived++;
      // The gateway counts a request before queueing it: rejected ones too.
      g.scrape.requests++;
      g.sec.requests++;
      if (g.queued >= g.queue.length) {
        this.totals.rejected++;
        this.#sec.rejected++;
        continue;
      }
      g.queue[(g.head + g.queued) % g.queue.length] = t;
      g.queued++;
    }
    return n > 0 && !this.#replicas.some((r) => r.ready);
  }

  /** Steps 4 and 5: start queued requests where there is room, then account for the step. */
  dispatch(t: number, serviceMs: () => number): void {
    const step = this.#o.stepMs;
    const gs = this.#gateways;
    let waiting = this.queued;
    for (let turn = 0; waiting > 0; turn++) {
      const g = gs[(this.#firstGateway + turn) % gs.length]!;
      if (g.queued === 0) continue;
      const r = this.#pick();
      if (!r) break;
      const arrivedAt = g.queue[g.head]!;
      g.head = (g.head + 1) % g.queue.length;
      g.queued--;
      waiting--;
      const wait = t - arrivedAt;
      const k = Math.round(wait / step);
      this.#waits[k] = (this.#waits[k] ?? 0) + 1;
      if (wait > 1000) this.totals.waitedOver1s++;
      this.totals.maxWaitMs = Math.max(this.totals.maxWaitMs, wait);
      r.inFlight++;
      g.inFlight++;
      this.#inFlight++;
      const ms = Math.max(1, Math.round(serviceMs() / step)) * step;
      const done = t + ms;
      const list = this.#completions.get(done);
      if (list) list.push({ r, g, ms });
      else this.#completions.set(done, [{ r, g, ms }]);
    }
    this.#firstGateway = (this.#firstGateway + 1) % gs.length;
    const queued = this.queued;
    this.#sec.inFlightArea += this.#inFlight * step;
    this.#sec.queuedArea += queued * step;
    for (const g of gs) {
      g.scrape.area += (g.inFlight + g.queued) * step;
      g.sec.area += (g.inFlight + g.queued) * step;
    }
    this.totals.maxQueued = Math.max(this.totals.maxQueued, queued);
  }

  /**
   * A successful scrape of gateway `gateway` at `now`: the mean in flight (queued included) and
   * the arrivals since its last successful scrape, which this resets (as ConcurrencyStats.collect).
   */
  scrape(gateway: number, now: number): GatewaySample {
    const g = this.#gateways[gateway];
    if (!g) throw new RangeError(`no gateway ${gateway}`);
    const span = now - g.scrape.since;
    const sample: GatewaySample = {
      concurrency: span > 0 ? g.scrape.area / span : g.inFlight + g.queued,
      requests: g.scrape.requests,
      queued: g.queued,
      completed: g.scrape.completed,
      ...(g.serviceMs !== undefined ? { serviceMs: g.serviceMs } : {}),
      ...(span > 1500 ? { spanMs: span } : {}),
    };
    g.scrape = { area: 0, requests: 0, since: now, completed: 0 };
    return sample;
  }

  /**
   * Gateway `gateway` closes the second ending at `now`, whether or not anyone scrapes it: its
   * service-time average takes the second's completions, and the second's sample is returned for
   * its ring (what a new autoscaler backfills from). Called once per second, before the scrape.
   */
  closeSecond(gateway: number, now: number): GatewaySample {
    const g = this.#gateways[gateway];
    if (!g) throw new RangeError(`no gateway ${gateway}`);
    const c = g.sec;
    if (c.completed > 0) {
      const mean = c.serviceSum / c.completed;
      g.serviceMs = g.serviceMs === undefined ? mean : g.serviceMs + serviceWeight * (mean - g.serviceMs);
    }
    const span = now - c.since;
    const sample: GatewaySample = {
      concurrency: span > 0 ? c.area / span : g.inFlight + g.queued,
      requests: c.requests,
      queued: g.queued,
      completed: c.completed,
      ...(g.serviceMs !== undefined ? { serviceMs: g.serviceMs } : {}),
    };
    g.sec = { area: 0, requests: 0, completed: 0, serviceSum: 0, since: now };
    return sample;
  }

  /** Requests gateway `gateway` holds in its queue now. */
  queuedAt(gateway: number): number {
    return this.#gateways[gateway]?.queued ?? 0;
  }

  /** Whether some replica is ready. */
  get anyReady(): boolean {
    return this.#replicas.some((r) => r.ready);
  }

  /** The last `ms` of traffic, and a fresh start for the next interval. */
  takeSecond(ms: number): SecondStats {
    const s = this.#sec;
    this.#sec = { arrived: 0, served: 0, rejected: 0, inFlightArea: 0, queuedArea: 0 };
    return { arrived: s.arrived, served: s.served, rejected: s.rejected, inFlight: s.inFlightArea / ms, queued: s.queuedArea / ms };
  }

  /** Requests still queued at `t` that have waited more than 1 s already. */
  waitingOver1s(t: number): number {
    let n = 0;
    for (const g of this.#gateways) {
      for (let i = 0; i < g.queued; i++) if (t - g.queue[(g.head + i) % g.queue.length]! > 1000) n++;
    }
    return n;
  }

  /** The wait (ms) that fraction `q` of started requests did not exceed. */
  waitQuantileMs(q: number): number {
    const total = this.#waits.reduce((a, b) => a + (b ?? 0), 0);
    let seen = 0;
    for (let k = 0; k < this.#waits.length; k++) {
      seen += this.#waits[k] ?? 0;
      if (seen >= q * total) return k * this.#o.stepMs;
    }
    return 0;
  }

  /** Least in-flight among ready replicas with a free slot; ties go round-robin. */
  #pick(): Replica | undefined {
    const rs = this.#replicas;
    let best: Replica | undefined;
    let bestAt = 0;
    for (let j = 0; j < rs.length; j++) {
      const i = (this.#rr + j) % rs.length;
      const r = rs[i]!;
      if (!r.ready || r.inFlight >= this.#o.capacity) continue;
      if (!best || r.inFlight < best.inFlight) {
        best = r;
        bestAt = i;
      }
    }
    if (best) this.#rr = bestAt + 1;
    return best;
  }
}
