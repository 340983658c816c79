// Runs the async calls stored by async.ts: one durable pull consumer shared by every gateway,
// each gateway pulling at most `maxInFlight` calls it has not yet acked. A call goes through the
// gateway's own invoke route (call.ts); a busy answer (429, 502, 503, 504) is retried later with
// exponential backoff by nak(delay) until its deliveries run out, while the gateway's own
// QUEUE_FULL (the function is at its queue limit) is waited out in place without spending a
// delivery. When a call is final its result is POSTed once to the stored X-Callback-Url, as
// OpenFaaS's queue-worker does, and then acked.
//
// At least once: a gateway that dies between the callback and the ack leaves the call to be
// delivered again after ack_wait, and the callback may then arrive twice.

import type { NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type Consumer, type JsMsg } from '@nats-io/jetstream';
import { postCallback, redact } from './async-callback.js';
import { asyncConsumerName, ConnectionWatch, decodeCall, defaultAsyncStream, ensureAsyncConsumer, ensureAsyncStream, type AsyncStreamLimits, type StoredCall } from './async-stream.js';
import { isSuccess, type EventResult, type Invoke } from './call.js';

export interface AsyncInvocationsOptions {
  connection: NatsConnection;
  /** Calls a function through the gateway's invoke route (call.ts). */
  invoke: Invoke;
  /** Calls this gateway holds un-acked at most (default 64). */
  maxInFlight?: number;
  /** Deliveries after the first for a busy answer (default 3: 4 deliveries at most). */
  retries?: number;
  /** The JetStream stream (default KUBEFN_ASYNC). */
  stream?: string;
  /** Limits of the stream when this gateway creates it. */
  limits?: AsyncStreamLimits;
  /** Redelivery after this long without an ack, ms (default 60000); kept alive while a call runs. */
  ackWaitMs?: number;
  /** Delay before the first retry, doubled for each further one, ms (default 1000). */
  retryDelayMs?: number;
  /** Longest retry delay, Retry-After included, ms (default 60000). */
  maxRetryDelayMs?: number;
  /** How long a call answered QUEUE_FULL waits in place before it gives its delivery back, ms (default 60000). */
  queueFullWaitMs?: number;
  /** Per callback attempt, ms (default 10000). */
  callbackTimeoutMs?: number;
  /** Attempts per callback (default 2). */
  callbackAttempts?: number;
  /** How long one pull waits for calls, ms (default 5000; at least 1000). close() waits for it. */
  pullExpiresMs?: number;
  /** How long close() waits for calls in flight before giving them back, ms (default 10000). */
  closeTimeoutMs?: number;
  /** Un-acked calls across all gateways at most, a consumer setting (default 4096). */
  maxAckPending?: number;
  onWarning?: (message: string, fields?: Record<string, unknown>) => void;
}

export interface AsyncInvocationsState {
  /** Stream and consumer in place and pulling. */
  ready: boolean;
  /** Calls in the stream not yet delivered to any gateway, as of the last one this gateway got. */
  pending?: number;
  /** Calls this gateway holds un-acked now. */
  inFlight: number;
  /** Calls finished here with a 2xx (monotonic). */
  completed: number;
  /** Calls finished here otherwise: a final status, retries exhausted, or unreadable (monotonic). */
  failed: number;
  /** Deliveries given back for a later retry (monotonic). */
  retried: number;
  /** Callbacks that could not be delivered (monotonic). */
  callbacksFailed: number;
  lastError?: string;
}

/** The statuses worth another delivery: the function or the gateway was busy or away. */
const retryableStatuses = new Set([429, 502, 503, 504]);

interface InFlight {
  msg: JsMsg;
  /** Acked or nakked: nothing more may be said about it. */
  settled: boolean;
}

export class AsyncInvocations {
  readonly #o: Required<Omit<AsyncInvocationsOptions, 'onWarning' | 'limits'>> & Pick<AsyncInvocationsOptions, 'onWarning' | 'limits'>;
  readonly #inFlight = new Set<InFlight>();
  readonly #counts = { completed: 0, failed: 0, retried: 0, callbacksFailed: 0 };
  readonly #watch: ConnectionWatch;
  #consumer: Consumer | undefined;
  #pending: number | undefined;
  #lastError: string | undefined;
  #loop: Promise<void> | undefined;
  #closing = false;
  #closed: Promise<void> | undefined;
  /** Wakes the loop when a slot frees or close() begins. */
  #wake: (() => void) | undefined;

  constructor(options: AsyncInvocationsOptions) {
    this.#o = {
      maxInFlight: 64,
      retries: 3,
      stream: defaultAsyncStream,
      ackWaitMs: 60_000,
      retryDelayMs: 1000,
      maxRetryDelayMs: 60_000,
      queueFullWaitMs: 60_000,
      callbackTimeoutMs: 10_000,
      callbackAttempts: 2,
      pullExpiresMs: 5000,
      closeTimeoutMs: 10_000,
      maxAckPending: 4096,
      ...options,
    };
    if (!(this.#o.maxInFlight >= 1)) throw new RangeError(`maxInFlight must be at least 1, got ${this.#o.maxInFlight}`);
    if (!(this.#o.retries >= 0)) throw new RangeError(`retries must be at least 0, got ${this.#o.retries}`);
    if (!(this.#o.pullExpiresMs >= 1000)) throw new RangeError(`pullExpiresMs must be at least 1000, got ${this.#o.pullExpiresMs}`);
    this.#watch = new ConnectionWatch(this.#o.connection);
  }

  /**
   * Ensures the stream and the consumer and starts pulling. Resolves after the first attempt
   * either way: when NATS is away it keeps trying in the background and state() says why.
   */
  async start(): Promise<void> {
    if (this.#loop || this.#closing) return;
    let first: () => void = () => {};
    const attempted = new Promise<void>((resolve) => (first = resolve));
    this.#loop = this.#run(() => first());
    await attempted;
  }

  state(): AsyncInvocationsState {
    const connected = this.#watch.connected();
    const lastError = this.#lastError ?? (connected ? undefined : 'NATS is not connected');
    return {
      ready: this.#consumer !== undefined && connected && !this.#closing,
      ...(this.#pending !== undefined ? { pending: this.#pending } : {}),
      inFlight: this.#inFlight.size,
      ...this.#counts,
      ...(lastError !== undefined ? { lastError } : {}),
    };
  }

  /**
   * Stops pulling, waits up to closeTimeoutMs for the calls in flight, and gives the rest back
   * (nak) so another gateway runs them. Idempotent.
   */
  close(): Promise<void> {
    return (this.#closed ??= (async () => {
      this.#closing = true;
      this.#wake?.();
      const deadline = Date.now() + this.#o.closeTimeoutMs;
      await this.#loop?.catch(() => {});
      while (this.#inFlight.size > 0 && Date.now() < deadline) await sleep(Math.min(50, deadline - Date.now()));
      for (const f of this.#inFlight) this.#settle(f, (m) => m.nak());
      this.#inFlight.clear();
      this.#watch.stop();
    })());
  }

  async #run(attempted: () => void): Promise<void> {
    for (let failures = 0; !this.#closing; ) {
      try {
        if (!this.#consumer) {
          await this.#setup();
          this.#lastError = undefined;
          failures = 0;
          attempted();
        }
        await this.#slot();
        if (!this.#closing) await this.#pull(this.#consumer!);
      } catch (err) {
        this.#consumer = undefined;
        const message = `${(err as Error).message ?? err}`;
        if (message !== this.#lastError) this.#o.onWarning?.('async invocations: cannot pull from JetStream, retrying', { stream: this.#o.stream, err });
        this.#lastError = message;
        attempted();
        if (this.#o.connection.isClosed()) {
          this.#lastError = `NATS connection closed: ${message}`;
          return;
        }
        await this.#sleepOrWake(Math.min(30_000, 500 * 2 ** Math.min(failures++, 6)));
      }
    }
  }

  async #setup(): Promise<void> {
    const nc = this.#o.connection;
    const jsm = await jetstreamManager(nc);
    await ensureAsyncStream(jsm, this.#o.stream, this.#o.limits);
    await ensureAsyncConsumer(jsm, this.#o.stream, { ackWaitMs: this.#o.ackWaitMs, maxDeliver: this.#o.retries + 1, maxAckPending: this.#o.maxAckPending });
    this.#consumer = await jetstream(nc).consumers.get(this.#o.stream, asyncConsumerName);
  }

  /** Waits until this gateway may hold one more call. */
  async #slot(): Promise<void> {
    while (this.#inFlight.size >= this.#o.maxInFlight && !this.#closing) {
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
  }

  /** One pull of as many calls as there are free slots; each starts as it arrives. */
  async #pull(consumer: Consumer): Promise<void> {
    const batch = await consumer.fetch({ max_messages: this.#o.maxInFlight - this.#inFlight.size, expires: this.#o.pullExpiresMs });
    // The server ends the pull at `expires`; this bounds it when the connection is gone meanwhile.
    const guard = setTimeout(() => batch.stop(), this.#o.pullExpiresMs + 5000);
    let got = 0;
    try {
      for await (const msg of batch) {
        got++;
        this.#pending = msg.info.pending;
        // Closing: calls that still arrive on this pull go back at once.
        if (this.#closing) msg.nak();
        else this.#begin(msg);
      }
    } finally {
      clearTimeout(guard);
    }
    if (got === 0) this.#pending = 0;
  }

  #begin(msg: JsMsg): void {
    const f: InFlight = { msg, settled: false };
    this.#inFlight.add(f);
    void this.#handle(f)
      .catch((err: unknown) => {
        this.#o.onWarning?.('async invocations: a call failed unexpectedly', { subject: msg.subject, err });
        this.#settle(f, (m) => m.nak(this.#o.retryDelayMs));
      })
      .finally(() => {
        this.#inFlight.delete(f);
        this.#wake?.();
      });
  }

  async #handle(f: InFlight): Promise<void> {
    const { msg } = f;
    let call: StoredCall;
    try {
      call = decodeCall(msg.subject, msg.headers, msg.data);
    } catch (err) {
      // Nothing to retry: a message that is not a call never becomes one.
      this.#counts.failed++;
      this.#o.onWarning?.('async invocations: dropping an unreadable message', { subject: msg.subject, seq: msg.seq, err });
      this.#settle(f, (m) => m.term());
      return;
    }
    // working() resets ack_wait: a call longer than ack_wait is not handed to another gateway.
    const keepAlive = setInterval(() => !f.settled && msg.working(), Math.max(1000, this.#o.ackWaitMs / 3));
    try {
      let res = await this.#invoke(call);
      // The function is at its queue limit here: slow down, and keep the delivery.
      for (let waitedMs = 0, i = 0; res.code === 'QUEUE_FULL' && waitedMs < this.#o.queueFullWaitMs && !this.#closing; i++) {
        const d = Math.min(this.#backoff(i + 1), this.#o.queueFullWaitMs - waitedMs);
        await sleep(d);
        waitedMs += d;
        res = await this.#invoke(call);
      }
      const deliveries = msg.info.deliveryCount;
      if (retryableStatuses.has(res.status) || res.code === 'QUEUE_FULL') {
        if (this.#closing) return void this.#settle(f, (m) => m.nak());
        if (deliveries <= this.#o.retries) {
          this.#counts.retried++;
          return void this.#settle(f, (m) => m.nak(this.#retryDelay(deliveries, res)));
        }
      }
      if (f.settled) return; // given back by close() meanwhile: another gateway finishes it
      if (isSuccess(res.status)) this.#counts.completed++;
      else this.#counts.failed++;
      const callbackUrl = call.headers['x-callback-url'];
      if (callbackUrl) await this.#callback(callbackUrl, call, res);
      if (f.settled) return;
      f.settled = true;
      await msg.ackAck().catch((err: unknown) => this.#o.onWarning?.('async invocations: the ack was not confirmed; the call may run again', { callId: call.callId, err }));
    } finally {
      clearInterval(keepAlive);
    }
  }

  async #invoke(call: StoredCall): Promise<EventResult> {
    const started = performance.now();
    try {
      return await this.#o.invoke({
        name: call.name,
        method: call.method,
        path: call.path + (call.query ? `?${call.query}` : ''),
        headers: call.headers,
        body: Buffer.from(call.body.buffer, call.body.byteOffset, call.body.byteLength),
      });
    } catch (err) {
      // As OpenFaaS does: a call that got no answer at all is a 503 (and so retried).
      const message = `invoking function "${call.name}" failed: ${(err as Error).message ?? err}`;
      return { status: 503, headers: { 'content-type': 'application/json' }, body: Buffer.from(JSON.stringify({ code: 'UNAVAILABLE', message })), code: 'UNAVAILABLE', ms: performance.now() - started };
    }
  }

  async #callback(url: string, call: StoredCall, res: EventResult): Promise<void> {
    const problem = await postCallback(url, { callId: call.callId, name: call.name, result: res }, {
      timeoutMs: this.#o.callbackTimeoutMs,
      attempts: this.#o.callbackAttempts,
    });
    if (problem === undefined) return;
    this.#counts.callbacksFailed++;
    this.#o.onWarning?.('async invocations: the callback failed', { callId: call.callId, function: call.name, url: redact(url), problem });
  }

  /** Before delivery n + 1: retryDelayMs doubled per delivery so far, or Retry-After if longer, capped. */
  #retryDelay(deliveries: number, res: EventResult): number {
    const after = Number(res.headers['retry-after']);
    const asked = Number.isFinite(after) && after > 0 ? after * 1000 : 0;
    return Math.min(this.#o.maxRetryDelayMs, Math.max(this.#backoff(deliveries), asked));
  }

  #backoff(n: number): number {
    return Math.min(this.#o.maxRetryDelayMs, this.#o.retryDelayMs * 2 ** Math.min(n - 1, 30));
  }

  #settle(f: InFlight, how: (msg: JsMsg) => void): void {
    if (f.settled) return;
    f.settled = true;
    try {
      how(f.msg);
    } catch (err) {
      this.#o.onWarning?.('async invocations: cannot settle a call with JetStream; it is redelivered after ack_wait', { subject: f.msg.subject, err });
    }
  }

  async #sleepOrWake(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      this.#wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
