// Two bounds used across kubefn: a token bucket (a rate with bursts) and a counting semaphore
// with a bounded FIFO queue (so many at once, and no more waiting than that).

/** A token bucket: `ratePerSecond` on average, at most `burst` at once. Starts full. */
export class TokenBucket {
  readonly ratePerSecond: number;
  readonly burst: number;
  #tokens: number;
  #refilledAt: number;

  constructor(
    ratePerSecond: number,
    burst: number,
    readonly now: () => number = Date.now,
  ) {
    this.ratePerSecond = Math.max(0.001, ratePerSecond);
    this.burst = Math.max(1, burst);
    this.#tokens = this.burst;
    this.#refilledAt = now();
  }

  /** Takes a token if one is there. */
  tryTake(): boolean {
    this.#refill();
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  /** Waits for a token and takes it. */
  async take(): Promise<void> {
    while (!this.tryTake()) {
      await new Promise((resolve) => setTimeout(resolve, Math.ceil(((1 - this.#tokens) / this.ratePerSecond) * 1000)));
    }
  }

  #refill(): void {
    const now = this.now();
    this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#refilledAt) / 1000) * this.ratePerSecond);
    this.#refilledAt = now;
  }
}

export type Release = () => void;

/** Thrown by `Semaphore.acquire` when `maxWaiting` callers wait already. */
export class SemaphoreFull extends Error {
  constructor(
    readonly running: number,
    readonly waiting: number,
  ) {
    super(`${running} running and ${waiting} waiting`);
    this.name = 'SemaphoreFull';
  }
}

/** A counting semaphore whose queue is FIFO and bounded; a release hands the slot straight to the next waiter. */
export class Semaphore {
  #running = 0;
  readonly #waiting: (() => void)[] = [];

  constructor(
    readonly max: number,
    readonly maxWaiting = Number.POSITIVE_INFINITY,
  ) {}

  get running(): number {
    return this.#running;
  }

  get waiting(): number {
    return this.#waiting.length;
  }

  /**
   * Resolves with an idempotent release once a slot is free; throws SemaphoreFull at once when
   * `maxWaiting` callers wait already, or rejects with `signal.reason` if aborted while waiting.
   */
  async acquire(signal?: AbortSignal): Promise<Release> {
    signal?.throwIfAborted();
    if (this.#running < this.max) {
      this.#running++;
      return this.#release();
    }
    if (this.#waiting.length >= this.maxWaiting) throw new SemaphoreFull(this.#running, this.#waiting.length);
    await new Promise<void>((resolve, reject) => {
      const grant = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = () => {
        this.#waiting.splice(this.#waiting.indexOf(grant), 1);
        reject(signal!.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiting.push(grant);
    });
    return this.#release(); // handed over by the releaser: #running is unchanged
  }

  #release(): Release {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#waiting.shift();
      if (next) next();
      else this.#running--;
    };
  }
}
