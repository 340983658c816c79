// One call of a function: find it, hold a lease on a replica through its router (waiting for
// one to start, or in its bounded queue), send the request and hand back the replica's answer.
// The HTTP invoke route (invoke.ts) and event deliveries (events/call.ts) both call through here,
// so scale from zero, concurrency limits, the queue, retries, metrics and call ids are the same
// for both; only what surrounds a call (a socket and its reply, or a buffered event) differs.

import { Readable } from 'node:stream';
import { Agent, errors as undiciErrors, type Dispatcher } from 'undici';
import { isKubefnError, KubefnError, runtimeHeaders, validateName } from '@kubefn/platform';
import type { CatalogEntry } from './catalog.js';
import { checkNamespace } from './openfaas.js';
import type { GatewayMetrics } from './metrics.js';
import type { RouterPool } from './router-pool.js';
import type { Lease } from './router.js';
import type { ConcurrencyStats } from './stats.js';

/** How long the gateway waits past the function's own timeout before cutting a replica off, ms. */
export const upstreamSlackMs = 5000;

/** What a call needs from the gateway (a subset of GatewayContext). */
export interface CallerContext {
  catalog: { get(name: string): Promise<CatalogEntry | undefined> };
  routers: RouterPool;
  stats: ConcurrencyStats;
  metrics: GatewayMetrics;
  invocations: Map<string, number>;
  options: { maxBodyBytes: number };
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

export interface ReplicaAnswer {
  /** The replica's answer, without the runtime's headers meant for the gateway (overloaded, draining). */
  upstream: Dispatcher.ResponseData;
  /** Held until the answer's body is read or dropped: release it then. */
  lease: Lease;
}

export class FunctionCaller {
  readonly #ctx: CallerContext;
  readonly #agent = new Agent({
    keepAliveTimeout: 30_000,
    keepAliveMaxTimeout: 600_000,
    connections: 1024,
    connect: { timeout: 5000 },
  });

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

  /** Counts a call of `name` as started; the function returned counts it finished with its status. */
  begin(name: string): (status: number) => void {
    const ctx = this.#ctx;
    ctx.stats.begin(name);
    ctx.invocations.set(name, (ctx.invocations.get(name) ?? 0) + 1);
    return (status) => {
      ctx.stats.end(name);
      ctx.metrics.requests.inc({ function: name, code: String(status) });
    };
  }

  /** The time from a call's start until its replica answered, for the duration histogram. */
  observeDuration(name: string, seconds: number): void {
    this.#ctx.metrics.duration.observe({ function: name }, seconds);
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

  close(): Promise<void> {
    return this.#agent.close();
  }
}

export function functionName(raw: string): string {
  const dot = raw.lastIndexOf('.');
  const name = dot >= 0 ? raw.slice(0, dot) : raw;
  if (dot >= 0) checkNamespace(raw.slice(dot + 1));
  validateName(name);
  return name;
}

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
  return code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'UND_ERR_SOCKET' || code === 'UND_ERR_CONNECT_TIMEOUT';
}

function replicaError(name: string, lease: Lease, err: unknown, fnTimeoutMs: number): KubefnError {
  // The request's own body failed (over the limit): the replica is not at fault.
  if (isKubefnError(err)) return err as KubefnError;
  if (err instanceof undiciErrors.HeadersTimeoutError || err instanceof undiciErrors.BodyTimeoutError) {
    return new KubefnError('DEADLINE_EXCEEDED', `function "${name}" replica ${lease.endpoint.id} did not answer within ${fnTimeoutMs + upstreamSlackMs} ms`, { cause: err });
  }
  return new KubefnError('REPLICA_FAILED', `function "${name}" replica ${lease.endpoint.id} failed before answering: ${(err as Error).message}`, {
    cause: err,
    hint: `see \`fn logs ${name}\``,
  });
}
