// A job that may be asked for again while it runs: the asks made meanwhile become one more run
// after it (not one each), and every caller waits for a run that started after its ask.

export class Coalesced {
  readonly #job: () => Promise<void>;
  readonly #stopped: () => boolean;
  #running: Promise<void> | undefined;
  #again = false;

  constructor(job: () => Promise<void>, stopped: () => boolean) {
    this.#job = job;
    this.#stopped = stopped;
  }

  run(): Promise<void> {
    if (this.#running) {
      this.#again = true;
      return this.#running;
    }
    this.#running = (async () => {
      try {
        do {
          this.#again = false;
          await this.#job();
        } while (this.#again && !this.#stopped());
      } finally {
        this.#running = undefined;
      }
    })();
    return this.#running;
  }

  /** The run in progress, if any. */
  get running(): Promise<void> | undefined {
    return this.#running;
  }
}
