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
import type { FunctionStatus, TriggerSpec } from '@kubefn/platform';
import { isSuccess, type Invoke } from './call.js';
import { toBinaryEvent } from './cloudevent.js';

export interface NatsTriggersOptions {
  connection: NatsConnection;
  /** Calls a function through the gateway's invoke route (call.ts). */
  invoke: Invoke;
  /** The deployed functions now (the driver's list). */
  functions: () => Promise<FunctionStatus[]>;
  /** Calls of one trigger running at once in this gateway before messages are dropped (default 256). */
  maxInFlight?: number;
  onWarning?: (message: string, fields?: Record<string, unknown>) => void;
}

/** The reply's status header: NATS has no status line. */
export const replyStatusHeader = 'kubefn-status';

interface Active {
  subscription: Subscription;
  inFlight: number;
}

export interface NatsTriggerCounts {
  delivered: number;
  succeeded: number;
  failed: number;
  dropped: number;
}

export class NatsTriggers {
  readonly #o: NatsTriggersOptions;
  readonly #active = new Map<string, Active>();
  readonly #counts = new Map<string, NatsTriggerCounts>();
  #syncing: Promise<void> | undefined;
  #again = false;
  #closed = false;

  constructor(options: NatsTriggersOptions) {
    this.#o = options;
  }

  /** Per function: messages delivered, answered 2xx, failed, and dropped at the in-flight limit. */
  counts(name: string): NatsTriggerCounts {
    return { ...(this.#counts.get(name) ?? { delivered: 0, succeeded: 0, failed: 0, dropped: 0 }) };
  }

  /**
   * Subscribes to the nats triggers of every deployed function and unsubscribes from those that
   * went; calls made while one runs are coalesced into one more run.
   */
  sync(): Promise<void> {
    if (this.#syncing) {
      this.#again = true;
      return this.#syncing;
    }
    this.#syncing = (async () => {
      try {
        do {
          this.#again = false;
          await this.#syncOnce();
        } while (this.#again && !this.#closed);
      } finally {
        this.#syncing = undefined;
      }
    })();
    return this.#syncing;
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#syncing?.catch(() => {});
    for (const { subscription } of this.#active.values()) subscription.unsubscribe();
    this.#active.clear();
  }

  async #syncOnce(): Promise<void> {
    if (this.#closed) return;
    const wanted = new Map<string, { name: string; trigger: TriggerSpec }>();
    for (const fn of await this.#o.functions()) {
      for (const trigger of fn.spec.triggers) {
        if (trigger.type === 'nats') wanted.set(keyOf(fn.spec.name, trigger), { name: fn.spec.name, trigger });
      }
    }
    for (const [key, active] of this.#active) {
      if (!wanted.has(key)) {
        active.subscription.unsubscribe();
        this.#active.delete(key);
      }
    }
    for (const [key, { name, trigger }] of wanted) {
      if (this.#active.has(key) || this.#closed) continue;
      const active: Active = { subscription: undefined as unknown as Subscription, inFlight: 0 };
      active.subscription = this.#o.connection.subscribe(trigger.subject!, {
        ...(trigger.queue ? { queue: trigger.queue } : {}),
        callback: (err, msg) => {
          if (err) {
            this.#o.onWarning?.('nats subscription failed', { function: name, subject: trigger.subject, err });
            return;
          }
          this.#deliver(name, trigger, active, msg);
        },
      });
      this.#active.set(key, active);
    }
  }

  #deliver(name: string, trigger: TriggerSpec, active: Active, msg: Msg): void {
    const counts = this.#countsOf(name);
    const limit = this.#o.maxInFlight ?? 256;
    if (active.inFlight >= limit) {
      counts.dropped++;
      if (msg.reply) msg.respond(new TextEncoder().encode(`function "${name}" has ${limit} calls from ${trigger.subject} running`), { headers: statusHeaders(503) });
      return;
    }
    active.inFlight++;
    counts.delivered++;
    void this.#call(name, trigger, msg)
      .then(
        (ok) => {
          if (ok) counts.succeeded++;
          else counts.failed++;
        },
        (err: unknown) => {
          counts.failed++;
          this.#o.onWarning?.('nats trigger call failed', { function: name, subject: msg.subject, err });
        },
      )
      .finally(() => active.inFlight--);
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
    if (ok && trigger.output) this.#o.connection.publish(trigger.output, res.body);
    return ok;
  }

  #countsOf(name: string): NatsTriggerCounts {
    let c = this.#counts.get(name);
    if (!c) this.#counts.set(name, (c = { delivered: 0, succeeded: 0, failed: 0, dropped: 0 }));
    return c;
  }
}

function keyOf(name: string, t: TriggerSpec): string {
  return JSON.stringify([name, t.subject, t.queue ?? '', t.output ?? '']);
}

function statusHeaders(status: number): MsgHdrs {
  const h = natsHeaders();
  h.set(replyStatusHeader, String(status));
  return h;
}
