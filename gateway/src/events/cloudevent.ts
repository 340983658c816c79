// A NATS message as the CloudEvent a function receives: binary mode (each attribute a ce-*
// header, the data as the body), built with the `cloudevents` package. A structured message
// (content-type application/cloudevents+json) keeps its own attributes; any other becomes an
// event of type `type` from nats://<subject>, its data the message's bytes.

import { randomUUID } from 'node:crypto';
import { CloudEvent, HTTP } from 'cloudevents';

export const cloudEventsJson = 'application/cloudevents+json';

export interface EventMessage {
  subject: string;
  data: Uint8Array;
  /** The message's content-type header, if any. */
  contentType?: string | undefined;
  /** An id to use when the message carries none (JetStream: stream and sequence). */
  id?: string;
  /** The event type when the message is not a CloudEvent itself. */
  type?: string;
  /** When the message was published, if known (JetStream stores it). */
  time?: Date;
}

export interface BinaryEvent {
  headers: Record<string, string>;
  body: Buffer;
}

export function toBinaryEvent(msg: EventMessage): BinaryEvent {
  let event: CloudEvent<unknown>;
  if (msg.contentType?.startsWith(cloudEventsJson)) {
    const parsed = HTTP.toEvent({ headers: { 'content-type': msg.contentType }, body: Buffer.from(msg.data).toString('utf8') });
    event = (Array.isArray(parsed) ? parsed[0] : parsed) as CloudEvent<unknown>;
  } else {
    event = new CloudEvent<unknown>({
      id: msg.id ?? randomUUID(),
      type: msg.type ?? 'dev.kubefn.nats.message',
      source: `nats://${msg.subject}`,
      subject: msg.subject,
      datacontenttype: msg.contentType ?? 'application/octet-stream',
      data: Buffer.from(msg.data),
      ...(msg.time ? { time: msg.time.toISOString() } : {}),
    });
  }
  return toBinary(event);
}

/** An event in HTTP binary mode: each attribute a ce-* header, content-type its datacontenttype. */
export function toBinary(event: CloudEvent<unknown>): BinaryEvent {
  const binary = HTTP.binary(event);
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(binary.headers)) headers[k] = String(v);
  const body =
    binary.body === undefined
      ? Buffer.alloc(0)
      : Buffer.isBuffer(binary.body)
        ? binary.body
        : Buffer.from(typeof binary.body === 'string' ? binary.body : JSON.stringify(binary.body));
  return { headers, body };
}
