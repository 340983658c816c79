// JetStream triggers: at-least-once delivery of a stream's messages to a function.
//
// Each `jetstream` trigger is one durable pull consumer, shared by every gateway (so each message
// goes to one of them). A gateway pulls at most `maxInFlight` messages it has not acked yet, and
// each one is a call through the gateway's invoke route, like an HTTP call:
//   2xx                    the result goes to `output` (through JetStream when a stream takes that
//                          subject, de-duplicated by the message's stream sequence), then ack
//   QUEUE_FULL             the function is at its queue limit: the call is tried again in place
//                          (the delivery is kept alive with working()), so consumption slows
//                          down and no delivery is spent
//   413, or a message over the body limit     dead-lettered at once: retrying cannot help
//   other failures         nak with the trigger's backoff; on delivery `maxDeliver`, the message
//                          goes to `deadLetter` with the error, the subject and the delivery count
//                          in headers, and is terminated
// The server's own max_deliver is maxDeliver + 1: a message whose deliveries ran out through ack
// timeouts (a gateway died holding it) gets one last delivery, which dead-letters it unrun. So
// every message ends acked or dead-lettered; none stays stuck in the stream.
//
// Streams a trigger names are created when missing (interest retention: a message stays until
// every consumer acked it). A stream that exists must take the trigger's subject, and a consumer
// that exists with other settings is a conflict, unless kubefn made it for the same function, in
// which case its settings are updated (deploy checks all of this before anything changes).

import { KubefnError, parseDuration, type FunctionSpec, type TriggerSpec } from '@kubefn/platform';
import type { NatsConnection } from '@nats-io/transport-node';
import {
  AckPolicy,
  DeliverPolicy,
  jetstream,
  JetStreamApiCodes,
  JetStreamApiError,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type ConsumerConfig,
  type ConsumerInfo,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  type StreamInfo,
} from '@nats-io/jetstream';
import { isSuccess, type EventResult, type Invoke } from './call.js';
import { toBinaryEvent } from './cloudevent.js';
import { triggerLabel, type EventMetrics } from './event-metrics.js';
import type { Publish } from './publisher.js';

export interface JetStreamTriggersOptions {
  connection: NatsConnection;
  invoke: Invoke;
  publish: Publish;
  /** The gateway's body limit: a larger message is dead-lettered unrun. */
  maxBodyBytes: number;
  metrics?: EventMetrics;
  onWarning?: (message: string, fields?: Record<string, unknown>) => void;
  /** How often each consumer's lag is read from the server, ms (default 2000). */
  lagEveryMs?: number;
  /** Called after each read of the consumers' lag with each function's messages waiting (pending()). */
  onPending?: (name: string, messages: number) => void;
  /** How long close() waits for calls in flight before handing their messages back, ms (default 10 s). */
  drainMs?: number;
}

/** A jetstream trigger's settings with kubefn's defaults filled in. */
export interface ConsumerSettings {
  stream: string;
  subject: string;
  durable: string;
  maxDeliver: number;
  ackWaitMs: number;
  backoffMs: number[];
  maxInFlight: number;
}

export const jetstreamDefaults = { maxDeliver: 5, ackWaitMs: 30_000, maxInFlight: 64, maxAgeMs: 7 * 24 * 3600_000 };

export function consumerSettings(name: string, t: TriggerSpec): ConsumerSettings {
  return {
    stream: t.stream!,
    subject: t.subject!,
    durable: t.durable ?? name,
    maxDeliver: t.maxDeliver ?? jetstreamDefaults.maxDeliver,
    ackWaitMs: t.ackWait ? parseDuration(t.ackWait) : jetstreamDefaults.ackWaitMs,
    backoffMs: (t.backoff ?? []).map(parseDuration),
    maxInFlight: t.maxInFlight ?? jetstreamDefaults.maxInFlight,
  };
}

/**
 * How many free slots (of `maxInFlight`) a gateway waits for before it pulls again, once a pull
 * brought all it asked for: a quarter (at least one). Each pull is a request with an inbox
 * subscription of its own, so pulling again as soon as one slot was free cost a pull per message
 * under load; with maxInFlight 64, a pull asks for 16 or more while 48 calls still run. While a
 * quarter of the slots or more are free a pull is open, so at low rates a message is delivered
 * as soon as it is stored.
 */
export function refillAt(maxInFlight: number): number {
  return Math.max(1, Math.floor(maxInFlight / 4));
}

/** The pause before redelivery after failed delivery `n` (1-based): the trigger's list, its last entry repeated, else 1 s doubling to 1 min. */
export function backoffFor(s: ConsumerSettings, n: number): number {
  if (s.backoffMs.length) return s.backoffMs[Math.min(n, s.backoffMs.length) - 1]!;
  return Math.min(1000 * 2 ** (n - 1), 60_000);
}

/** Headers of a dead letter. */
export const deadLetterHeaders = {
  error: 'kubefn-error',
  subject: 'kubefn-subject',
  deliveries: 'kubefn-deliveries',
  stream: 'kubefn-stream',
  sequence: 'kubefn-sequence',
  function: 'kubefn-function',
  status: 'kubefn-status',
} as const;

const describeOwner = (name: string) => `kubefn function ${name}`;
const nanos = (ms: number) => Math.round(ms * 1_000_000);
const ms = (nanoseconds: number) => Math.round(nanoseconds / 1_000_000);

export interface JetStreamTriggerState {
  index: number;
  stream: string;
  subject: string;
  durable: string;
  /** Stream and consumer in place and being consumed. */
  ready: boolean;
  /** Why not, when not ready. */
  error?: string;
  /** Messages not yet delivered (the server's count, shared by every gateway). */
  pending?: number;
  /** Delivered and not yet acked (every gateway). */
  ackPending?: number;
  /** Redeliveries (the server's count). */
  redelivered?: number;
  /** This gateway's counts since it started. */
  delivered: number;
  acked: number;
  retried: number;
  deadLettered: number;
  inFlight: number;
  lastError?: string;
  lastErrorAt?: string;
}

export class JetStreamTriggers {
  readonly #o: JetStreamTriggersOptions;
  readonly #js: JetStreamClient;
  #jsm: Promise<JetStreamManager> | undefined;
  readonly #active = new Map<string, Consumption>();
  #lagTimer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(options: JetStreamTriggersOptions) {
    this.#o = options;
    this.#js = jetstream(options.connection, { timeout: 10_000 });
    this.#lagTimer = setInterval(() => void this.#readLags(), options.lagEveryMs ?? 2000);
    this.#lagTimer.unref();
  }

  #manager(): Promise<JetStreamManager> {
    this.#jsm ??= jetstreamManager(this.#o.connection, { timeout: 10_000 }).catch((err: unknown) => {
      this.#jsm = undefined;
      throw err;
    });
    return this.#jsm;
  }

  /**
   * Checks that `spec`'s jetstream triggers fit the server as it is: named streams take their
   * subjects, no other stream already takes a subject a stream would be created with, and
   * consumers that exist were made by kubefn for this function or have the same settings.
   * Changes nothing; throws CONFLICT naming both sides.
   */
  async check(spec: FunctionSpec): Promise<void> {
    const jsm = await this.#manager();
    const durables = new Map<string, number>();
    for (const [i, t] of spec.triggers.entries()) {
      if (t.type !== 'jetstream') continue;
      const s = consumerSettings(spec.name, t);
      const key = `${s.stream}/${s.durable}`;
      if (durables.has(key)) {
        throw conflict(`triggers ${durables.get(key)} and ${i} of function "${spec.name}" both use consumer "${s.durable}" on stream "${s.stream}"`, i, 'durable', 'give one of them its own `durable` name');
      }
      durables.set(key, i);
      const stream = await streamInfo(jsm, s.stream);
      if (stream) streamProblem(stream, s, i);
      else {
        const taken = await jsm.streams.find(s.subject).catch(() => undefined);
        if (taken) {
          throw conflict(`subject "${s.subject}" is already stored by stream "${taken}", so stream "${s.stream}" cannot be created with it`, i, 'stream', `name stream "${taken}" in the trigger`);
        }
      }
      const consumer = stream ? await consumerInfo(jsm, s.stream, s.durable) : undefined;
      if (consumer) consumerProblem(consumer, spec.name, s, i);
    }
  }

  /**
   * Starts consuming every jetstream trigger of `functions` and stops those that went. Resolves
   * once each new trigger's stream and consumer were made (or failed to be, for now), so a
   * deploy returns with its stream in place.
   */
  async sync(functions: FunctionSpec[]): Promise<void> {
    if (this.#closed) return;
    const started: Promise<void>[] = [];
    const wanted = new Map<string, { name: string; index: number; trigger: TriggerSpec }>();
    for (const spec of functions) {
      for (const [index, trigger] of spec.triggers.entries()) {
        if (trigger.type === 'jetstream') wanted.set(JSON.stringify([spec.name, index, trigger]), { name: spec.name, index, trigger });
      }
    }
    for (const [key, c] of this.#active) {
      if (!wanted.has(key)) {
        this.#active.delete(key);
        void c.stop(this.#o.drainMs ?? 10_000);
      }
    }
    for (const [key, w] of wanted) {
      if (this.#active.has(key)) continue;
      const c = new Consumption(this.#o, this.#js, () => this.#manager(), w.name, w.index, w.trigger);
      this.#active.set(key, c);
      started.push(c.start());
    }
    await Promise.all(started);
  }

  /** Deletes the consumers kubefn made for function `name` (when it is deleted). */
  async forget(spec: FunctionSpec): Promise<void> {
    const jsm = await this.#manager();
    for (const t of spec.triggers) {
      if (t.type !== 'jetstream') continue;
      const s = consumerSettings(spec.name, t);
      const info = await consumerInfo(jsm, s.stream, s.durable).catch(() => undefined);
      if (info?.config.description === describeOwner(spec.name)) await jsm.consumers.delete(s.stream, s.durable).catch(() => {});
    }
  }

  state(name: string): JetStreamTriggerState[] {
    return [...this.#active.values()].filter((c) => c.name === name).map((c) => c.state());
  }

  /** Messages waiting for function `name` in its consumers (not yet delivered to any gateway). */
  pending(name: string): number {
    let n = 0;
    for (const c of this.#active.values()) if (c.name === name) n += c.lag?.pending ?? 0;
    return n;
  }

  /** Every trigger's lag (not delivered plus not acked), for the metrics. */
  *lags(): Iterable<{ function: string; trigger: string; lag: number }> {
    for (const c of this.#active.values()) {
      if (c.lag) yield { function: c.name, trigger: triggerLabel(c.trigger), lag: c.lag.pending + c.lag.ackPending };
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#lagTimer);
    const all = [...this.#active.values()];
    this.#active.clear();
    await Promise.all(all.map((c) => c.stop(this.#o.drainMs ?? 10_000)));
  }

  async #readLags(): Promise<void> {
    if (this.#closed || this.#o.connection.isClosed()) return;
    const jsm = await this.#manager().catch(() => undefined);
    if (!jsm) return;
    await Promise.all([...this.#active.values()].map((c) => c.readLag(jsm)));
    const names = new Set([...this.#active.values()].filter((c) => c.lag).map((c) => c.name));
    for (const name of names) this.#o.onPending?.(name, this.pending(name));
  }
}

/** One trigger's consumption in this gateway. */
class Consumption {
  readonly name: string;
  readonly index: number;
  readonly trigger: TriggerSpec;
  readonly settings: ConsumerSettings;
  lag: { pending: number; ackPending: number; redelivered: number } | undefined;
  readonly #o: JetStreamTriggersOptions;
  readonly #js: JetStreamClient;
  readonly #manager: () => Promise<JetStreamManager>;
  readonly #label: { function: string; trigger: string };
  #running: Promise<void> | undefined;
  #stopped = false;
  #batch: ConsumerMessages | undefined;
  #inFlight = 0;
  #slotFreed: (() => void) | undefined;
  #wake: (() => void) | undefined;
  #ready = false;
  #error: string | undefined;
  #lastError: { message: string; at: string } | undefined;
  /** Acks waiting for the end of this turn of the event loop (#ack). */
  #acks: JsMsg[] = [];
  readonly #counts = { delivered: 0, acked: 0, retried: 0, deadLettered: 0 };

  constructor(o: JetStreamTriggersOptions, js: JetStreamClient, manager: () => Promise<JetStreamManager>, name: string, index: number, trigger: TriggerSpec) {
    this.#o = o;
    this.#js = js;
    this.#manager = manager;
    this.name = name;
    this.index = index;
    this.trigger = trigger;
    this.settings = consumerSettings(name, trigger);
    this.#label = { function: name, trigger: triggerLabel(trigger) };
  }

  /** Starts consuming; resolves after the first attempt to set up the stream and consumer. */
  start(): Promise<void> {
    let settled!: () => void;
    const firstAttempt = new Promise<void>((resolve) => (settled = resolve));
    this.#running = this.#run(settled);
    return firstAttempt;
  }

  async stop(drainMs: number): Promise<void> {
    this.#stopped = true;
    this.#batch?.stop();
    this.#wake?.();
    await this.#running;
    const deadline = Date.now() + drainMs;
    while (this.#inFlight > 0 && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        this.#slotFreed = resolve;
        setTimeout(resolve, 100).unref();
      });
    }
    this.#flushAcks();
  }

  state(): JetStreamTriggerState {
    const s = this.settings;
    return {
      index: this.index,
      stream: s.stream,
      subject: s.subject,
      durable: s.durable,
      ready: this.#ready,
      ...(this.#error ? { error: this.#error } : {}),
      ...(this.lag ? { pending: this.lag.pending, ackPending: this.lag.ackPending, redelivered: this.lag.redelivered } : {}),
      ...this.#counts,
      inFlight: this.#inFlight,
      ...(this.#lastError ? { lastError: this.#lastError.message, lastErrorAt: this.#lastError.at } : {}),
    };
  }

  async readLag(jsm: JetStreamManager): Promise<void> {
    if (!this.#ready) return;
    const info = await consumerInfo(jsm, this.settings.stream, this.settings.durable).catch(() => undefined);
    if (info) this.lag = { pending: info.num_pending, ackPending: info.num_ack_pending, redelivered: info.num_redelivered };
  }

  async #run(settled: () => void): Promise<void> {
    let failures = 0;
    while (!this.#stopped) {
      try {
        await this.#ensure().finally(settled);
        const consumer = await this.#js.consumers.get(this.settings.stream, this.settings.durable);
        this.#ready = true;
        this.#error = undefined;
        failures = 0;
        while (!this.#stopped) {
          await this.#freeSlots(refillAt(this.settings.maxInFlight));
          if (this.#stopped) break;
          // The freed slots' acks go out before the pull: never more than maxInFlight un-acked.
          this.#flushAcks();
          const batch = await consumer.fetch({ max_messages: this.settings.maxInFlight - this.#inFlight, expires: 5000 });
          this.#batch = batch;
          for await (const m of batch) {
            if (this.#stopped) m.nak();
            else this.#start(m);
          }
          this.#batch = undefined;
        }
      } catch (err) {
        if (this.#stopped) break;
        this.#ready = false;
        this.#error = errorText(err);
        failures++;
        if (failures === 1) this.#o.onWarning?.('jetstream trigger not consuming', { function: this.name, stream: this.settings.stream, err: this.#error });
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
          setTimeout(resolve, Math.min(250 * 2 ** failures, 5000) * (0.5 + Math.random() / 2)).unref();
        });
      }
    }
    this.#ready = false;
    settled();
  }

  /** Creates the stream and consumer when missing; refuses to touch ones that do not fit. */
  async #ensure(): Promise<void> {
    const jsm = await this.#manager();
    const s = this.settings;
    const stream = await streamInfo(jsm, s.stream);
    if (stream) streamProblem(stream, s, this.index);
    else {
      await jsm.streams.add({
        name: s.stream,
        subjects: [s.subject],
        storage: StorageType.File,
        retention: RetentionPolicy.Interest,
        max_age: nanos(jetstreamDefaults.maxAgeMs),
        duplicate_window: nanos(120_000),
        description: `created by kubefn for function ${this.name}`,
      });
    }
    const existing = await consumerInfo(jsm, s.stream, s.durable);
    const config = consumerConfig(this.name, s);
    if (!existing) {
      await jsm.consumers.add(s.stream, config);
    } else {
      consumerProblem(existing, this.name, s, this.index);
      if (differences(existing.config, s).length) {
        await jsm.consumers.update(s.stream, s.durable, { ack_wait: config.ack_wait, max_deliver: config.max_deliver, max_ack_pending: config.max_ack_pending, description: config.description });
      }
    }
  }

  /**
   * Acks `m` at the end of this turn of the event loop, with every other call that finished in
   * it. The NATS client writes what was sent in one microtask as one socket write, and each
   * call finishes in a microtask of its own, so acking at once cost a write per message.
   */
  #ack(m: JsMsg): void {
    if (this.#acks.push(m) === 1) setImmediate(() => this.#flushAcks());
  }

  #flushAcks(): void {
    const acks = this.#acks;
    this.#acks = [];
    for (const m of acks) m.ack();
  }

  /** Resolves once `n` of the maxInFlight slots are free (or on stop()). */
  async #freeSlots(n: number): Promise<void> {
    while (!this.#stopped && this.settings.maxInFlight - this.#inFlight < n) {
      await new Promise<void>((resolve) => {
        this.#slotFreed = resolve;
        this.#wake = resolve;
      });
    }
  }

  #start(m: JsMsg): void {
    this.#inFlight++;
    void this.#handle(m)
      .catch((err: unknown) => {
        // Not acked: the server redelivers it after ackWait.
        this.#o.onWarning?.('jetstream message not settled', { function: this.name, sequence: m.info.streamSequence, err: errorText(err) });
      })
      .finally(() => {
        this.#inFlight--;
        const freed = this.#slotFreed;
        this.#slotFreed = undefined;
        freed?.();
      });
  }

  async #handle(m: JsMsg): Promise<void> {
    const s = this.settings;
    const metrics = this.#o.metrics;
    const deliveries = m.info.deliveryCount;
    this.#counts.delivered++;
    metrics?.delivered.inc(this.#label);
    if (deliveries > s.maxDeliver) {
      return this.#deadLetter(m, `not acknowledged within ${s.ackWaitMs} ms in ${s.maxDeliver} deliveries`, undefined);
    }
    if (m.data.length > this.#o.maxBodyBytes) {
      return this.#deadLetter(m, `message of ${m.data.length} bytes is over the function's body limit of ${this.#o.maxBodyBytes} bytes`, 413);
    }
    const id = `${m.info.stream}-${m.info.streamSequence}`;
    const publishedMs = m.info.timestampNanos / 1e6;
    const event = toBinaryEvent({
      subject: m.subject,
      data: m.data,
      contentType: m.headers?.get('content-type') || undefined,
      id,
      type: 'dev.kubefn.jetstream.message',
      time: new Date(publishedMs),
    });
    const headers = { ...event.headers, 'x-call-id': id, 'kubefn-delivery': String(deliveries) };
    const keepAlive = setInterval(() => m.working(), Math.max(1000, s.ackWaitMs / 3));
    let result: EventResult | undefined;
    let failure: string | undefined;
    try {
      for (let wait = 20; ; wait = Math.min(wait * 2, 1000)) {
        result = await this.#o.invoke({ name: this.name, headers, body: event.body });
        if (result.code !== 'QUEUE_FULL' || this.#stopped) break;
        await new Promise((resolve) => setTimeout(resolve, wait));
      }
    } catch (err) {
      failure = `call failed: ${errorText(err)}`;
    } finally {
      clearInterval(keepAlive);
    }
    metrics?.latency.observe(this.#label, Math.max(0, Date.now() - publishedMs) / 1000);
    if (result && isSuccess(result.status)) {
      if (this.trigger.output) {
        const type = result.headers['content-type'];
        await this.#o.publish(this.trigger.output, result.body, typeof type === 'string' ? { 'content-type': type } : {}, `out-${id}`);
      }
      this.#ack(m);
      this.#counts.acked++;
      metrics?.acked.inc(this.#label);
      return;
    }
    const reason = failure ?? `function answered ${result!.status}${result!.code ? ` ${result!.code}` : ''}: ${excerpt(result!.body)}`;
    this.#lastError = { message: reason, at: new Date().toISOString() };
    if (result?.status === 413) return this.#deadLetter(m, reason, 413);
    if (deliveries >= s.maxDeliver) return this.#deadLetter(m, reason, result?.status);
    m.nak(backoffFor(s, deliveries));
    this.#counts.retried++;
    metrics?.retried.inc(this.#label);
  }

  async #deadLetter(m: JsMsg, reason: string, status: number | undefined): Promise<void> {
    const target = this.trigger.deadLetter;
    if (target) {
      const h: Record<string, string> = {};
      for (const [k, v] of m.headers ?? []) if (!/^nats-/i.test(k) && v[0] !== undefined) h[k] = v[0];
      h[deadLetterHeaders.error] = headerValue(reason);
      h[deadLetterHeaders.subject] = m.subject;
      h[deadLetterHeaders.deliveries] = String(m.info.deliveryCount);
      h[deadLetterHeaders.stream] = m.info.stream;
      h[deadLetterHeaders.sequence] = String(m.info.streamSequence);
      h[deadLetterHeaders.function] = this.name;
      if (status !== undefined) h[deadLetterHeaders.status] = String(status);
      try {
        await this.#o.publish(target, m.data, h, `dead-${m.info.stream}-${m.info.streamSequence}`);
      } catch (err) {
        // Kept: redelivered later, dead-lettered then.
        m.nak(backoffFor(this.settings, m.info.deliveryCount));
        throw err;
      }
    } else {
      this.#o.onWarning?.('jetstream message given up (the trigger has no deadLetter subject)', { function: this.name, subject: m.subject, sequence: m.info.streamSequence, reason });
    }
    m.term();
    this.#counts.deadLettered++;
    this.#lastError = { message: reason, at: new Date().toISOString() };
    this.#o.metrics?.deadLettered.inc(this.#label);
  }
}

function consumerConfig(name: string, s: ConsumerSettings): Partial<ConsumerConfig> & { durable_name: string } {
  return {
    durable_name: s.durable,
    description: describeOwner(name),
    filter_subject: s.subject,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.New,
    ack_wait: nanos(s.ackWaitMs),
    max_deliver: s.maxDeliver + 1,
    // Each gateway bounds itself to maxInFlight; this bounds them all (and a gateway that died).
    max_ack_pending: Math.min(s.maxInFlight * 64, 100_000),
  };
}

/** The settings in which an existing consumer differs from the trigger's, as "field a (wanted b)". */
function differences(c: ConsumerConfig, s: ConsumerSettings): string[] {
  const out: string[] = [];
  if ((c.filter_subject ?? '') !== s.subject) out.push(`filter subject "${c.filter_subject ?? ''}" (the trigger's: "${s.subject}")`);
  if (c.ack_policy !== AckPolicy.Explicit) out.push(`ack policy ${c.ack_policy} (kubefn needs explicit)`);
  if (ms(c.ack_wait ?? 0) !== s.ackWaitMs) out.push(`ack wait ${ms(c.ack_wait ?? 0)} ms (the trigger's: ${s.ackWaitMs} ms)`);
  if (c.max_deliver !== s.maxDeliver + 1) out.push(`max deliver ${c.max_deliver} (kubefn sets maxDeliver + 1 = ${s.maxDeliver + 1})`);
  if (c.max_ack_pending !== Math.min(s.maxInFlight * 64, 100_000)) out.push(`max ack pending ${c.max_ack_pending}`);
  return out;
}

function streamProblem(stream: StreamInfo, s: ConsumerSettings, i: number): void {
  const subjects = stream.config.subjects ?? [];
  if (!subjects.some((p) => covers(p, s.subject))) {
    throw conflict(
      `stream "${s.stream}" exists with subjects ${JSON.stringify(subjects)}, which do not take the trigger's subject "${s.subject}"`,
      i,
      'subject',
      `use a subject the stream stores, or name another stream`,
    );
  }
}

function consumerProblem(c: ConsumerInfo, name: string, s: ConsumerSettings, i: number): void {
  const diff = differences(c.config, s);
  if (!diff.length) return;
  const ours = c.config.description === describeOwner(name);
  // kubefn updates its own consumers, except the filter subject (the server cannot change it).
  if (ours && (c.config.filter_subject ?? '') === s.subject && c.config.ack_policy === AckPolicy.Explicit) return;
  throw conflict(
    `consumer "${s.durable}" on stream "${s.stream}" exists with ${diff.join(', ')}${ours ? '' : `, and was not made by kubefn for function "${name}"`}`,
    i,
    'durable',
    ours ? 'name another `durable` for the new subject, or delete the function first' : 'name another `durable`, or delete that consumer',
  );
}

/** Whether stream subject pattern `pattern` stores every subject that trigger subject `subject` names. */
export function covers(pattern: string, subject: string): boolean {
  const p = pattern.split('.');
  const s = subject.split('.');
  for (let k = 0; k < p.length; k++) {
    if (p[k] === '>') return s.length > k;
    if (k >= s.length || s[k] === '>') return false;
    if (p[k] !== '*' && p[k] !== s[k]) return false;
  }
  return p.length === s.length;
}

function conflict(message: string, i: number, field: string, hint: string): KubefnError {
  return new KubefnError('CONFLICT', message, { fields: [{ field: `triggers.${i}.${field}`, message }], hint });
}

async function streamInfo(jsm: JetStreamManager, name: string): Promise<StreamInfo | undefined> {
  try {
    return await jsm.streams.info(name);
  } catch (err) {
    if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound) return undefined;
    throw err;
  }
}

async function consumerInfo(jsm: JetStreamManager, stream: string, durable: string): Promise<ConsumerInfo | undefined> {
  try {
    return await jsm.consumers.info(stream, durable);
  } catch (err) {
    if (err instanceof JetStreamApiError && (err.code === JetStreamApiCodes.ConsumerNotFound || err.code === JetStreamApiCodes.StreamNotFound)) return undefined;
    throw err;
  }
}

function excerpt(body: Buffer): string {
  const text = body.subarray(0, 300).toString('utf8');
  return body.length > 300 ? `${text}…` : text;
}

/** A NATS header value: one line, bounded. */
function headerValue(s: string): string {
  return s.replace(/[\r\n]+/g, ' ').slice(0, 1024);
}

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
