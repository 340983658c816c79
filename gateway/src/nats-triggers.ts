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
import { CloudEvent, HTTP } from 'cloudevents';
import type { FastifyInstance } from 'fastify';
import { headers as natsHeaders, type Msg, type MsgHdrs, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import type { FunctionStatus, TriggerSpec } from '@kubefn/platform';

export interface NatsTriggersOptions {
  connection: NatsConnection;
  /** The gateway's fastify app: messages are injected into its /function/<name> route. */
  app: FastifyInstance;
  /** The deployed functions now (the driver's list). */
  functions: () => Promise<FunctionStatus[]>;
  /** Calls of one trigger running at once in this gateway before messages are dropped (default 256). */
  maxInFlight?: number;
  onWarning?: (message: string, fields?: Record<string, unknown>) => void;
}

/** The reply's status header: NATS has no status line. */
export const replyStatusHeader = 'kubefn-status';
const cloudEventsJson = 'application/cloudevents+json';

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
    const event = toBinaryEvent(msg);
    const res = await this.#o.app.inject({
      method: 'POST',
      url: `/function/${name}`,
      headers: { ...event.headers, 'x-call-id': event.headers['ce-id'] ?? randomUUID() },
      payload: event.body,
    });
    const ok = res.statusCode >= 200 && res.statusCode < 300;
    if (msg.reply) {
      const h = statusHeaders(res.statusCode);
      const type = res.headers['content-type'];
      if (typeof type === 'string') h.set('content-type', type);
      msg.respond(res.rawPayload, { headers: h });
    }
    if (ok && trigger.output) this.#o.connection.publish(trigger.output, res.rawPayload);
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

/**
 * The message as a binary-mode CloudEvent: a structured one (content-type
 * application/cloudevents+json) keeps its attributes; any other becomes an event of type
 * dev.kubefn.nats.message from nats://<subject>, its data the message's bytes.
 */
export function toBinaryEvent(msg: Msg): { headers: Record<string, string>; body: Buffer } {
  const contentType = msg.headers?.get('content-type') || undefined;
  let event: CloudEvent<unknown>;
  if (contentType?.startsWith(cloudEventsJson)) {
    const parsed = HTTP.toEvent({ headers: { 'content-type': contentType }, body: Buffer.from(msg.data).toString('utf8') });
    event = (Array.isArray(parsed) ? parsed[0] : parsed) as CloudEvent<unknown>;
  } else {
    event = new CloudEvent<unknown>({
      id: randomUUID(),
      type: 'dev.kubefn.nats.message',
      source: `nats://${msg.subject}`,
      subject: msg.subject,
      datacontenttype: contentType ?? 'application/octet-stream',
      data: Buffer.from(msg.data),
    });
  }
  const binary = HTTP.binary(event);
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(binary.headers)) headers[k] = String(v);
  const body = binary.body === undefined ? Buffer.alloc(0) : Buffer.isBuffer(binary.body) ? binary.body : Buffer.from(typeof binary.body === 'string' ? binary.body : JSON.stringify(binary.body));
  return { headers, body };
}
