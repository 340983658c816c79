// One call of a function: find it, hold a lease on a replica through its router (waiting for
// one to start, or in its bounded queue), send the request and hand back the replica's answer.
// The HTTP invoke route (invoke.ts) and event deliveries (events/call.ts) both call through here,
// so scale from zero, concurrency limits, the queue, retries, metrics and call ids are the same
// for both; only what surrounds a call (a socket and its reply, or a buffered event) differs.

import type { ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { Agent, errors as undiciErrors, Pool, type Dispatcher } from 'undici';
import { isKubefnError, KubefnError, runtimeHeaders, validateName } from '@kubefn/platform';
import type { CatalogEntry } from './catalog.js';
import { hopByHop } from './headers.js';
import { checkNamespace } from './openfaas.js';
import type { GatewayMetrics } from './metrics.js';
import type { RouterPool } from './router-pool.js';
import { ReplicaClient, ReplicaHopError, type ReplicaHandler } from './replica-client.js';
import type { Lease } from './router.js';
import type { ConcurrencyStats } from './stats.js';

/** How long the gateway waits past the function's own timeout before cutting a replica off, ms. */
export const upstreamSlackMs = 5000;

/** What a call needs from the gateway (a subset of GatewayContext). */
export interface CallerContext {
  catalog: { get(name: string): Promise<CatalogEntry | undefined>; peek(name: string): CatalogEntry | undefined };
  routers: RouterPool;
  stats: ConcurrencyStats;
  metrics: GatewayMetrics;
  invocations: Map<string, number>;
  options: { maxBodyBytes: number; pipelining: number };
}

export interface ReplicaRequest {
  method: string;
  /** Path and query as the replica sees them. */
  path: string;
  /** End-to-end headers, the call id and start time among them. */
  headers: Record<string, string | string[]>;
  body: Readable | Buffer | null;
  /** Aborts the call (the caller left). */
  signal: AbortSignal;
}

/** A call the invoke path streams: its answer is written straight into the caller's response. */
export interface StreamedRequest {
  method: string;
  path: string;
  /** End-to-end headers as a flat [name, value, ...] list, the call id and start time among them. */
  headers: string[];
  body: Readable | null;
}

/** Where a streamed call's answer goes. */
export interface AnswerSink {
  res: ServerResponse;
  /**
   * The replica answered `status`: called once, before anything is written, with its end-to-end
   * headers (a flat list); returns the headers the caller gets.
   */
  head(status: number, headers: string[]): string[];
  /** Set by stream(): what cuts the call now (the caller left). An object, not a closure: see StreamTry. */
  current?: { abort(): void } | undefined;
}

export interface ReplicaAnswer {
  /** The replica's answer, without the runtime's headers meant for the gateway (overloaded, draining). */
  upstream: Dispatcher.ResponseData;
  /** Held until the answer's body is read or dropped: release it then. */
  lease: Lease;
}

export class FunctionCaller {
  readonly #ctx: CallerContext;
  readonly #agent = new Agent(replicaPoolOptions);
  /**
   * The invoke path's connection pool per replica, used directly: undici's Agent finds the pool
   * for each call's origin on every dispatch, a cost the hot path need not pay. A replica's
   * address is not reused while the gateway runs long, so the oldest pools are closed past
   * maxReplicaPools (the endpoints they served are gone, or they are made again).
   */
  readonly #pools = new Map<string, Pool>();
  /** The same for calls without a body, which replica-client.ts carries (see there why). */
  readonly #replicas = new Map<string, ReplicaClient>();

  readonly #durations = new Map<string, { observe(seconds: number): void }>();
  readonly #requestCounters = new Map<string, { inc(): void }>();

  constructor(ctx: CallerContext) {
    this.#ctx = ctx;
  }

  /**
   * The function `rawName` names (OpenFaaS callers may write `name.openfaas-fn`); NOT_FOUND when
   * there is none, BODY_TOO_LARGE when `bodyBytes` is over the gateway's limit.
   */
  async find(rawName: string, bodyBytes: number): Promise<{ name: string; fn: CatalogEntry }> {
    const name = functionName(rawName);
    const fn = await this.#ctx.catalog.get(name);
    if (!fn) throw new KubefnError('NOT_FOUND', `no function named "${name}"`, { hint: 'see `fn list`' });
    const limit = this.#ctx.options.maxBodyBytes;
    if (bodyBytes > limit) throw new KubefnError('BODY_TOO_LARGE', `request body of ${bodyBytes} bytes is over the ${limit} byte limit`);
    return { name, fn };
  }

  /** find() from the catalog's cache alone, without a promise; undefined when that needs the driver (or fails). */
  peek(rawName: string, bodyBytes: number): { name: string; fn: CatalogEntry } | undefined {
    if (bodyBytes > this.#ctx.options.maxBodyBytes || !plainName.test(rawName)) return undefined;
    const fn = this.#ctx.catalog.peek(rawName);
    return fn ? { name: rawName, fn } : undefined;
  }

  /** Counts a call of `name` as started; the function returned counts it finished with its status. */
  begin(name: string): (status: number) => void {
    const ctx = this.#ctx;
    ctx.stats.begin(name);
    ctx.invocations.set(name, (ctx.invocations.get(name) ?? 0) + 1);
    return (status) => {
      ctx.stats.end(name);
      this.#requests(name, status).inc();
    };
  }

  /** The time from a call's start until its replica answered, for the duration histogram. */
  observeDuration(name: string, seconds: number): void {
    let child = this.#durations.get(name);
    if (!child) {
      child = this.#ctx.metrics.duration.labels({ function: name });
      if (this.#durations.size >= maxKeptChildren) this.#durations.clear();
      this.#durations.set(name, child);
    }
    child.observe(seconds);
  }

  /** The labelled counter child of (name, status), kept: prom-client hashes a labels object on every inc(). */
  #requests(name: string, status: number): { inc(): void } {
    const key = `${name} ${status}`;
    let child = this.#requestCounters.get(key);
    if (!child) {
      child = this.#ctx.metrics.requests.labels({ function: name, code: String(status) });
      if (this.#requestCounters.size >= maxKeptChildren) this.#requestCounters.clear();
      this.#requestCounters.set(key, child);
    }
    return child;
  }

  /**
   * Sends `req` to a replica of `fn`, through its router. A call is tried again on another
   * replica (up to 3 attempts) when the first could not take it and nothing of it was sent: the
   * connection was refused or closed before the replica read a byte of the body, or the replica
   * refused a call without a body as draining or overloaded. A call whose replica held it past
   * the function's timeout before failing is not tried again: it had its time there, and one
   * that wedged its replica (a handler that spins until the liveness probe kills it) would wedge
   * the next. Resolves with the replica's answer, or undefined when `req.signal` aborted the
   * call (nobody is left to answer).
   */
  async send(name: string, fn: CatalogEntry, req: ReplicaRequest): Promise<ReplicaAnswer | undefined> {
    const router = this.#ctx.routers.get(fn.spec);
    const body = req.body === null || Buffer.isBuffer(req.body) ? undefined : new UntouchedBody(req.body);
    const bodyBytes = this.#ctx.routers.bodyBytes(req.body, req.headers['content-length']);
    for (let attempt = 1; ; attempt++) {
      const waitStart = process.hrtime.bigint();
      const held = await router.acquire(req.signal, fn.timeoutMs, bodyBytes);
      // The service time runs from here, the lease, so the wait for it is not in it.
      const lease = this.#ctx.stats.track(name, held);
      if (lease.waitedForReplica) {
        this.#ctx.metrics.coldStart.observe({ function: name }, Number(process.hrtime.bigint() - waitStart) / 1e9);
      }
      const sentAt = Date.now();
      let upstream: Dispatcher.ResponseData;
      try {
        upstream = await this.#agent.request({
          origin: lease.endpoint.url,
          path: req.path,
          method: req.method as Dispatcher.HttpMethod,
          headers: req.headers,
          body: body ? body.attempt() : req.body,
          signal: req.signal,
          headersTimeout: fn.timeoutMs + upstreamSlackMs,
          bodyTimeout: fn.timeoutMs + upstreamSlackMs,
        });
      } catch (err) {
        const unsent = req.body === null ? isConnectError(err) : body ? !body.touched && isConnectError(err) : isRefused(err);
        // A call that never reached the replica served nothing: not a service time.
        if (unsent) held.release();
        else lease.release();
        if (req.signal.aborted) return undefined;
        if (attempt < maxAttempts && unsent && Date.now() - sentAt < fn.timeoutMs) continue;
        throw replicaError(name, lease, err, fn.timeoutMs);
      }
      const retryable = req.body === null && upstream.statusCode === 503 &&
        (upstream.headers[runtimeHeaders.overloaded] !== undefined || upstream.headers[runtimeHeaders.draining] !== undefined);
      if (retryable && attempt < maxAttempts) {
        upstream.body.resume();
        held.release(); // refused, to be tried elsewhere: not a service time
        continue;
      }
      // Between the runtime and the gateway only: no caller sees them.
      delete upstream.headers[runtimeHeaders.overloaded];
      delete upstream.headers[runtimeHeaders.draining];
      return { upstream, lease };
    }
  }

  /**
   * Sends `req` to a replica of `fn` and streams the answer into `sink.res`, both bodies with
   * backpressure; the same tries as send(). Resolves once the answer's head is written (its body
   * streams on), false when the caller left first; rejects with what to answer when no replica
   * answered. undici's dispatch API with raw header lists: no header objects, no AbortSignal.
   */
  async stream(name: string, fn: CatalogEntry, req: StreamedRequest, sink: AnswerSink): Promise<boolean> {
    const router = this.#ctx.routers.get(fn.spec);
    const body = req.body === null ? undefined : new UntouchedBody(req.body);
    for (let attempt = 1; ; attempt++) {
      let held = router.tryAcquire();
      let waitStart: number | undefined;
      if (!held) {
        waitStart = performance.now();
        const left = new AbortController();
        sink.current = { abort: () => left.abort(new Error('client disconnected')) };
        try {
          held = await router.acquire(left.signal, fn.timeoutMs, this.#ctx.routers.bodyBytes(req.body, headerValue(req.headers, 'content-length')));
        } catch (err) {
          if (left.signal.aborted) return false;
          throw err;
        }
      }
      const lease = this.#ctx.stats.track(name, held);
      if (lease.waitedForReplica && waitStart !== undefined) {
        this.#ctx.metrics.coldStart.observe({ function: name }, (performance.now() - waitStart) / 1000);
      }
      const sentAt = Date.now();
      const outcome = await this.#dispatch(lease, req, body, sink, fn.timeoutMs);
      if (outcome === 'answered') return true;
      if (outcome === 'left') return false;
      const { err, unsent } = outcome;
      if (unsent) held.release();
      else lease.release();
      if (attempt < maxAttempts && unsent && Date.now() - sentAt < fn.timeoutMs) continue;
      throw replicaError(name, lease, err, fn.timeoutMs);
    }
  }

  /** One try of stream() on `lease`'s replica. */
  #dispatch(lease: Lease, req: StreamedRequest, body: UntouchedBody | undefined, sink: AnswerSink, fnTimeoutMs: number): Promise<TryOutcome> {
    return new Promise((resolve) => {
      const attempt = new StreamTry(lease, req.body === null, body, sink, resolve);
      sink.current = attempt;
      const timeoutMs = fnTimeoutMs + upstreamSlackMs;
      if (body === undefined) {
        this.#replicaFor(lease.endpoint.url).dispatch({ method: req.method, path: req.path, headers: req.headers, timeoutMs }, attempt);
        return;
      }
      this.#poolFor(lease.endpoint.url).dispatch(
        {
          path: req.path,
          method: req.method as Dispatcher.HttpMethod,
          headers: req.headers,
          body: body.attempt(),
          headersTimeout: timeoutMs,
          bodyTimeout: timeoutMs,
        },
        undiciHandler(attempt),
      );
    });
  }

  #replicaFor(url: string): ReplicaClient {
    return keptFor(this.#replicas, url, () => new ReplicaClient(url, {
      keepAliveMs: replicaPoolOptions.keepAliveTimeout,
      connectTimeoutMs: replicaPoolOptions.connect.timeout,
      pipelining: this.#ctx.options.pipelining,
    }));
  }

  #poolFor(url: string): Pool {
    return keptFor(this.#pools, url, () => new Pool(url, replicaPoolOptions));
  }

  async close(): Promise<void> {
    await Promise.all([this.#agent.close(), ...[...this.#pools.values()].map((p) => p.close()), ...[...this.#replicas.values()].map((c) => c.close())]);
    this.#pools.clear();
    this.#replicas.clear();
  }
}

type TryOutcome = 'answered' | 'left' | { err: unknown; unsent: boolean };

/**
 * One try of a streamed call: the handler either client calls, writing the replica's answer into
 * the caller's response. A class rather than closures around the try: a closure kept on the sink
 * holds every variable of its scope, and V8, finding such objects alive at each young-generation
 * collection, took to allocating them in the old generation, where they cost a full collection.
 */
class StreamTry implements ReplicaHandler {
  #answered = false;
  #done = false;
  #released = false;
  #abortCall: ((err: Error) => void) | undefined;
  #resumeCall: (() => void) | undefined;
  readonly #lease: Lease;
  readonly #bodiless: boolean;
  readonly #body: UntouchedBody | undefined;
  readonly #sink: AnswerSink;
  readonly #resolve: (outcome: TryOutcome) => void;

  constructor(lease: Lease, bodiless: boolean, body: UntouchedBody | undefined, sink: AnswerSink, resolve: (outcome: TryOutcome) => void) {
    this.#lease = lease;
    this.#bodiless = bodiless;
    this.#body = body;
    this.#sink = sink;
    this.#resolve = resolve;
  }

  /** The caller left: the call is cut, and stream() hears 'left' unless the answer had begun. */
  abort(): void {
    if (!this.#answered && !this.#done) {
      this.#done = true;
      this.#resolve('left');
    }
    this.#abortCall?.(new Error('client disconnected'));
    this.#release();
  }

  onConnect(abort: (err: Error) => void): void {
    this.#abortCall = abort;
  }

  onHeaders(status: number, raw: string[], resume: () => void): boolean {
    const headers: string[] = [];
    let refusal = false;
    for (let i = 0; i < raw.length; i += 2) {
      const key = raw[i]!;
      if (key === runtimeHeaders.overloaded || key === runtimeHeaders.draining) {
        refusal = true;
        continue;
      }
      if (hopByHop.has(key) || gatewaySets.has(key)) continue;
      headers.push(key, raw[i + 1]!);
    }
    // Refused before the call ran (overloaded or draining): another replica may take it.
    if (status === 503 && refusal && this.#bodiless) {
      this.#done = true;
      this.#abortCall?.(new Error('refused by the replica'));
      this.#resolve({ err: new KubefnError('UNAVAILABLE', 'the replica refused the call'), unsent: true });
      return false;
    }
    this.#answered = true;
    this.#resumeCall = resume;
    const res = this.#sink.res;
    res.writeHead(status, this.#sink.head(status, headers));
    this.#resolve('answered');
    return true;
  }

  onData(chunk: Buffer): boolean {
    const res = this.#sink.res;
    if (res.write(chunk)) return true;
    // The replica's answer waits until the caller drains.
    res.once('drain', this.#onDrain);
    return false;
  }

  onComplete(): void {
    this.#sink.res.end();
    this.#release();
  }

  onError(err: Error): void {
    const res = this.#sink.res;
    res.off('drain', this.#onDrain);
    if (this.#answered) {
      // The answer broke off mid-body: the caller sees its connection cut, as from the replica.
      res.destroy(err);
      this.#release();
      return;
    }
    if (this.#done) return;
    const body = this.#body;
    const unsent = this.#bodiless ? isConnectError(err) : body ? !body.touched && isConnectError(err) : isRefused(err);
    this.#done = true;
    this.#resolve({ err, unsent });
  }

  readonly #onDrain = (): void => this.#resumeCall?.();

  /** Ends the lease once the answer is through (or cut). */
  #release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#lease.release();
  }
}

/** Connections to one replica: kept alive 30 s idle (at most 10 min), a connect given 5 s. */
const replicaPoolOptions = { keepAliveTimeout: 30_000, keepAliveMaxTimeout: 600_000, connections: 1024, connect: { timeout: 5000 } };
/** Replica pools the invoke path keeps at most (see FunctionCaller.#pools). */
const maxReplicaPools = 4096;

/** `kept`'s client for `url`, made on first use; past maxReplicaPools the oldest is closed (its replica is gone, or it is made again). */
function keptFor<C extends { close(): Promise<void> }>(kept: Map<string, C>, url: string, make: () => C): C {
  let client = kept.get(url);
  if (client) return client;
  if (kept.size >= maxReplicaPools) {
    const [oldest, old] = kept.entries().next().value as [string, C];
    kept.delete(oldest);
    void old.close().catch(() => {});
  }
  client = make();
  kept.set(url, client);
  return client;
}

function headerValue(headers: string[], name: string): string | undefined {
  for (let i = 0; i < headers.length; i += 2) if (headers[i] === name) return headers[i + 1];
  return undefined;
}

/** A name that needs no namespace stripped: what peek() takes (validateName checks the rest on a miss). */
const plainName = /^[a-z0-9][a-z0-9-]*$/;

export function functionName(raw: string): string {
  const dot = raw.lastIndexOf('.');
  const name = dot >= 0 ? raw.slice(0, dot) : raw;
  if (dot >= 0) checkNamespace(raw.slice(dot + 1));
  validateName(name);
  return name;
}

/** Answer headers the gateway sets itself (AnswerSink.head): the replica's own are replaced. */
const gatewaySets: ReadonlySet<string> = new Set(['x-call-id', 'x-start-time', 'x-duration-seconds']);

/** Labelled metric children kept for the hot path; past it they are made again (a bound, not a limit). */
const maxKeptChildren = 10_000;

/** Tries of one call, on different replicas where it can (see send()). */
const maxAttempts = 3;

/**
 * A streamed request body that another replica can still be offered while no attempt has read
 * any of it. undici destroys a body it could not send, so each attempt gets its own view of the
 * source, which reads from it only once that attempt's connection asks for the first chunk.
 */
class UntouchedBody {
  touched = false;
  readonly #source: Readable;

  constructor(source: Readable) {
    this.#source = source;
  }

  attempt(): Readable {
    return Readable.from(this.#read(), { objectMode: false });
  }

  async *#read(): AsyncGenerator<Buffer> {
    this.touched = true;
    // Not destroyed when an attempt gives up: what is left of it is the caller's to drain or cut.
    yield* this.#source.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>;
  }
}

/** The connection was never made: nothing of the request left this process. */
function isRefused(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  return code === 'ECONNREFUSED' || code === 'UND_ERR_CONNECT_TIMEOUT';
}

function isConnectError(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  return code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'UND_ERR_SOCKET' || code === 'UND_ERR_CONNECT_TIMEOUT' ||
    code === 'REPLICA_CLOSED' || code === 'REPLICA_CONNECT_TIMEOUT';
}

/** `handler` as undici's dispatch calls it: header names and values arrive as Buffers. */
function undiciHandler(handler: ReplicaHandler): Dispatcher.DispatchHandler {
  return {
    onConnect: (abort) => handler.onConnect(abort as (err: Error) => void),
    onHeaders: (status, raw, resume) => {
      const headers: string[] = new Array<string>(raw.length);
      for (let i = 0; i < raw.length; i += 2) {
        headers[i] = raw[i]!.toString('latin1').toLowerCase();
        headers[i + 1] = raw[i + 1]!.toString('latin1');
      }
      return handler.onHeaders(status, headers, resume);
    },
    onData: (chunk) => handler.onData(chunk),
    onComplete: () => handler.onComplete(),
    onError: (err) => handler.onError(err),
  };
}

function replicaError(name: string, lease: Lease, err: unknown, fnTimeoutMs: number): KubefnError {
  // The request's own body failed (over the limit): the replica is not at fault.
  if (isKubefnError(err)) return err as KubefnError;
  if (err instanceof undiciErrors.HeadersTimeoutError || err instanceof undiciErrors.BodyTimeoutError || (err instanceof ReplicaHopError && err.code === 'REPLICA_TIMEOUT')) {
    return new KubefnError('DEADLINE_EXCEEDED', `function "${name}" replica ${lease.endpoint.id} did not answer within ${fnTimeoutMs + upstreamSlackMs} ms`, { cause: err });
  }
  return new KubefnError('REPLICA_FAILED', `function "${name}" replica ${lease.endpoint.id} failed before answering: ${(err as Error).message}`, {
    cause: err,
    hint: `see \`fn logs ${name}\``,
  });
}
