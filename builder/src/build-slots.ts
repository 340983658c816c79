// How many builds run at once: a counting semaphore with a bounded FIFO queue that answers
// QUEUE_FULL at once when full, like Knative's breaker.

import { KubefnError } from '@kubefn/platform';

export type Release = () => void;

export class BuildSlots {
  #running = 0;
  readonly #waiting: (() => void)[] = [];

  constructor(
    readonly maxRunning: number,
    readonly maxWaiting: number,
  ) {}

  /**
   * Resolves with a release function once a slot is free; rejects with QUEUE_FULL at once when
   * `maxWaiting` requests wait already, or with `signal.reason` if aborted while waiting.
   */
  async acquire(signal: AbortSignal): Promise<Release> {
    signal.throwIfAborted();
    if (this.#running < this.maxRunning) {
      this.#running++;
      return this.#release();
    }
    if (this.#waiting.length >= this.maxWaiting) {
      throw new KubefnError('QUEUE_FULL', `${this.#running} builds are running and ${this.#waiting.length} waiting: build queue full`, {
        hint: 'retry later',
      });
    }
    await new Promise<void>((resolve, reject) => {
      const grant = () => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = () => {
        this.#waiting.splice(this.#waiting.indexOf(grant), 1);
        reject(signal.reason);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.#waiting.push(grant);
    });
    return this.#release(); // the slot was handed over by the releaser; #running is unchanged
  }

  /** Idempotent: hands the slot straight to the next waiter, or frees it. */
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
