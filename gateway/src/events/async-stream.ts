// What the async route and the async workers share: the JetStream stream and durable consumer
// they meet on, and how one accepted call is stored in a message.
//
// One stream (work-queue retention: a call is deleted once a worker acks it; file storage, so
// calls outlive a nats-server restart) and one durable pull consumer shared by every gateway,
// so each call goes to one gateway at a time. The stored call is the message's data (the body,
// byte for byte) plus one header holding the rest of the request as JSON.

import { headers as natsHeaders, nanos, type MsgHdrs, type NatsConnection } from '@nats-io/transport-node';
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  type ConsumerConfig,
  type JetStreamManager,
} from '@nats-io/jetstream';

export const defaultAsyncStream = 'KUBEFN_ASYNC';
export const asyncConsumerName = 'kubefn-async';
/** A call to function `name` is stored on `kubefn.async.<name>`. */
export const asyncSubjectPrefix = 'kubefn.async';

/** The header holding the stored request's method, path, query and headers (JSON). */
const callHeader = 'kubefn-async-call';

export interface AsyncStreamLimits {
  /** Calls stored at most; past it a new call is refused (503 QUEUE_FULL). Default 100000. */
  maxCalls?: number;
  /** Bytes stored at most, likewise. Default 1 GiB. */
  maxBytes?: number;
  /** How long a repeated X-Call-Id is recognised as the same call, ms. Default 2 minutes (JetStream's). */
  duplicateWindowMs?: number;
}

/** An accepted call as stored: enough to replay it against /function/<name>. */
export interface StoredCall {
  name: string;
  callId: string;
  method: string;
  /** The path under the function, raw ('' or '/a/b'). */
  path: string;
  /** The raw query string without '?' ('' when none). */
  query: string;
  headers: Record<string, string>;
  body: Uint8Array;
}

export const asyncSubject = (name: string): string => `${asyncSubjectPrefix}.${name}`;

/** Creates the stream when it is missing; an existing one is left as it is (its creator's limits win). */
export async function ensureAsyncStream(jsm: JetStreamManager, stream: string, limits: AsyncStreamLimits = {}): Promise<void> {
  try {
    await jsm.streams.info(stream);
    return;
  } catch (err) {
    if (!isApiError(err, JetStreamApiCodes.StreamNotFound)) throw err;
  }
  try {
    await jsm.streams.add({
      name: stream,
      subjects: [`${asyncSubjectPrefix}.>`],
      storage: StorageType.File,
      retention: RetentionPolicy.Workqueue,
      discard: DiscardPolicy.New,
      max_msgs: limits.maxCalls ?? 100_000,
      max_bytes: limits.maxBytes ?? 1024 ** 3,
      duplicate_window: nanos(limits.duplicateWindowMs ?? 120_000),
      num_replicas: 1,
    });
  } catch (err) {
    // Another gateway created it meanwhile.
    if (!(await jsm.streams.info(stream).then(() => true, () => false))) throw err;
  }
}

export interface AsyncConsumerSettings {
  /** How long a delivered call may go without an ack or a working() before redelivery, ms. */
  ackWaitMs: number;
  /** Deliveries of one call at most (retries + 1). */
  maxDeliver: number;
  /** Un-acked calls across all gateways at most. */
  maxAckPending: number;
}

/** Creates the shared durable consumer, or brings an existing one's settings in line. */
export async function ensureAsyncConsumer(jsm: JetStreamManager, stream: string, s: AsyncConsumerSettings): Promise<void> {
  const wanted: Partial<ConsumerConfig> = {
    durable_name: asyncConsumerName,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    filter_subject: `${asyncSubjectPrefix}.>`,
    ack_wait: nanos(s.ackWaitMs),
    max_deliver: s.maxDeliver,
    max_ack_pending: s.maxAckPending,
  };
  let existing;
  try {
    existing = await jsm.consumers.info(stream, asyncConsumerName);
  } catch (err) {
    if (!isApiError(err, JetStreamApiCodes.ConsumerNotFound)) throw err;
  }
  if (!existing) {
    try {
      await jsm.consumers.add(stream, wanted);
      return;
    } catch (err) {
      // Another gateway created it meanwhile (with our settings or its own: updated below).
      existing = await jsm.consumers.info(stream, asyncConsumerName).catch(() => undefined);
      if (!existing) throw err;
    }
  }
  const c = existing.config;
  if (c.ack_wait !== wanted.ack_wait || c.max_deliver !== wanted.max_deliver || c.max_ack_pending !== wanted.max_ack_pending) {
    await jsm.consumers.update(stream, asyncConsumerName, { ack_wait: wanted.ack_wait, max_deliver: wanted.max_deliver, max_ack_pending: wanted.max_ack_pending });
  }
}

/** The message headers of a stored call (its data is the body). */
export function callHeaders(call: Omit<StoredCall, 'name' | 'callId' | 'body'>): MsgHdrs {
  const h = natsHeaders();
  h.set(callHeader, JSON.stringify({ method: call.method, path: call.path, query: call.query, headers: call.headers }));
  return h;
}

/** The call stored in a message; throws on a message that is not one (nothing to retry). */
export function decodeCall(subject: string, headers: MsgHdrs | undefined, data: Uint8Array): StoredCall {
  const raw = headers?.get(callHeader);
  if (!raw || !subject.startsWith(`${asyncSubjectPrefix}.`)) throw new Error(`message on ${subject} is not an async call (no ${callHeader} header)`);
  const meta = JSON.parse(raw) as Partial<StoredCall>;
  if (typeof meta.method !== 'string' || typeof meta.path !== 'string' || typeof meta.query !== 'string' || typeof meta.headers !== 'object' || meta.headers === null) {
    throw new Error(`message on ${subject} has a malformed ${callHeader} header`);
  }
  const callId = meta.headers['x-call-id'] ?? '';
  return { name: subject.slice(asyncSubjectPrefix.length + 1), callId, method: meta.method, path: meta.path, query: meta.query, headers: meta.headers, body: data };
}

function isApiError(err: unknown, code: number): boolean {
  return err instanceof JetStreamApiError && err.code === code;
}

/**
 * Whether the connection is up now, from its status events: a call accepted while NATS is away
 * is refused at once rather than after the publish timeout.
 */
export class ConnectionWatch {
  #up = true;
  readonly #events: AsyncIterable<{ type: string }> & { stop?: () => void };

  constructor(readonly nc: NatsConnection) {
    const events = nc.status() as AsyncIterable<{ type: string }> & { stop?: () => void };
    this.#events = events;
    void (async () => {
      for await (const s of events) {
        if (s.type === 'disconnect' || s.type === 'close') this.#up = false;
        else if (s.type === 'reconnect') this.#up = true;
      }
    })().catch(() => {});
  }

  connected(): boolean {
    return this.#up && !this.nc.isClosed();
  }

  stop(): void {
    this.#events.stop?.();
  }
}
