// POST /system/events/publish: a message to NATS through the gateway, which reaches NATS where a
// laptop does not (a cluster's NATS is internal). Behind the management token like every /system
// route (registered among the system plugins). `fn publish` is its client.
//
//   POST /system/events/publish?subject=orders.new[&header=Name:Value]...[&reply=true&timeout=10s]
//   body: the message's data, as is (any content type; the HTTP Content-Type is not forwarded:
//   pass a content-type header with `header=content-type:application/json`)
//
// Headers go as query parameters so their names keep their case (JetStream reads `Nats-Msg-Id`
// exactly). Without `reply`: 200 {subject, bytes} once the server has the message. With
// `reply=true`: a request; 200 {subject, status?, headers, data, encoding} with the reply, where
// `status` is the reply's kubefn-status header (a function's HTTP status) and `data` is UTF-8 text
// or, when the reply is not valid UTF-8, base64 (`encoding` says which).

import type { FastifyInstance } from 'fastify';
import { Type, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { headers as natsHeaders, type Msg, type MsgHdrs, type NatsConnection } from '@nats-io/transport-node';
import { isKubefnError, KubefnError, parseDuration, subjectProblem, type PublishReply } from '@kubefn/platform';
import { replyStatusHeader } from './nats-triggers.js';

export interface PublishRouteOptions {
  /** The gateway's NATS connection, started on demand; undefined when it has none; a rejection says why. */
  connection(): Promise<NatsConnection> | NatsConnection | undefined;
  /** Largest message body, bytes (default 1 MiB); the NATS server's max_payload bounds it too. */
  maxBodyBytes?: number;
}

export const publishPath = '/system/events/publish';
/** Longest a request waits for its reply, ms. */
export const maxReplyTimeoutMs = 5 * 60_000;
const defaultReplyTimeout = '10s';
const maxHeaders = 64;

const PublishQuery = Type.Object({
  subject: Type.String({ minLength: 1, maxLength: 1024 }),
  reply: Type.Optional(Type.Boolean()),
  timeout: Type.Optional(Type.String({ maxLength: 32 })),
  header: Type.Optional(Type.Union([Type.String({ maxLength: 8192 }), Type.Array(Type.String({ maxLength: 8192 }), { maxItems: maxHeaders })])),
});

export async function publishRoute(base: FastifyInstance, options: PublishRouteOptions): Promise<void> {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();
  const bodyLimit = options.maxBodyBytes ?? 1024 * 1024;
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit }, (_request, body, done) => done(null, body));

  app.post(publishPath, { bodyLimit, schema: { querystring: PublishQuery } }, async (request, reply) => {
    const q = request.query;
    const bad = subjectProblem(q.subject, false);
    if (bad) throw new KubefnError('BAD_REQUEST', `subject ${bad}`, { fields: [{ field: 'subject', message: bad }] });
    const headers = parseHeaders(typeof q.header === 'string' ? [q.header] : (q.header ?? []));
    const timeoutMs = parseTimeout(q.timeout ?? defaultReplyTimeout);
    const data = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
    const nc = await natsOf(options);
    const maxPayload = nc.info?.max_payload;
    if (maxPayload !== undefined && data.length > maxPayload) {
      throw new KubefnError('BODY_TOO_LARGE', `the message is ${data.length} bytes, over the NATS server's max_payload of ${maxPayload}`, {
        hint: 'send a smaller message (or raise max_payload in the server\'s config)',
      });
    }
    if (!q.reply) {
      nc.publish(q.subject, data, headers ? { headers } : {});
      // The server has it once a round trip completes: errors come back now, not later.
      await bounded(nc.flush(), timeoutMs, `NATS did not confirm the message within ${timeoutMs} ms`);
      return reply.code(200).send({ subject: q.subject, bytes: data.length });
    }
    let msg: Msg;
    try {
      msg = await nc.request(q.subject, data, { timeout: timeoutMs, ...(headers ? { headers } : {}) });
    } catch (err) {
      throw requestError(err, q.subject, timeoutMs);
    }
    return reply.code(200).send(replyBody(q.subject, msg));
  });
}

/** "Name:Value" pairs (split at the first colon, which a NATS header name cannot hold). */
function parseHeaders(pairs: readonly string[]): MsgHdrs | undefined {
  if (!pairs.length) return undefined;
  if (pairs.length > maxHeaders) throw new KubefnError('BAD_REQUEST', `at most ${maxHeaders} headers`);
  const h = natsHeaders();
  for (const [i, pair] of pairs.entries()) {
    const at = pair.indexOf(':');
    const name = at > 0 ? pair.slice(0, at) : '';
    const value = at > 0 ? pair.slice(at + 1).trim() : '';
    let problem: string | undefined;
    if (!/^[\x21-\x39\x3b-\x7e]+$/.test(name)) problem = `must be "Name:Value", the name printable ASCII without spaces or ":" (got ${JSON.stringify(pair)})`;
    else if (/[\r\n]/.test(value)) problem = `value of ${name} must be one line`;
    if (problem) throw new KubefnError('BAD_REQUEST', `header ${problem}`, { fields: [{ field: `header.${i}`, message: problem }] });
    h.append(name, value);
  }
  return h;
}

function parseTimeout(text: string): number {
  let ms: number;
  try {
    ms = parseDuration(text);
  } catch {
    ms = Number.NaN;
  }
  if (!(ms >= 1 && ms <= maxReplyTimeoutMs)) {
    const message = `must be a duration from 1ms to 5m, like "10s" (got ${JSON.stringify(text)})`;
    throw new KubefnError('BAD_REQUEST', `timeout ${message}`, { fields: [{ field: 'timeout', message }] });
  }
  return ms;
}

async function natsOf(options: PublishRouteOptions): Promise<NatsConnection> {
  let nc: NatsConnection | undefined;
  try {
    nc = await options.connection();
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    throw new KubefnError(isKubefnError(err) ? err.code : 'UNAVAILABLE', `no NATS to publish to: ${message}`, {
      cause: err,
      ...(isKubefnError(err) && err.hint ? { hint: err.hint } : {}),
    });
  }
  if (!nc) {
    throw new KubefnError('NOT_SUPPORTED', 'this gateway has no NATS server to publish to', {
      hint: '`fn up` starts one when nats-server is installed (apt-get install nats-server), or give it one: fn up --nats nats://host:4222',
    });
  }
  if (nc.isClosed() || nc.isDraining()) throw new KubefnError('UNAVAILABLE', 'the gateway\'s NATS connection is closed', { hint: 'the platform is stopping' });
  return nc;
}

function requestError(err: unknown, subject: string, timeoutMs: number): KubefnError {
  const e = err as { name?: string; message?: string; cause?: { name?: string }; isNoResponders?: () => boolean };
  if (e.name === 'TimeoutError' || e.cause?.name === 'TimeoutError') {
    return new KubefnError('TIMEOUT', `no reply on ${subject} within ${timeoutMs} ms`, {
      hint: 'a function behind the subject may be starting from zero or slow: raise --timeout',
      cause: err,
    });
  }
  if (e.isNoResponders?.() || e.name === 'NoRespondersError' || e.cause?.name === 'NoRespondersError') {
    return new KubefnError('UNAVAILABLE', `nothing subscribes to ${subject}, so no reply can come`, {
      hint: 'deploy a function with a nats trigger on this subject (triggers in fn.yaml), or publish without --reply',
      cause: err,
    });
  }
  return new KubefnError('UNAVAILABLE', `the request on ${subject} failed: ${e.message ?? String(err)}`, { cause: err });
}

function replyBody(subject: string, msg: Msg): PublishReply {
  const headers: Record<string, string[]> = {};
  for (const [k, v] of msg.headers ?? []) headers[k] = [...v];
  const status = Number(msg.headers?.get(replyStatusHeader));
  const data = Buffer.from(msg.data);
  const text = new TextDecoder('utf-8', { fatal: false }).decode(data);
  const utf8 = Buffer.from(text, 'utf8').equals(data);
  return {
    subject,
    ...(Number.isInteger(status) && status > 0 ? { status } : {}),
    headers,
    data: utf8 ? text : data.toString('base64'),
    encoding: utf8 ? 'utf8' : 'base64',
  };
}

async function bounded<T>(work: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      work,
      new Promise<never>((_resolve, reject) => (timer = setTimeout(() => reject(new KubefnError('UNAVAILABLE', message)), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
