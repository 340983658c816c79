// A short-lived cache of function specs in front of the driver, so the invoke path does not
// ask the driver on every request.

import { isKubefnError, timeoutMs, type Driver, type FunctionSpec } from '@kubefn/platform';

export interface CatalogOptions {
  /** How long a known spec is trusted, ms. */
  ttlMs?: number;
  /** How long "no such function" is trusted, ms. */
  negativeTtlMs?: number;
  /** Entries kept at most; the oldest go first. */
  maxEntries?: number;
}

/** A known function and what the invoke path derives from its spec, computed once per entry. */
export interface CatalogEntry {
  spec: FunctionSpec;
  timeoutMs: number;
}

interface Entry {
  fn: CatalogEntry | undefined;
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

  /** The function called `name`, or undefined if there is none. */
  /** The entry when the cache holds a fresh one (a known function), without a promise; else undefined. */
  peek(name: string): CatalogEntry | undefined {
    const e = this.#entries.get(name);
    return e?.fn && Date.now() - e.at < this.#ttlMs ? e.fn : undefined;
  }

  async get(name: string): Promise<CatalogEntry | undefined> {
    const now = Date.now();
    const e = this.#entries.get(name);
    if (e && now - e.at < (e.fn ? this.#ttlMs : this.#negativeTtlMs)) return e.fn;
    let spec: FunctionSpec | undefined;
    try {
      spec = (await this.driver.get(name)).spec;
    } catch (err) {
      if (!isKubefnError(err, 'NOT_FOUND')) throw err;
    }
    return this.set(name, spec);
  }

  set(name: string, spec: FunctionSpec | undefined): CatalogEntry | undefined {
    const fn = spec && { spec, timeoutMs: timeoutMs(spec) };
    this.#entries.delete(name);
    this.#entries.set(name, { fn, at: Date.now() });
    if (this.#entries.size > this.#maxEntries) this.#entries.delete(this.#entries.keys().next().value!);
    return fn;
  }

  invalidate(name: string): void {
    this.#entries.delete(name);
  }
}
