// The invoke path: /function/<name>[/<path>] -> a ready replica, through the activator queue
// when none is free, with X-Call-Id / X-Start-Time / X-Duration-Seconds on the way.

import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Agent, errors as undiciErrors } from 'undici';
import { KubefnError, runtimeHeaders, validateName } from '@kubefn/platform';
import type { GatewayContext } from './context.js';
import { endToEnd } from './headers.js';
import type { Lease } from './router.js';

const bodiless = new Set(['GET', 'HEAD', 'OPTIONS', 'DELETE']);

/** How long the gateway waits past the function's own timeout before cutting a replica off, ms. */
const upstreamSlackMs = 5000;

export async function invokePlugin(app: FastifyInstance, ctx: GatewayContext): Promise<void> {
  // Bodies pass through as streams; the replica enforces its own body limit.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_req, payload, done) => done(null, payload));

  const agent = new Agent({
    keepAliveTimeout: 30_000,
    keepAliveMaxTimeout: 600_000,
    connections: 1024,
    connect: { timeout: 5000 },
  });
  app.addHook('onClose', async () => {
    await agent.close();
  });

  const handler = (request: FastifyRequest, reply: FastifyReply) => invoke(ctx, agent, request, reply);
  app.all('/function/:name', handler);
  app.all('/function/:name/*', handler);
}

async function invoke(ctx: GatewayContext, agent: Agent, request: FastifyRequest, reply: FastifyReply): Promise<void> {
  const started = process.hrtime.bigint();
  const startNs = BigInt(Date.now()) * 1_000_000n;
  const { name: rawName } = request.params as { name: string };
  const callId = (request.headers['x-call-id'] as string | undefined) || randomUUID();
  reply.header('x-call-id', callId).header('x-start-time', startNs.toString());

  const name = functionName(rawName);
  const fn = await ctx.catalog.get(name);
  if (!fn) throw new KubefnError('NOT_FOUND', `no function named "${name}"`, { hint: 'see `fn list`' });

  const limit = ctx.options.maxBodyBytes;
  const length = Number(request.headers['content-length'] ?? 0);
  if (length > limit) {
    throw new KubefnError('BODY_TOO_LARGE', `request body of ${length} bytes is over the ${limit} byte limit`);
  }

  const router = ctx.routers.get(fn.spec);
  const aborter = new AbortController();
  ctx.stats.begin(name);
  ctx.invocations.set(name, (ctx.invocations.get(name) ?? 0) + 1);
  // One listener ends the call's accounting, and aborts the replica call if the caller left early.
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) aborter.abort(new Error('client disconnected'));
    ctx.stats.end(name);
    ctx.metrics.requests.inc({ function: name, code: String(reply.raw.statusCode) });
  });

  const fnTimeoutMs = fn.timeoutMs;
  const hasBody = !bodiless.has(request.method) && (length > 0 || request.headers['transfer-encoding'] !== undefined);
  const headers = endToEnd(request.headers);
  headers['x-call-id'] = callId;
  headers['x-start-time'] = startNs.toString();
  headers['x-forwarded-for'] = appendForwarded(request.headers['x-forwarded-for'], request.ip);
  headers['x-forwarded-host'] ??= request.headers.host ?? '';
  headers['x-forwarded-proto'] ??= request.protocol;

  // A request without a body can be retried on another replica when the first one could not
  // take it (connection refused, replica draining or overloaded); one with a body cannot.
  const attempts = hasBody ? 1 : 3;
  for (let attempt = 1; ; attempt++) {
    const waitStart = process.hrtime.bigint();
    const lease = await router.acquire(aborter.signal, fnTimeoutMs);
    if (lease.waitedForReplica) {
      ctx.metrics.coldStart.observe({ function: name }, Number(process.hrtime.bigint() - waitStart) / 1e9);
    }
    let upstream: Awaited<ReturnType<Agent['request']>>;
    try {
      upstream = await agent.request({
        origin: lease.endpoint.url,
        path: upstreamPath(request.raw.url ?? '/', rawName),
        method: request.method as 'GET',
        headers,
        body: hasBody ? request.raw : null,
        signal: aborter.signal,
        headersTimeout: fnTimeoutMs + upstreamSlackMs,
        bodyTimeout: fnTimeoutMs + upstreamSlackMs,
      });
    } catch (err) {
      lease.release();
      if (aborter.signal.aborted) return; // the caller left; nobody to answer
      if (attempt < attempts && isConnectError(err)) continue;
      throw replicaError(name, lease, err, fnTimeoutMs);
    }
    const retryable = upstream.statusCode === 503 &&
      (upstream.headers[runtimeHeaders.overloaded] !== undefined || upstream.headers[runtimeHeaders.draining] !== undefined);
    if (retryable && attempt < attempts) {
      upstream.body.resume();
      lease.release();
      continue;
    }
    const done = () => lease.release();
    upstream.body.once('close', done);
    upstream.body.once('error', done);
    const out = endToEnd(upstream.headers);
    delete out[runtimeHeaders.overloaded];
    delete out[runtimeHeaders.draining];
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    ctx.metrics.duration.observe({ function: name }, seconds);
    reply.code(upstream.statusCode).headers(out);
    reply.header('x-call-id', callId).header('x-start-time', startNs.toString());
    reply.header('x-duration-seconds', seconds.toFixed(6));
    return reply.send(upstream.body);
  }
}

/** OpenFaaS callers may write `name.namespace`; kubefn's embedded platform has one namespace. */
export function functionName(raw: string): string {
  const dot = raw.lastIndexOf('.');
  const name = dot >= 0 ? raw.slice(0, dot) : raw;
  if (dot >= 0 && raw.slice(dot + 1) !== 'default') {
    throw new KubefnError('NOT_FOUND', `no namespace "${raw.slice(dot + 1)}" here`, { hint: 'omit the namespace' });
  }
  validateName(name);
  return name;
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

function isConnectError(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  return code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'UND_ERR_SOCKET' || code === 'UND_ERR_CONNECT_TIMEOUT';
}

function replicaError(name: string, lease: Lease, err: unknown, fnTimeoutMs: number): KubefnError {
  if (err instanceof undiciErrors.HeadersTimeoutError || err instanceof undiciErrors.BodyTimeoutError) {
    return new KubefnError('DEADLINE_EXCEEDED', `function "${name}" replica ${lease.endpoint.id} did not answer within ${fnTimeoutMs + upstreamSlackMs} ms`, { cause: err });
  }
  return new KubefnError('REPLICA_FAILED', `function "${name}" replica ${lease.endpoint.id} failed before answering: ${(err as Error).message}`, {
    cause: err,
    hint: `see \`fn logs ${name}\``,
  });
}

