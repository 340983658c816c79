// Core NATS triggers: each `nats` trigger of a deployed function is a subscription (in its queue
// group when it names one, so N gateways deliver each message once), and each message is a call
// through the gateway's own invoke route: scale from zero, concurrency limits, the queue, metrics
// and call ids are those of HTTP. The function sees a CloudEvent in binary mode (ce-* headers,
// the message's data as the body); a structured CloudEvent message is turned into binary mode
// first. A message with a reply subject gets the function's response as its reply (status in
// the `kubefn-status` header); a trigger's `output` subject gets every 2xx result.
//
// Core NATS is at most once: a message that arrives while `maxInFlight` calls of its trigger are
// still running is dropped and counted, not queued without bound.

import { randomUUID } from 'node:crypto';
import { headers as natsHeaders, type Msg, type MsgHdrs, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import type { FunctionSpec, TriggerSpec } from '@kubefn/platform';
import { isSuccess, type Invoke } from './call.js';
import { toBinaryEvent } from './cloudevent.js';
import { triggerLabel, type EventMetrics } from './event-metrics.js';
import type { Publish } from './publisher.js';

export interface NatsTriggersOptions {
  connection: NatsConnection;
  /** Calls a function through the gateway's invoke route (call.ts). */
  invoke: Invoke;
  /** Publishes a result to an output subject (publisher.ts). */
  publish: Publish;
  metrics?: EventMetrics;
  /** Calls of one trigger running at once in this gateway before messages are dropped (default 256). */
  maxInFlight?: number;
  onWarning?: (message: string, fields?: Record<string, unknown>) => void;
}

/** The reply's status header: NATS has no status line. */
export const replyStatusHeader = 'kubefn-status';

export interface NatsTriggerState {
  index: number;
  subject: string;
  queue?: string;
  /** Subscribed. */
  ready: boolean;
  /** This gateway's counts since it started: messages delivered, answered 2xx, failed, dropped at the in-flight limit. */
  delivered: number;
  succeeded: number;
  failed: number;
  dropped: number;
  inFlight: number;
  lastError?: string;
}

interface Active {
  name: string;
  index: number;
  trigger: TriggerSpec;
  subscription: Subscription;
  state: NatsTriggerState;
}

export class NatsTriggers {
  readonly #o: NatsTriggersOptions;
  readonly #active = new Map<string, Active>();
  #closed = false;

  constructor(options: NatsTriggersOptions) {
    this.#o = options;
  }

  state(name: string): NatsTriggerState[] {
    return [...this.#active.values()].filter((a) => a.name === name).map((a) => ({ ...a.state, ready: !a.subscription.isClosed() }));
  }

  /** Subscribes to the nats triggers of `functions` and unsubscribes from those that went. */
  sync(functions: FunctionSpec[]): void {
    if (this.#closed) return;
    const wanted = new Map<string, { name: string; index: number; trigger: TriggerSpec }>();
    for (const spec of functions) {
      for (const [index, trigger] of spec.triggers.entries()) {
        if (trigger.type === 'nats') wanted.set(JSON.stringify([spec.name, index, trigger]), { name: spec.name, index, trigger });
      }
    }
    for (const [key, active] of this.#active) {
      if (!wanted.has(key)) {
        active.subscription.unsubscribe();
        this.#active.delete(key);
      }
    }
    for (const [key, { name, index, trigger }] of wanted) {
      if (this.#active.has(key)) continue;
      const state: NatsTriggerState = { index, subject: trigger.subject!, ...(trigger.queue ? { queue: trigger.queue } : {}), ready: true, delivered: 0, succeeded: 0, failed: 0, dropped: 0, inFlight: 0 };
      const active: Active = { name, index, trigger, state, subscription: undefined as unknown as Subscription };
      active.subscription = this.#o.connection.subscribe(trigger.subject!, {
        ...(trigger.queue ? { queue: trigger.queue } : {}),
        callback: (err, msg) => {
          if (err) {
            state.lastError = err.message;
            this.#o.onWarning?.('nats subscription failed', { function: name, subject: trigger.subject, err });
            return;
          }
          this.#deliver(active, msg);
        },
      });
      this.#active.set(key, active);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const { subscription } of this.#active.values()) subscription.unsubscribe();
    this.#active.clear();
  }

  #deliver(active: Active, msg: Msg): void {
    const { state, name, trigger } = active;
    const label = { function: name, trigger: triggerLabel(trigger) };
    const limit = this.#o.maxInFlight ?? 256;
    if (state.inFlight >= limit) {
      state.dropped++;
      this.#o.metrics?.dropped.inc(label);
      if (msg.reply) msg.respond(new TextEncoder().encode(`function "${name}" has ${limit} calls from ${trigger.subject} running`), { headers: statusHeaders(503) });
      return;
    }
    state.inFlight++;
    state.delivered++;
    this.#o.metrics?.delivered.inc(label);
    void this.#call(name, trigger, msg)
      .then(
        (ok) => {
          if (ok) {
            state.succeeded++;
            this.#o.metrics?.acked.inc(label);
          } else state.failed++;
        },
        (err: unknown) => {
          state.failed++;
          state.lastError = err instanceof Error ? err.message : String(err);
          this.#o.onWarning?.('nats trigger call failed', { function: name, subject: msg.subject, err });
        },
      )
      .finally(() => state.inFlight--);
  }

  /** One message, one call; true when the function answered 2xx. */
  async #call(name: string, trigger: TriggerSpec, msg: Msg): Promise<boolean> {
    const event = toBinaryEvent({ subject: msg.subject, data: msg.data, contentType: msg.headers?.get('content-type') || undefined });
    const res = await this.#o.invoke({ name, headers: { ...event.headers, 'x-call-id': event.headers['ce-id'] ?? randomUUID() }, body: event.body });
    const ok = isSuccess(res.status);
    if (msg.reply) {
      const h = statusHeaders(res.status);
      const type = res.headers['content-type'];
      if (typeof type === 'string') h.set('content-type', type);
      msg.respond(res.body, { headers: h });
    }
    if (ok && trigger.output) {
      const type = res.headers['content-type'];
      await this.#o.publish(trigger.output, res.body, typeof type === 'string' ? { 'content-type': type } : {});
    }
    return ok;
  }
}

function statusHeaders(status: number): MsgHdrs {
  const h = natsHeaders();
  h.set(replyStatusHeader, String(status));
  return h;
}
