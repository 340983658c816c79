// The driver under a gateway worker of `fn up --workers`: a thin client of the primary, which
// holds the real driver. A function's status comes over loopback HTTP (the catalog asks at most
// once per function per few seconds); its ready replicas are pushed over IPC, watched from the
// first router that asks until the last one lets go. Deploys, removals, scaling and logs never
// reach a worker: it passes the management API on to the primary's gateway (forward.ts), so here
// they are NOT_SUPPORTED.

import {
  errorFromBody,
  KubefnError,
  MutableEndpointSet,
  type Driver,
  type Endpoint,
  type EndpointSet,
  type FunctionStatus,
  type LogLine,
} from '@kubefn/platform';
import { functionStatusPath, type ToPrimary } from './worker-protocol.js';

export interface PrimaryDriverOptions {
  /** The primary's driver kind. */
  kind: string;
  /** Base URL of the primary's internal server. */
  internal: string;
  /** The internal token of this run. */
  token: string;
  /** Sends a message to the primary over IPC. */
  send: (message: ToPrimary) => void;
  /** Longest a status request may take, ms (default 5000). */
  timeoutMs?: number;
}

/** A set that tells its owner when its last listener left, so the primary stops pushing it. */
class WatchedEndpointSet extends MutableEndpointSet {
  constructor(private readonly onIdle: () => void) {
    super();
  }

  override subscribe(listener: (endpoints: readonly Endpoint[]) => void): () => void {
    const off = super.subscribe(listener);
    return () => {
      off();
      if (this.listenerCount === 0) this.onIdle();
    };
  }
}

export class PrimaryDriver implements Driver {
  readonly kind: string;
  readonly #o: PrimaryDriverOptions;
  readonly #sets = new Map<string, WatchedEndpointSet>();

  constructor(options: PrimaryDriverOptions) {
    this.kind = options.kind;
    this.#o = options;
  }

  async get(name: string): Promise<FunctionStatus> {
    let res: Response;
    try {
      res = await fetch(`${this.#o.internal}${functionStatusPath(name)}`, {
        headers: { authorization: `Bearer ${this.#o.token}` },
        signal: AbortSignal.timeout(this.#o.timeoutMs ?? 5000),
      });
    } catch (err) {
      throw new KubefnError('UNAVAILABLE', `the primary did not answer for function "${name}": ${(err as Error).message}`, { hint: 'the platform may be stopping; retry', cause: err });
    }
    const text = await res.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // not JSON: errorFromBody takes the text
    }
    if (!res.ok) throw errorFromBody(res.status, body);
    return body as FunctionStatus;
  }

  endpoints(name: string): EndpointSet {
    let set = this.#sets.get(name);
    if (!set) {
      const created: WatchedEndpointSet = new WatchedEndpointSet(() => {
        if (this.#sets.get(name) !== created) return;
        this.#sets.delete(name);
        this.#o.send({ kind: 'unwatch', name });
      });
      set = created;
      this.#sets.set(name, set);
      this.#o.send({ kind: 'watch', name });
    }
    return set;
  }

  /** The primary pushed `name`'s ready replicas. */
  pushed(name: string, endpoints: readonly Endpoint[]): void {
    this.#sets.get(name)?.set(endpoints);
  }

  /** Functions watched now (tests). */
  get watched(): string[] {
    return [...this.#sets.keys()];
  }

  deploy(): Promise<FunctionStatus> {
    return Promise.reject(notHere('deploy'));
  }

  remove(): Promise<void> {
    return Promise.reject(notHere('remove'));
  }

  list(): Promise<FunctionStatus[]> {
    return Promise.reject(notHere('list'));
  }

  scale(): Promise<void> {
    return Promise.reject(notHere('scale'));
  }

  logs(): AsyncIterable<LogLine> {
    throw notHere('logs');
  }

  async close(): Promise<void> {
    for (const set of this.#sets.values()) set.set([]);
    this.#sets.clear();
  }
}

function notHere(what: string): KubefnError {
  return new KubefnError('NOT_SUPPORTED', `a gateway worker does not ${what} functions: the primary's gateway does`, {
    hint: 'send management calls to the platform\'s port: the workers pass them on to the primary',
  });
}
