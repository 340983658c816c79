// Live endpoint sets by function name, for drivers: one set per name, handed out before a deploy too.

import { MutableEndpointSet, type Endpoint } from './driver.js';

/** A MutableEndpointSet that knows whether anyone subscribed, so idle ones can be dropped. */
export class CountedEndpointSet extends MutableEndpointSet {
  #listeners = 0;

  get listeners(): number {
    return this.#listeners;
  }

  override subscribe(listener: (endpoints: readonly Endpoint[]) => void): () => void {
    const off = super.subscribe(listener);
    let done = false;
    this.#listeners++;
    return () => {
      if (!done) this.#listeners--;
      done = true;
      off();
    };
  }
}

/**
 * The sets a driver hands out from endpoints(name). A caller may ask for any name, deployed or
 * not, so past `maxIdle` sets the ones for unknown names that nobody subscribed to are dropped.
 */
export class EndpointSets {
  readonly #sets = new Map<string, CountedEndpointSet>();
  readonly #isKnown: (name: string) => boolean;
  readonly #maxIdle: number;

  constructor(isKnown: (name: string) => boolean, maxIdle = 1024) {
    this.#isKnown = isKnown;
    this.#maxIdle = maxIdle;
  }

  get(name: string): CountedEndpointSet {
    let set = this.#sets.get(name);
    if (set) return set;
    if (this.#sets.size >= this.#maxIdle) {
      for (const [n, s] of this.#sets) if (s.listeners === 0 && !this.#isKnown(n)) this.#sets.delete(n);
    }
    set = new CountedEndpointSet();
    this.#sets.set(name, set);
    return set;
  }
}
