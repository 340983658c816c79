// How many builds run at once: a counting semaphore with a bounded FIFO queue that answers
// QUEUE_FULL at once when full, like Knative's breaker.

import { KubefnError, Semaphore, SemaphoreFull, type Release } from '@kubefn/platform';

export type { Release };

export class BuildSlots {
  readonly #semaphore: Semaphore;

  constructor(
    readonly maxRunning: number,
    readonly maxWaiting: number,
  ) {
    this.#semaphore = new Semaphore(maxRunning, maxWaiting);
  }

  /**
   * Resolves with a release function once a slot is free; rejects with QUEUE_FULL at once when
   * `maxWaiting` requests wait already, or with `signal.reason` if aborted while waiting.
   */
  async acquire(signal: AbortSignal): Promise<Release> {
    try {
      return await this.#semaphore.acquire(signal);
    } catch (err) {
      if (!(err instanceof SemaphoreFull)) throw err;
      throw new KubefnError('QUEUE_FULL', `${err.running} builds are running and ${err.waiting} waiting: build queue full`, {
        hint: 'retry later',
      });
    }
  }
}
