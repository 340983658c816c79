// Live endpoint sets by function name, for drivers: one set per name, handed out before a deploy too.

import { MutableEndpointSet } from './driver.js';

/**
 * The sets a driver hands out from endpoints(name). A caller may ask for any name, deployed or
 * not, so past `maxIdle` sets the ones for unknown names that nobody subscribed to are dropped.
 */
export class EndpointSets {
  readonly #sets = new Map<string, MutableEndpointSet>();
  readonly #isKnown: (name: string) => boolean;
  readonly #maxIdle: number;

  constructor(isKnown: (name: string) => boolean, maxIdle = 1024) {
    this.#isKnown = isKnown;
    this.#maxIdle = maxIdle;
  }

  get(name: string): MutableEndpointSet {
    let set = this.#sets.get(name);
    if (set) return set;
    if (this.#sets.size >= this.#maxIdle) {
      for (const [n, s] of this.#sets) if (s.listenerCount === 0 && !this.#isKnown(n)) this.#sets.delete(n);
    }
    set = new MutableEndpointSet();
    this.#sets.set(name, set);
    return set;
  }
}
