// The activator and load balancer for one function: picks the least-loaded ready replica under
// its container concurrency, or holds the request in a bounded queue until one is free.

import { KubefnError, type Endpoint, type EndpointSet } from '@kubefn/platform';

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
  /** Max requests waiting for capacity; beyond it requests get 503 at once. */
  maxQueue: number;
  /** Called when a request finds no ready replica at all. */
  onNoReplica: (name: string) => void;
}

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
  readonly #maxQueue: number;
  readonly #onNoReplica: (name: string) => void;
  readonly #unsubscribe: () => void;
  #next = 0;
  #closed = false;

  constructor(options: RouterOptions) {
    this.name = options.name;
    this.#containerConcurrency = options.containerConcurrency;
    this.#maxQueue = options.maxQueue;
    this.#onNoReplica = options.onNoReplica;
    this.#endpoints = options.endpoints.current();
    this.#unsubscribe = options.endpoints.subscribe((eps) => {
      this.#endpoints = eps;
      const ids = new Set(eps.map((e) => e.id));
      for (const [id, n] of this.#inFlight) if (n === 0 && !ids.has(id)) this.#inFlight.delete(id);
      this.#dispatch();
    });
  }

  set containerConcurrency(n: number) {
    if (n === this.#containerConcurrency) return;
    this.#containerConcurrency = n;
    this.#dispatch();
  }

  get queued(): number {
    return this.#queue.length;
  }

  get readyReplicas(): number {
    return this.#endpoints.length;
  }

  /**
   * Resolves with a replica to send one request to. Waits (bounded) while none has capacity;
   * rejects with QUEUE_FULL at once when the queue is full, DEADLINE_EXCEEDED at the deadline.
   */
  acquire(signal: AbortSignal, deadlineMs: number): Promise<Lease> {
    if (this.#closed) return Promise.reject(new KubefnError('SHUTTING_DOWN', 'the gateway is shutting down'));
    const ep = this.#pick();
    if (ep && this.#queue.length === 0) return Promise.resolve(this.#lease(ep, false));
    if (this.#queue.length >= this.#maxQueue) {
      return Promise.reject(
        new KubefnError('QUEUE_FULL', `function "${this.name}" has ${this.#queue.length} requests waiting: pending request queue full`, {
          hint: 'raise scale.max or scale.containerConcurrency, or retry later',
        }),
      );
    }
    const cold = this.#endpoints.length === 0;
    if (cold) this.#onNoReplica(this.name);
    return new Promise<Lease>((resolve, reject) => {
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
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      this.#queue.push(waiter);
      // A replica may have capacity already (the queue was not empty only because of ordering).
      this.#dispatch();
    });
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
    const cap = this.#containerConcurrency;
    let best: Endpoint | undefined;
    let bestLoad = Infinity;
    const start = this.#next++ % n;
    for (let i = 0; i < n; i++) {
      const ep = eps[(start + i) % n]!;
      const load = this.#inFlight.get(ep.id) ?? 0;
      if (cap > 0 && load >= cap) continue;
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
