// A short-lived cache of function specs in front of the driver, so the invoke path does not
// ask the driver on every request.

import { isKubefnError, type Driver, type FunctionSpec } from '@kubefn/platform';

export interface CatalogOptions {
  /** How long a known spec is trusted, ms. */
  ttlMs?: number;
  /** How long "no such function" is trusted, ms. */
  negativeTtlMs?: number;
  /** Entries kept at most; the oldest go first. */
  maxEntries?: number;
}

interface Entry {
  spec: FunctionSpec | undefined;
  at: number;
}

export class FunctionCatalog {
  readonly #entries = new Map<string, Entry>();
  readonly #ttlMs: number;
  readonly #negativeTtlMs: number;
  readonly #maxEntries: number;

  constructor(
    private readonly driver: Pick<Driver, 'get'>,
    options: CatalogOptions = {},
  ) {
    this.#ttlMs = options.ttlMs ?? 5000;
    this.#negativeTtlMs = options.negativeTtlMs ?? 1000;
    this.#maxEntries = options.maxEntries ?? 10_000;
  }

  /** The spec of `name`, or undefined if no such function. */
  async get(name: string): Promise<FunctionSpec | undefined> {
    const now = Date.now();
    const e = this.#entries.get(name);
    if (e && now - e.at < (e.spec ? this.#ttlMs : this.#negativeTtlMs)) return e.spec;
    let spec: FunctionSpec | undefined;
    try {
      spec = (await this.driver.get(name)).spec;
    } catch (err) {
      if (!isKubefnError(err, 'NOT_FOUND')) throw err;
    }
    this.set(name, spec);
    return spec;
  }

  set(name: string, spec: FunctionSpec | undefined): void {
    this.#entries.delete(name);
    this.#entries.set(name, { spec, at: Date.now() });
    if (this.#entries.size > this.#maxEntries) this.#entries.delete(this.#entries.keys().next().value!);
  }

  invalidate(name: string): void {
    this.#entries.delete(name);
  }
}
