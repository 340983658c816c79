// The invoke path: /function/<name>[/<path>] -> a ready replica, through the activator queue
// when none is free, with X-Call-Id / X-Start-Time / X-Duration-Seconds on the way. The call
// itself (lookup, lease, retries, accounting) is function-call.ts, shared with event triggers;
// this is the HTTP adapter around it: the caller's socket, headers and streamed bodies.

import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { KubefnError } from '@kubefn/platform';
import type { GatewayContext } from './context.js';
import type { AnswerSink } from './function-call.js';
import { endToEndList } from './headers.js';

const bodiless = new Set(['GET', 'HEAD', 'OPTIONS', 'DELETE']);

export async function invokePlugin(app: FastifyInstance, ctx: GatewayContext): Promise<void> {
  // Bodies pass through as streams; the replica enforces its own body limit.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_req, payload, done) => done(null, payload));

  const handler = (request: FastifyRequest, reply: FastifyReply) => invoke(ctx, request, reply);
  app.all('/function/:name', handler);
  app.all('/function/:name/*', handler);
}

/** Headers the invoke path sets itself on the call to the replica. */
const setHere: ReadonlySet<string> = new Set(['x-call-id', 'x-start-time', 'x-forwarded-for']);

async function invoke(ctx: GatewayContext, request: FastifyRequest, reply: FastifyReply): Promise<void> {
  const started = process.hrtime.bigint();
  const startNs = (BigInt(Date.now()) * 1_000_000n).toString();
  const { name: rawName } = request.params as { name: string };
  const callId = (request.headers['x-call-id'] as string | undefined) || randomUUID();
  // For an error answered through fastify; a replica's answer is written with them below.
  reply.header('x-call-id', callId).header('x-start-time', startNs);

  const length = Number(request.headers['content-length'] ?? 0);
  const { name, fn } = ctx.caller.peek(rawName, length) ?? (await ctx.caller.find(rawName, length));

  const finished = ctx.caller.begin(name);
  const res = reply.raw;
  const sink: AnswerSink = {
    res,
    head: (status, headers) => {
      // From here the answer is the replica's, written straight to the socket.
      reply.hijack();
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      ctx.caller.observeDuration(name, seconds);
      headers.push('x-call-id', callId, 'x-start-time', startNs, 'x-duration-seconds', seconds.toFixed(6));
      return headers;
    },
  };
  // One listener ends the call's accounting, and cuts the replica call if the caller left early.
  res.once('close', () => {
    if (!res.writableFinished) sink.abort?.();
    finished(res.statusCode);
    if (ctx.options.requestLog && reply.sent) {
      request.log.info({ method: request.method, url: request.url, status: res.statusCode, ms: Math.round(Number(process.hrtime.bigint() - started) / 1e6), callId }, 'request');
    }
  });

  const hasBody = !bodiless.has(request.method) && (length > 0 || request.headers['transfer-encoding'] !== undefined);
  const headers = endToEndList(request.headers, setHere);
  headers.push('x-call-id', callId, 'x-start-time', startNs, 'x-forwarded-for', appendForwarded(request.headers['x-forwarded-for'], request.ip));
  if (request.headers['x-forwarded-host'] === undefined) headers.push('x-forwarded-host', request.headers.host ?? '');
  if (request.headers['x-forwarded-proto'] === undefined) headers.push('x-forwarded-proto', request.protocol);

  await ctx.caller.stream(name, fn, {
    method: request.method,
    path: upstreamPath(request.raw.url ?? '/', rawName),
    headers,
    // A body with a Content-Length was checked against the limit in find(); a chunked one is
    // counted as it passes, so it is refused with 413 here, whatever the replica does with it.
    body: !hasBody ? null : request.headers['content-length'] !== undefined ? request.raw : Readable.from(bounded(request.raw, ctx.options.maxBodyBytes), { objectMode: false }),
  }, sink);
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
