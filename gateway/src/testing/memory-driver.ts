// An in-memory Driver and bundle store for the gateway's inject() tests: no processes, no
// sockets; it records what the gateway asked of it and fails on demand.

import {
  KubefnError,
  MutableEndpointSet,
  parseFunctionSpec,
  type Driver,
  type ErrorBody,
  type FunctionSpec,
  type FunctionStatus,
  type LogLine,
  type LogOptions,
} from '@kubefn/platform';
import type { BundleSink } from '../context.js';

type Operation = 'deploy' | 'remove' | 'list' | 'get' | 'scale';

export class MemoryDriver implements Driver {
  readonly kind = 'memory';
  readonly #functions = new Map<string, { spec: FunctionSpec; replicas: number; createdAt: string; generation: number; loadError?: ErrorBody }>();
  readonly #sets = new Map<string, MutableEndpointSet>();
  readonly #failures = new Map<Operation, unknown>();
  /** Every scale(name, n) call, in order. */
  readonly scaleCalls: [string, number][] = [];
  /** The options of every logs() call, in order. */
  readonly logCalls: LogOptions[] = [];
  /** What logs() yields for any function. */
  logLines: LogLine[] = [];
  /** What of a spec this driver says it does not enforce (FunctionStatus.warnings). */
  specWarnings: (spec: FunctionSpec) => string[] = () => [];

  /** The next call of `op` throws `err` (once). */
  failNext(op: Operation, err: unknown): void {
    this.#failures.set(op, err);
  }

  async deploy(input: FunctionSpec): Promise<FunctionStatus> {
    this.#maybeFail('deploy');
    const spec = parseFunctionSpec(input);
    const old = this.#functions.get(spec.name);
    const replicas = old ? Math.max(old.replicas, spec.scale.min) : Math.max(spec.scale.min, spec.scale.initial);
    // Every deploy is a new generation here; endpoints a test adds run the latest one.
    const generation = (old?.generation ?? 0) + 1;
    this.#functions.set(spec.name, { spec, replicas, createdAt: old?.createdAt ?? new Date().toISOString(), generation });
    return this.get(spec.name);
  }

  async remove(name: string): Promise<void> {
    this.#maybeFail('remove');
    if (!this.#functions.delete(name)) throw notFound(name);
    this.endpoints(name).set([]);
  }

  async list(): Promise<FunctionStatus[]> {
    this.#maybeFail('list');
    return Promise.all([...this.#functions.keys()].sort().map((name) => this.get(name)));
  }

  async get(name: string): Promise<FunctionStatus> {
    this.#maybeFail('get');
    const fn = this.#functions.get(name);
    if (!fn) throw notFound(name);
    const ready = this.endpoints(name).current().length;
    return {
      spec: structuredClone(fn.spec),
      replicas: fn.replicas,
      readyReplicas: ready,
      updatedReplicas: ready,
      generation: fn.generation,
      observedGeneration: fn.generation,
      createdAt: fn.createdAt,
      updatedAt: fn.createdAt,
      ...(fn.loadError ? { loadError: { ...fn.loadError }, lastError: { ...fn.loadError } } : {}),
      ...(this.specWarnings(fn.spec).length ? { warnings: this.specWarnings(fn.spec) } : {}),
    };
  }

  /** Reports, as a real driver would after a replica's load-failed line, that the current spec's handler cannot load. */
  failLoad(name: string, error: { message: string; location?: string }): void {
    const fn = this.#functions.get(name);
    if (!fn) throw notFound(name);
    fn.loadError = { code: 'LOAD_FAILED', ...error };
  }

  async scale(name: string, replicas: number): Promise<void> {
    this.#maybeFail('scale');
    const fn = this.#functions.get(name);
    if (!fn) throw notFound(name);
    this.scaleCalls.push([name, replicas]);
    fn.replicas = replicas;
  }

  /** Replicas never become ready on their own here: a test adds endpoints if it wants any. */
  endpoints(name: string): MutableEndpointSet {
    let set = this.#sets.get(name);
    if (!set) this.#sets.set(name, (set = new MutableEndpointSet()));
    return set;
  }

  async *logs(name: string, options: LogOptions): AsyncIterable<LogLine> {
    this.logCalls.push(options);
    for (const line of this.logLines) yield { ...line, name };
  }

  async close(): Promise<void> {}

  #maybeFail(op: Operation): void {
    if (!this.#failures.has(op)) return;
    const err = this.#failures.get(op);
    this.#failures.delete(op);
    throw err;
  }
}

/** Bundles kept in a map, with the byte limit the gateway passes enforced as a real store does. */
export class MemoryBundles implements BundleSink {
  readonly blobs = new Map<string, Buffer>();

  async has(digest: string): Promise<boolean> {
    return this.blobs.has(digest);
  }

  async put(digest: string, source: AsyncIterable<Uint8Array>, options: { maxBytes: number }): Promise<void> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of source) {
      size += chunk.byteLength;
      if (size > options.maxBytes) throw new KubefnError('BODY_TOO_LARGE', `bundle is over ${options.maxBytes} bytes`);
      chunks.push(Buffer.from(chunk));
    }
    this.blobs.set(digest, Buffer.concat(chunks));
  }
}

const notFound = (name: string) => new KubefnError('NOT_FOUND', `function "${name}" not found`, { hint: 'list functions with `fn list`' });
