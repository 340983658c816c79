// OpenFaaS-style async invocation: POST /async-function/<name>[/<path>] stores the call in
// JetStream and answers 202 with its X-Call-Id once the store acknowledged it; the workers in
// async-worker.ts replay it through /function/<name> later and POST the result to the caller's
// X-Callback-Url. The caller's X-Call-Id is the message id, so a POST repeated within the
// stream's duplicate window is stored once.

import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamClient } from '@nats-io/jetstream';
import { KubefnError } from '@kubefn/platform';
import { kubefnErrorHandler } from '../error-handler.js';
import { endToEnd } from '../headers.js';
import { appendForwarded } from '../invoke.js';
import { functionName } from '../function-call.js';
import { asyncSubject, callHeaders, ConnectionWatch, defaultAsyncStream, ensureAsyncStream, type AsyncStreamLimits } from './async-stream.js';

export { AsyncInvocations, type AsyncInvocationsOptions, type AsyncInvocationsState } from './async-worker.js';

export interface AsyncPluginOptions {
  /** The NATS connection, or how to get it (made on first use); a rejection is the caller's error. */
  connection: NatsConnection | (() => Promise<NatsConnection>);
  /** Whether a function of that name is deployed (the gateway's catalog). */
  exists: (name: string) => Promise<boolean>;
  /** The gateway's invocation body limit, bytes (default 32 MiB); NATS's max_payload may be lower. */
  maxBodyBytes?: number;
  /** The JetStream stream (default KUBEFN_ASYNC), created when missing. */
  stream?: string;
  /** Limits of the stream when this gateway creates it. */
  limits?: AsyncStreamLimits;
  /** How long to wait for JetStream to confirm a stored call, ms (default 5000). */
  publishTimeoutMs?: number;
}

/** NATS protocol bytes beside the body and our header (the status line, Nats-Msg-Id, separators). */
const headerOverheadBytes = 256;
const defaultMaxPayload = 1024 * 1024;
const natsHint = 'async calls need NATS with JetStream (nats-server -js); the gateway reconnects by itself, retry later';

export async function asyncPlugin(app: FastifyInstance, options: AsyncPluginOptions): Promise<void> {
  const stream = options.stream ?? defaultAsyncStream;
  const maxBodyBytes = options.maxBodyBytes ?? 32 * 1024 * 1024;
  const timeout = options.publishTimeoutMs ?? 5000;
  // The connection and what hangs on it, made on the first call (a failure is tried again on the next).
  let linked: { nc: NatsConnection; js: JetStreamClient; watch: ConnectionWatch } | undefined;
  let linking: Promise<NonNullable<typeof linked>> | undefined;
  const link = (): Promise<NonNullable<typeof linked>> => {
    if (linked) return Promise.resolve(linked);
    const source = options.connection;
    linking ??= (typeof source === 'function' ? source() : Promise.resolve(source)).then(
      (nc) => (linked = { nc, js: jetstream(nc, { timeout }), watch: new ConnectionWatch(nc) }),
      (err: unknown) => {
        linking = undefined;
        throw err;
      },
    );
    return linking;
  };
  if (typeof options.connection !== 'function') void link();
  app.addHook('onClose', async () => linked?.watch.stop());

  /** The body limit now and what sets it: the NATS server's may change on reconnect. */
  const bodyLimit = (): { bytes: number; by: string } => {
    const maxPayload = linked?.nc.info?.max_payload ?? defaultMaxPayload;
    return maxPayload < maxBodyBytes ? { bytes: maxPayload, by: "the NATS server's max_payload" } : { bytes: maxBodyBytes, by: "the gateway's body limit" };
  };
  const tooLarge = (size: string) => {
    const limit = bodyLimit();
    return new KubefnError('BODY_TOO_LARGE', `async request of ${size} is over the ${limit.bytes} byte limit (${limit.by})`, {
      hint: limit.by.includes('NATS') ? 'send a smaller body, call /function/<name> synchronously, or raise max_payload in nats-server' : 'send a smaller body',
    });
  };

  // This scope stores bodies as they came: every content type is read raw, up to the limit.
  app.setErrorHandler(kubefnErrorHandler);
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', async (_request: FastifyRequest, payload: IncomingMessage) => readBody(payload, bodyLimit().bytes, tooLarge));

  // Refusals that need no body come before it is read.
  const admit = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    reply.header('x-call-id', callIdOf(request));
    const name = functionName((request.params as { name: string }).name);
    if (!(await options.exists(name))) throw new KubefnError('NOT_FOUND', `no function named "${name}"`, { hint: 'see `fn list`' });
    const length = Number(request.headers['content-length'] ?? 0);
    const { watch } = await link();
    if (length > bodyLimit().bytes) throw tooLarge(`${length} bytes`);
    if (!watch.connected()) throw new KubefnError('UNAVAILABLE', 'NATS is not connected: the async call was not stored', { hint: natsHint });
  };

  const accept = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const { name: rawName } = request.params as { name: string };
    const name = functionName(rawName);
    const callId = callIdOf(request);
    const callbackUrl = request.headers['x-callback-url'];
    if (callbackUrl !== undefined) checkCallbackUrl(callbackUrl);
    const body = (request.body as Buffer | undefined) ?? Buffer.alloc(0);

    const headers = flatten(endToEnd(request.headers));
    delete headers['content-length'];
    headers['x-call-id'] = callId;
    headers['x-forwarded-for'] = appendForwarded(request.headers['x-forwarded-for'], request.ip);
    headers['x-forwarded-host'] ??= request.headers.host ?? '';
    headers['x-forwarded-proto'] ??= request.protocol;
    const { path, query } = splitUrl(request.raw.url ?? '', `/async-function/${rawName}`);
    const h = callHeaders({ method: request.method, path, query, headers });

    const { nc } = await link();
    const maxPayload = nc.info?.max_payload ?? defaultMaxPayload;
    const headerBytes = Buffer.byteLength(h.toString()) + Buffer.byteLength(callId) + headerOverheadBytes;
    if (body.byteLength + headerBytes > maxPayload) {
      throw new KubefnError('BODY_TOO_LARGE', `async request of ${body.byteLength} bytes plus ${headerBytes} bytes of headers is over the NATS server's max_payload of ${maxPayload} bytes`, {
        hint: 'send a smaller body or fewer headers, or raise max_payload in nats-server',
      });
    }
    await publish(name, body, h, callId);
    reply.code(202).header('x-call-id', callId).send();
  };

  const publish = async (name: string, body: Buffer, h: ReturnType<typeof callHeaders>, callId: string): Promise<void> => {
    const { nc, js } = await link();
    for (let attempt = 1; ; attempt++) {
      try {
        await js.publish(asyncSubject(name), body, { msgID: callId, headers: h, timeout });
        return;
      } catch (err) {
        // No stream listens on the subject yet: create it once and try again.
        if (errorName(err) === 'JetStreamNotEnabled' && attempt === 1) {
          const jsm = await jetstreamManager(nc, { timeout }).catch((e: unknown) => {
            throw unavailable(`JetStream is not available: ${(e as Error).message}`, e);
          });
          await ensureAsyncStream(jsm, stream, options.limits).catch((e: unknown) => {
            throw unavailable(`cannot create the JetStream stream ${stream}: ${(e as Error).message}`, e);
          });
          continue;
        }
        throw publishError(err, stream, timeout);
      }
    }
  };

  const route = { onRequest: admit, handler: accept };
  // OpenFaaS takes only POST here.
  app.post('/async-function/:name', route);
  app.post('/async-function/:name/*', route);
}

function callIdOf(request: FastifyRequest): string {
  const given = request.headers['x-call-id'];
  if (typeof given === 'string' && given !== '') return given;
  // One id per request, whichever hook asks first.
  const r = request as FastifyRequest & { kubefnCallId?: string };
  return (r.kubefnCallId ??= randomUUID());
}

function checkCallbackUrl(value: string | string[]): void {
  const text = Array.isArray(value) ? value[0] ?? '' : value;
  let url: URL | undefined;
  try {
    url = new URL(text);
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    throw new KubefnError('BAD_REQUEST', `X-Callback-Url "${text.slice(0, 200)}" is not an absolute http(s) URL`);
  }
}

/** "/async-function/fn/a/b?x=1" -> { path: "/a/b", query: "x=1" }, raw bytes kept. */
function splitUrl(url: string, prefix: string): { path: string; query: string } {
  const rest = url.startsWith(prefix) ? url.slice(prefix.length) : '';
  const q = rest.indexOf('?');
  return q < 0 ? { path: rest, query: '' } : { path: rest.slice(0, q), query: rest.slice(q + 1) };
}

function flatten(headers: Record<string, string | string[]>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) out[k] = Array.isArray(v) ? v.join(k === 'cookie' ? '; ' : ', ') : v;
  return out;
}

/** Reads a body into one Buffer, refusing it as soon as it passes `limit` bytes. */
async function readBody(payload: IncomingMessage, limit: number, tooLarge: (size: string) => Error): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of payload as AsyncIterable<Buffer>) {
    size += chunk.byteLength;
    if (size > limit) throw tooLarge(`more than ${limit} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}

function unavailable(message: string, cause: unknown): KubefnError {
  return new KubefnError('UNAVAILABLE', message, { cause, hint: natsHint });
}

function publishError(err: unknown, stream: string, timeoutMs: number): KubefnError {
  if (err instanceof KubefnError) return err;
  if (errorName(err) === 'TimeoutError') return unavailable(`JetStream did not confirm the async call within ${timeoutMs} ms: it was not stored`, err);
  const message = (err as Error).message ?? String(err);
  if (/maximum (messages|bytes)|resource limits exceeded/i.test(message)) {
    return new KubefnError('QUEUE_FULL', `the async queue (stream ${stream}) is full: ${message}`, { cause: err, hint: 'retry later; workers drain it as functions answer' });
  }
  return unavailable(`storing the async call failed: ${message}`, err);
}

// nats.js does not export every error class it throws; its names are stable.
const errorName = (err: unknown): string | undefined => (err instanceof Error ? err.name : undefined);
