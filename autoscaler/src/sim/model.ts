// The world the simulated autoscaler scales: the gateway's bounded FIFO queue in front of
// replicas that each serve up to `capacity` requests at once, advanced in fixed time steps.
//
// Model, per step of `stepMs` (10 ms by default), in this order:
//   1. requests whose service time is over leave their replica (served);
//   2. replicas whose start-up is over become ready;
//   3. new requests arrive (the caller draws them) and join the queue, or are rejected when it
//      holds `queueDepth` already (Knative's activator: 10 000);
//   4. queued requests go, oldest first, to the ready replica with the fewest in flight and a
//      free slot (the gateway's pick: least in-flight, ties round-robin);
//   5. the gateway's in-flight count (serving + queued) is constant until the next step, so
//      adding it x stepMs gives the exact time-weighted mean the gateway reports per second.
// Service times are rounded to whole steps (at least one). A scale-up adds replicas that become
// ready `startupMs` later; a scale-down removes starting replicas first, then the ready ones with
// the fewest requests in flight, at once: they take no new request but finish what they hold.

export interface ClusterOptions {
  /** Requests one ready replica serves at once (its real capacity, not the autoscaler's target). */
  capacity: number;
  /** From the scale call to a ready replica, ms. */
  startupMs: number;
  /** Simulation step, ms. */
  stepMs: number;
  /** Requests the gateway holds while no replica has a free slot. */
  queueDepth: number;
}

interface Replica {
  readyAt: number;
  ready: boolean;
  inFlight: number;
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
  /** Starting and ready replicas; removed ones are only referenced by their pending completions. */
  #replicas: Replica[] = [];
  /** Arrival times of queued requests, a ring buffer. */
  readonly #queue: Float64Array;
  #head = 0;
  #queued = 0;
  #inFlight = 0;
  /** Completion time (ms) -> the replica of each request that finishes then. */
  readonly #completions = new Map<number, Replica[]>();
  /** Started requests by wait, in steps: waits[k] requests waited k steps. */
  readonly #waits: number[] = [];
  #rr = 0;
  #sec = { arrived: 0, served: 0, rejected: 0, inFlightArea: 0, queuedArea: 0 };

  constructor(options: ClusterOptions, initialReplicas: number) {
    this.#o = options;
    this.#queue = new Float64Array(options.queueDepth);
    this.desired = initialReplicas;
    for (let i = 0; i < initialReplicas; i++) this.#replicas.push({ readyAt: 0, ready: true, inFlight: 0 });
  }

  get ready(): number {
    return this.#replicas.filter((r) => r.ready).length;
  }
  get starting(): number {
    return this.#replicas.length - this.ready;
  }
  /** Requests at replicas, draining ones included. */
  get inFlight(): number {
    return this.#inFlight;
  }
  get queued(): number {
    return this.#queued;
  }

  /** What the scale call does: start or remove replicas to have `n`. */
  scaleTo(n: number, now: number): void {
    this.desired = n;
    while (this.#replicas.length < n) {
      this.#replicas.push({ readyAt: now + this.#o.startupMs, ready: this.#o.startupMs <= 0, inFlight: 0 });
    }
    if (this.#replicas.length > n) {
      // Keep the ready replicas with the most work; starting ones go first (newest first).
      const keep = [...this.#replicas]
        .map((r, i) => ({ r, i }))
        .sort((a, b) => Number(b.r.ready) - Number(a.r.ready) || b.r.inFlight - a.r.inFlight || a.i - b.i)
        .slice(0, n)
        .sort((a, b) => a.i - b.i);
      this.#replicas = keep.map((x) => x.r);
    }
  }

  /** Steps 1 and 2: completions and readiness due at `t`. */
  advance(t: number): void {
    for (const r of this.#completions.get(t) ?? []) {
      r.inFlight--;
      this.#inFlight--;
      this.#sec.served++;
      this.totals.served++;
    }
    this.#completions.delete(t);
    for (const r of this.#replicas) if (!r.ready && r.readyAt <= t) r.ready = true;
  }

  /** Step 3: `n` requests arrive at `t`. True when one of them found no ready replica (cold). */
  arrive(t: number, n: number): boolean {
    for (let i = 0; i < n; i++) {
      this.totals.arrived++;
      this.#sec.arrived++;
      if (this.#queued >= this.#queue.length) {
        this.totals.rejected++;
        this.#sec.rejected++;
        continue;
      }
      this.#queue[(this.#head + this.#queued) % this.#queue.length] = t;
      this.#queued++;
    }
    return n > 0 && !this.#replicas.some((r) => r.ready);
  }

  /** Steps 4 and 5: start queued requests where there is room, then account for the step. */
  dispatch(t: number, serviceMs: () => number): void {
    const step = this.#o.stepMs;
    while (this.#queued > 0) {
      const r = this.#pick();
      if (!r) break;
      const arrivedAt = this.#queue[this.#head]!;
      this.#head = (this.#head + 1) % this.#queue.length;
      this.#queued--;
      const wait = t - arrivedAt;
      const k = Math.round(wait / step);
      this.#waits[k] = (this.#waits[k] ?? 0) + 1;
      if (wait > 1000) this.totals.waitedOver1s++;
      this.totals.maxWaitMs = Math.max(this.totals.maxWaitMs, wait);
      r.inFlight++;
      this.#inFlight++;
      const done = t + Math.max(1, Math.round(serviceMs() / step)) * step;
      const list = this.#completions.get(done);
      if (list) list.push(r);
      else this.#completions.set(done, [r]);
    }
    this.#sec.inFlightArea += this.#inFlight * step;
    this.#sec.queuedArea += this.#queued * step;
    this.totals.maxQueued = Math.max(this.totals.maxQueued, this.#queued);
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
    for (let i = 0; i < this.#queued; i++) if (t - this.#queue[(this.#head + i) % this.#queue.length]! > 1000) n++;
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
