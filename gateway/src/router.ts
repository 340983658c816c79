// The activator and load balancer for one function: picks the least-loaded ready replica under
// its container concurrency, or holds the request in a bounded queue until one is free. The
// queue's depth follows the function's traffic (queue-budget.ts): its peak arrivals per second
// over the last minute times the time to a decision plus its measured start-up.

import { KubefnError, type Endpoint, type EndpointSet } from '@kubefn/platform';
import { defaultQueueSettings, type QueueBudget, type QueueSettings } from './queue-budget.js';

export interface Lease {
  endpoint: Endpoint;
  /** Whether this request had to wait for a replica to start (a cold start). */
  waitedForReplica: boolean;
  release(): void;
}

export interface RouterOptions {
  name: string;
  endpoints: EndpointSet;
  /** Max in-flight per replica; 0 = no cap. */
  containerConcurrency: number;
  /** This gateway's place among the live gateways (default: the only one); see GatewayShare. */
  share?: GatewayShare;
  /** How deep the queue may grow (see QueueSettings); beyond it requests get 503 at once. */
  queue?: Partial<Pick<QueueSettings, 'minPerFunction' | 'maxPerFunction' | 'decisionIntervalMs' | 'defaultStartupMs'>>;
  /** The room all functions' queues share; none: only the per-function depth bounds the queue. */
  budget?: QueueBudget;
  /** Called when a request finds no ready replica at all, once it is in the queue. */
  onNoReplica: (name: string) => void;
  now?: () => number;
}

/**
 * Where this gateway stands among the gateways that route to the same replicas: `index` of
 * `count` (0-based, the same order on every gateway).
 */
export interface GatewayShare {
  index: number;
  count: number;
}

/**
 * How many of a replica's `cc` slots gateway `share.index` may fill, as Knative's activators split
 * a revision's capacity: the replicas' slots, replica by replica in the order every gateway sees
 * (by id), are dealt round-robin to the gateways, so the gateways together never send a replica
 * more than cc and each gets its fair part of the total. `replica` is the replica's position in
 * that order. With fewer slots than gateways (one replica of CC 1 behind two gateways) a gateway
 * dealt none gets one slot on replica index % replicas: it must be able to serve, and the runtime
 * holds that rare excess call until its turn rather than refusing it.
 */
export function slotsFor(cc: number, replica: number, replicas: number, share: GatewayShare): number {
  const n = Math.max(1, share.count);
  if (cc <= 0 || n === 1) return cc;
  const i = ((share.index % n) + n) % n;
  if (replicas * cc < n && i >= replicas * cc) return replica === i % replicas ? 1 : 0;
  // Slot s = replica * cc + u (u < cc) goes to gateway s % n: count the u with u ≡ i - replica*cc (mod n).
  const r = (((i - replica * cc) % n) + n) % n;
  return r < cc ? Math.floor((cc - 1 - r) / n) + 1 : 0;
}

/** A QUEUE_FULL error with the seconds a client should wait before trying again (Retry-After). */
export type QueueFullError = KubefnError & { retryAfterS: number };

/** The seconds of a QUEUE_FULL error's Retry-After (1 when it carries none). */
export function retryAfterSeconds(err: unknown): number {
  const s = (err as Partial<QueueFullError>).retryAfterS;
  return typeof s === 'number' && Number.isFinite(s) && s >= 1 ? Math.ceil(s) : 1;
}

/** A cold spell's start-up sample weighs this much in the moving average (EWMA). */
const startupWeight = 0.3;
/** Longest start-up sample taken, ms: a longer wait says more about a broken function than its start-up. */
const maxStartupSampleMs = 10 * 60_000;
/** Seconds of arrivals kept for the peak rate. */
const peakWindowS = 60;

interface Waiter {
  resolve: (lease: Lease) => void;
  reject: (err: unknown) => void;
  cold: boolean;
  cleanup: () => void;
}

export class FunctionRouter {
  readonly name: string;
  #endpoints: readonly Endpoint[];
  readonly #inFlight = new Map<string, number>();
  readonly #queue: Waiter[] = [];
  #containerConcurrency: number;
  #share: GatewayShare;
  /** Per endpoint id, the slots this gateway may fill (from containerConcurrency and the share). */
  #slots = new Map<string, number>();
  readonly #settings: Pick<QueueSettings, 'minPerFunction' | 'maxPerFunction' | 'decisionIntervalMs' | 'defaultStartupMs'>;
  readonly #budget: QueueBudget | undefined;
  readonly #onNoReplica: (name: string) => void;
  readonly #now: () => number;
  readonly #unsubscribe: () => void;
  /** Arrivals per second: slot s % 60 counts second s (#arrivalSecond says which s it holds). */
  readonly #arrivals = new Uint32Array(peakWindowS);
  readonly #arrivalSecond = new Float64Array(peakWindowS).fill(-1);
  /** When the first request of the current cold spell arrived; undefined when not cold. */
  #coldSince: number | undefined;
  /** Moving average of the time from a cold spell's first request to a ready replica, ms. */
  #startupMs: number | undefined;
  #next = 0;
  #closed = false;

  constructor(options: RouterOptions) {
    this.name = options.name;
    this.#containerConcurrency = options.containerConcurrency;
    this.#share = options.share ?? { index: 0, count: 1 };
    this.#settings = { ...defaultQueueSettings, ...options.queue };
    this.#budget = options.budget;
    this.#onNoReplica = options.onNoReplica;
    this.#now = options.now ?? Date.now;
    this.#endpoints = options.endpoints.current();
    this.#dealSlots();
    this.#unsubscribe = options.endpoints.subscribe((eps) => {
      this.#endpoints = eps;
      this.#dealSlots();
      if (eps.length > 0 && this.#coldSince !== undefined) {
        const sample = Math.min(maxStartupSampleMs, Math.max(0, this.#now() - this.#coldSince));
        this.#startupMs = this.#startupMs === undefined ? sample : startupWeight * sample + (1 - startupWeight) * this.#startupMs;
        this.#coldSince = undefined;
      }
      const ids = new Set(eps.map((e) => e.id));
      for (const [id, n] of this.#inFlight) if (n === 0 && !ids.has(id)) this.#inFlight.delete(id);
      this.#dispatch();
    });
  }

  set containerConcurrency(n: number) {
    if (n === this.#containerConcurrency) return;
    this.#containerConcurrency = n;
    this.#dealSlots();
    this.#dispatch();
  }

  set share(share: GatewayShare) {
    if (share.index === this.#share.index && share.count === this.#share.count) return;
    this.#share = { ...share };
    this.#dealSlots();
    this.#dispatch();
  }

  /** The slots this gateway may fill on endpoint `id` now (0 = no cap), for tests and stats. */
  slotsOf(id: string): number | undefined {
    return this.#slots.get(id);
  }

  #dealSlots(): void {
    const cc = this.#containerConcurrency;
    const slots = new Map<string, number>();
    if (cc > 0 && this.#share.count > 1) {
      const ids = this.#endpoints.map((e) => e.id).sort();
      ids.forEach((id, j) => slots.set(id, slotsFor(cc, j, ids.length, this.#share)));
    }
    this.#slots = slots;
  }

  get queued(): number {
    return this.#queue.length;
  }

  get readyReplicas(): number {
    return this.#endpoints.length;
  }

  /** The function's start-up as measured here (a moving average), or the default before any, ms. */
  get startupMs(): number {
    return this.#startupMs ?? this.#settings.defaultStartupMs;
  }

  /** The most requests that arrived in one whole second of the last minute (the 59 before this one). */
  peakArrivalsPerSecond(): number {
    const current = Math.floor(this.#now() / 1000);
    let peak = 0;
    for (let i = 0; i < peakWindowS; i++) {
      const s = this.#arrivalSecond[i]!;
      if (s > current - peakWindowS && s < current) peak = Math.max(peak, this.#arrivals[i]!);
    }
    return peak;
  }

  /**
   * How many requests may wait now: max(minPerFunction, peak x (decision interval + start-up)),
   * at most maxPerFunction. Example: a peak of 3000/s, 1 s + 2 s -> 9000.
   */
  depth(): number {
    const s = this.#settings;
    const sized = Math.ceil((this.peakArrivalsPerSecond() * (s.decisionIntervalMs + this.startupMs)) / 1000);
    return Math.min(s.maxPerFunction, Math.max(s.minPerFunction, sized));
  }

  /**
   * Resolves with a replica to send one request to. Waits (bounded) while none has capacity;
   * rejects with QUEUE_FULL at once when the queue is full (this function's depth, or the
   * gateway's budget of requests or of `bodyBytes`), DEADLINE_EXCEEDED at the deadline.
   */
  /**
   * A replica with room now, when one has it and nobody is queued ahead; undefined otherwise
   * (then acquire() queues the request). Counts the arrival only when it leases: acquire()
   * counts it otherwise. What the invoke path tries first, without a promise or a signal.
   */
  tryAcquire(): Lease | undefined {
    if (this.#closed || this.#queue.length > 0) return undefined;
    const ep = this.#pick();
    if (!ep) return undefined;
    this.#countArrival(this.#now());
    return this.#lease(ep, false);
  }

  acquire(signal: AbortSignal, deadlineMs: number, bodyBytes = 0): Promise<Lease> {
    if (this.#closed) return Promise.reject(new KubefnError('SHUTTING_DOWN', 'the gateway is shutting down'));
    const now = this.#now();
    this.#countArrival(now);
    const ep = this.#pick();
    if (ep && this.#queue.length === 0) return Promise.resolve(this.#lease(ep, false));
    const refused = this.#admit(bodyBytes);
    if (refused) return Promise.reject(refused);
    const cold = this.#endpoints.length === 0;
    if (cold) this.#coldSince ??= now;
    let given = false;
    const giveBack = () => {
      if (given) return;
      given = true;
      this.#budget?.give(bodyBytes);
      if (this.#queue.length === 0 && this.#endpoints.length === 0) this.#coldSince = undefined;
    };
    const waiting = new Promise<Lease>((resolve, reject) => {
      const timer = setTimeout(() => {
        remove();
        reject(
          new KubefnError(
            'DEADLINE_EXCEEDED',
            cold
              ? `function "${this.name}" had no ready replica within ${deadlineMs} ms`
              : `function "${this.name}" had no free replica within ${deadlineMs} ms`,
            { hint: cold ? 'see `fn logs ' + this.name + '` for why replicas do not start' : 'raise scale.max' },
          ),
        );
      }, deadlineMs);
      const onAbort = () => {
        remove();
        reject(signal.reason ?? new Error('aborted'));
      };
      const waiter: Waiter = {
        resolve,
        reject,
        cold,
        cleanup: () => {
          clearTimeout(timer);
          signal.removeEventListener('abort', onAbort);
        },
      };
      const remove = () => {
        waiter.cleanup();
        const i = this.#queue.indexOf(waiter);
        if (i >= 0) this.#queue.splice(i, 1);
        giveBack();
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      const cleanup = waiter.cleanup;
      waiter.cleanup = () => {
        cleanup();
        giveBack();
      };
      this.#queue.push(waiter);
      // A replica may have capacity already (the queue was not empty only because of ordering).
      this.#dispatch();
    });
    // Told once this request is in the queue, so the poke carries it in its count.
    if (cold && this.#queue.length > 0) this.#onNoReplica(this.name);
    return waiting;
  }

  #countArrival(now: number): void {
    const second = Math.floor(now / 1000);
    const i = second % peakWindowS;
    if (this.#arrivalSecond[i] !== second) {
      this.#arrivalSecond[i] = second;
      this.#arrivals[i] = 0;
    }
    this.#arrivals[i]!++;
  }

  /** Undefined when one more request of `bodyBytes` may wait (its room taken); else why not. */
  #admit(bodyBytes: number): QueueFullError | undefined {
    const retryAfterS = Math.max(1, Math.ceil(this.startupMs / 1000));
    const hint = `retry after ${retryAfterS} s, or raise scale.min so the function keeps a replica ready`;
    const depth = this.depth();
    if (this.#queue.length >= depth) {
      const peak = this.peakArrivalsPerSecond();
      return queueFull(
        `function "${this.name}" has ${this.#queue.length} requests waiting, its queue limit ` +
          `(${peak} req/s at peak x (${this.#settings.decisionIntervalMs / 1000} s decision + ${(this.startupMs / 1000).toFixed(1)} s start-up), at least ${this.#settings.minPerFunction}, at most ${this.#settings.maxPerFunction})`,
        hint,
        retryAfterS,
      );
    }
    const over = this.#budget?.take(bodyBytes);
    if (over === 'requests') {
      return queueFull(`the gateway holds ${this.#budget!.requests} queued requests across all functions, its limit (queue.maxRequests); "${this.name}" cannot queue another`, hint, retryAfterS);
    }
    if (over === 'bytes') {
      return queueFull(
        `queued request bodies would pass the gateway's limit of ${this.#budget!.settings.maxBodyBytes} bytes across all functions (queue.maxBodyBytes): ${this.#budget!.bytes} held, this one declares ${bodyBytes}`,
        hint,
        retryAfterS,
      );
    }
    return undefined;
  }

  /** Rejects every waiter and stops listening. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#unsubscribe();
    for (const w of this.#queue.splice(0)) {
      w.cleanup();
      w.reject(new KubefnError('SHUTTING_DOWN', 'the gateway is shutting down'));
    }
  }

  /** Least in-flight among replicas with capacity; ties go round-robin. */
  #pick(): Endpoint | undefined {
    const eps = this.#endpoints;
    const n = eps.length;
    if (n === 0) return undefined;
    const cc = this.#containerConcurrency;
    const split = this.#slots.size > 0;
    let best: Endpoint | undefined;
    let bestLoad = Infinity;
    const start = this.#next++ % n;
    for (let i = 0; i < n; i++) {
      const ep = eps[(start + i) % n]!;
      const load = this.#inFlight.get(ep.id) ?? 0;
      const cap = split ? (this.#slots.get(ep.id) ?? 0) : cc;
      if (cc > 0 && load >= cap) continue;
      if (load < bestLoad) {
        best = ep;
        bestLoad = load;
        if (load === 0) break;
      }
    }
    return best;
  }

  #lease(endpoint: Endpoint, waitedForReplica: boolean): Lease {
    this.#inFlight.set(endpoint.id, (this.#inFlight.get(endpoint.id) ?? 0) + 1);
    let released = false;
    return {
      endpoint,
      waitedForReplica,
      release: () => {
        if (released) return;
        released = true;
        const left = (this.#inFlight.get(endpoint.id) ?? 1) - 1;
        if (left <= 0 && !this.#endpoints.some((e) => e.id === endpoint.id)) this.#inFlight.delete(endpoint.id);
        else this.#inFlight.set(endpoint.id, Math.max(0, left));
        this.#dispatch();
      },
    };
  }

  #dispatch(): void {
    while (this.#queue.length > 0) {
      const ep = this.#pick();
      if (!ep) return;
      const w = this.#queue.shift()!;
      w.cleanup();
      w.resolve(this.#lease(ep, w.cold));
    }
  }
}

function queueFull(message: string, hint: string, retryAfterS: number): QueueFullError {
  return Object.assign(new KubefnError('QUEUE_FULL', message, { hint }), { retryAfterS });
}
