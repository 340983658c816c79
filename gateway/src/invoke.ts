// The invoke path: /function/<name>[/<path>] -> a ready replica, through the activator queue
// when none is free, with X-Call-Id / X-Start-Time / X-Duration-Seconds on the way. The call
// itself (lookup, lease, retries, accounting) is function-call.ts, shared with event triggers;
// this is the HTTP adapter around it: the caller's socket, headers and streamed bodies.
//
// It works on node's raw request and response. The gateway's server hands it /function/ requests
// before fastify sees them (invokeFast), which spares each call fastify's request and reply
// objects, hooks and routing; fastify's own route (inject(), and names the fast path leaves to it)
// runs the same code on a hijacked reply.

import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { KubefnError } from '@kubefn/platform';
import type { GatewayContext } from './context.js';
import { errorAnswer, kubefnErrorHeader, logErrorAnswer } from './error-handler.js';
import type { AnswerSink } from './function-call.js';
import { hopByHop } from './headers.js';
import { retryAfterSeconds } from './router.js';

const bodiless = new Set(['GET', 'HEAD', 'OPTIONS', 'DELETE']);

/** What the invoke path needs besides the gateway's context. */
export interface InvokeEnv {
  ctx: GatewayContext;
  log: FastifyBaseLogger | undefined;
  /** Set once the gateway closes: calls are refused with SHUTTING_DOWN. */
  closing(): boolean;
  /** Told of a request answered before its body was read (see UnreadBodies). */
  answeredUnread(req: IncomingMessage): void;
}

export async function invokePlugin(app: FastifyInstance, env: InvokeEnv): Promise<void> {
  // Bodies pass through as streams; the replica enforces its own body limit.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_req, payload, done) => done(null, payload));

  const handler = (request: FastifyRequest, reply: FastifyReply) => {
    reply.hijack();
    const { name } = request.params as { name: string };
    // fastify writes this request's log line itself.
    return invoke(env, request.raw, reply.raw, name, request.ip, false);
  };
  app.all('/function/:name', handler);
  app.all('/function/:name/*', handler);
}

/** A plain function name after /function/, up to the next / or ?: what invokeFast takes itself. */
const fastPath = /^\/function\/([a-z0-9][a-z0-9-]{0,62})(?=[/?]|$)/;

/**
 * Serves `req` when it is a call of a plainly named function, and says so; anything else (other
 * routes, names with a namespace or characters to decode) is fastify's.
 */
export function invokeFast(env: InvokeEnv, req: IncomingMessage, res: ServerResponse): boolean {
  const m = fastPath.exec(req.url ?? '');
  if (!m) return false;
  void invoke(env, req, res, m[1]!, req.socket.remoteAddress ?? '', env.ctx.options.requestLog);
  return true;
}

/** Serves one call; `logLine`: write its request log line (the fast path's calls bypass fastify's). */
async function invoke(env: InvokeEnv, req: IncomingMessage, res: ServerResponse, rawName: string, ip: string, logLine: boolean): Promise<void> {
  const started = performance.now();
  const startNs = `${Date.now()}000000`;
  // One pass over the raw headers: node's headers object is never built.
  const incoming = readHeaders(req.rawHeaders);
  const callId = incoming.callId || randomUUID();
  const ctx = env.ctx;
  let status = 0;
  try {
    if (env.closing()) {
      res.setHeader('connection', 'close');
      throw new KubefnError('SHUTTING_DOWN', 'the gateway is shutting down', { hint: 'retry: another gateway, or this one once restarted, takes the call' });
    }
    const length = Number(incoming.contentLength ?? 0);
    const { name, fn } = ctx.caller.peek(rawName, length) ?? (await ctx.caller.find(rawName, length));

    const finished = ctx.caller.begin(name);
    const sink: AnswerSink = {
      res,
      head: (answered, headers) => {
        status = answered;
        const seconds = (performance.now() - started) / 1000;
        ctx.caller.observeDuration(name, seconds);
        headers.push('x-call-id', callId, 'x-start-time', startNs, 'x-duration-seconds', seconds.toFixed(6));
        return headers;
      },
    };
    // One listener ends the call's accounting, and cuts the replica call if the caller left early.
    res.once('close', () => {
      if (!res.writableFinished) sink.current?.abort();
      finished(res.statusCode);
      if (logLine && status !== 0) logRequest(env, req, res.statusCode, started, callId);
    });

    const hasBody = !bodiless.has(req.method ?? 'GET') && (length > 0 || incoming.chunked);
    const headers = incoming.headers;
    headers.push('x-call-id', callId, 'x-start-time', startNs, 'x-forwarded-for', appendForwarded(incoming.forwardedFor, ip));
    if (!incoming.forwardedHost) headers.push('x-forwarded-host', incoming.host ?? '');
    if (!incoming.forwardedProto) headers.push('x-forwarded-proto', (req.socket as { encrypted?: boolean } | undefined)?.encrypted ? 'https' : 'http');

    await ctx.caller.stream(name, fn, {
      method: req.method ?? 'GET',
      path: upstreamPath(req.url ?? '/', rawName),
      headers,
      // A body with a Content-Length was checked against the limit in find(); a chunked one is
      // counted as it passes, so it is refused with 413 here, whatever the replica does with it.
      body: !hasBody ? null : incoming.contentLength !== undefined ? req : Readable.from(bounded(req, ctx.options.maxBodyBytes), { objectMode: false }),
    }, sink);
  } catch (err) {
    status = answerError(env, req, res, err as Error, callId, startNs);
    if (logLine) logRequest(env, req, status, started, callId, err as Error);
  }
}

/** What the invoke path reads of a call's headers, and the end-to-end ones to pass on. */
interface IncomingHeaders {
  /** End-to-end headers as a flat [name, value, ...] list, without the ones the gateway sets. */
  headers: string[];
  callId: string | undefined;
  contentLength: string | undefined;
  chunked: boolean;
  forwardedFor: string | undefined;
  forwardedHost: boolean;
  forwardedProto: boolean;
  host: string | undefined;
}

/** Headers the invoke path sets itself on the call to the replica. */
const setHere: ReadonlySet<string> = new Set(['x-call-id', 'x-start-time', 'x-forwarded-for']);

/** Reads `raw` (node's rawHeaders: [name, value, ...] as sent) in one pass; hop-by-hop headers, and any named in Connection, stay behind. */
function readHeaders(raw: string[]): IncomingHeaders {
  const out: IncomingHeaders = { headers: [], callId: undefined, contentLength: undefined, chunked: false, forwardedFor: undefined, forwardedHost: false, forwardedProto: false, host: undefined };
  let named: string[] | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const key = raw[i]!.toLowerCase();
    const value = raw[i + 1]!;
    switch (key) {
      case 'x-call-id':
        out.callId ??= value;
        continue;
      case 'content-length':
        out.contentLength = value;
        break;
      case 'transfer-encoding':
        out.chunked = true;
        continue;
      case 'x-forwarded-for':
        out.forwardedFor = out.forwardedFor === undefined ? value : `${out.forwardedFor}, ${value}`;
        continue;
      case 'x-forwarded-host':
        out.forwardedHost = true;
        break;
      case 'x-forwarded-proto':
        out.forwardedProto = true;
        break;
      case 'host':
        out.host = value;
        continue;
      case 'connection':
        if (value !== 'keep-alive' && value !== 'close') (named ??= []).push(...value.toLowerCase().split(',').map((s) => s.trim()));
        continue;
    }
    if (hopByHop.has(key) || setHere.has(key)) continue;
    out.headers.push(key, value);
  }
  if (named) out.headers = out.headers.filter((_v, i, all) => !named.includes(all[i - (i % 2)]!));
  return out;
}

/** The platform's error answer (as kubefnErrorHandler gives it), written on the raw response; its status. */
function answerError(env: InvokeEnv, req: IncomingMessage, res: ServerResponse, err: Error, callId: string, startNs: string): number {
  const answer = errorAnswer(err);
  logErrorAnswer(env.log, err, answer, { callId });
  if (res.headersSent) {
    res.destroy(err);
    return answer.status;
  }
  const body = JSON.stringify({ ...answer.body, callId });
  const headers: Record<string, string> = {
    'content-type': 'application/json; charset=utf-8',
    'content-length': String(Buffer.byteLength(body)),
    [kubefnErrorHeader]: answer.body.code,
    'x-call-id': callId,
    'x-start-time': startNs,
  };
  if (answer.body.code === 'QUEUE_FULL' || typeof (err as { retryAfterS?: unknown }).retryAfterS === 'number') headers['retry-after'] = String(retryAfterSeconds(err));
  // The rest of an unread body would be read as the next request on this connection.
  if (!req.complete) headers.connection = 'close';
  res.writeHead(answer.status, headers);
  res.end(body);
  if (!req.complete) env.answeredUnread(req);
  return answer.status;
}

function logRequest(env: InvokeEnv, req: IncomingMessage, status: number, started: number, callId: string, err?: Error): void {
  const line = { method: req.method, url: req.url, status, ms: Math.round(performance.now() - started), callId };
  if (err && status >= 500) env.log?.error({ ...line, err }, 'request failed');
  else env.log?.info(line, 'request');
}

/** "/function/hello/a/b?x=1" -> "/a/b?x=1", kept byte for byte (no decoding). */
function upstreamPath(url: string, rawName: string): string {
  const prefix = `/function/${rawName}`;
  const rest = url.startsWith(prefix) ? url.slice(prefix.length) : '/';
  if (rest === '' || rest.startsWith('?')) return '/' + rest;
  return rest;
}

export function appendForwarded(existing: string | string[] | undefined, ip: string): string {
  const prior = Array.isArray(existing) ? existing.join(', ') : existing;
  return prior ? `${prior}, ${ip}` : ip;
}

/** The request body as it streams, failing with BODY_TOO_LARGE once it passes `limit` bytes. */
async function* bounded(source: Readable, limit: number): AsyncGenerator<Buffer> {
  let bytes = 0;
  // Not destroyed on the refusal: the client then reads the 413 instead of a reset.
  for await (const chunk of source.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
    bytes += chunk.length;
    if (bytes > limit) throw new KubefnError('BODY_TOO_LARGE', `request body is over the ${limit} byte limit`, { hint: 'send a smaller body' });
    yield chunk;
  }
}
