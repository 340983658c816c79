// The one fastify error handler of every kubefn server (the gateway, the autoscaler's and the
// builder's): kubefn errors as their JSON body ({code, message, hint?, fields?, callId?}),
// fastify's own 4xx (validation, body too large) as BAD_REQUEST or BODY_TOO_LARGE, and anything
// else as a 500 that is logged with its cause and never shown to the caller. The code is also in
// the x-kubefn-error header.

import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyBaseLogger, FastifyError, FastifyInstance, FastifyReply, FastifyRequest, FastifyServerOptions } from 'fastify';
import { isKubefnError, type ErrorBody, type KubefnError } from '@kubefn/platform';
import { retryAfterSeconds, type QueueFullError } from './router.js';

/** Set on every error the platform answered itself, to its code. */
export const kubefnErrorHeader = 'x-kubefn-error';

/** What the platform answers for `err`: its status and body, and whether and how to log it. */
export function errorAnswer(err: FastifyError | KubefnError | Error): { status: number; body: ErrorBody; log?: 'warn' | 'error' } {
  if (isKubefnError(err)) {
    const e = err as KubefnError;
    return { status: e.status, body: e.toJSON(), ...(e.status >= 500 && !e.userFault ? { log: 'warn' as const } : {}) };
  }
  if ((err as FastifyError).validation) return { status: 400, body: { code: 'BAD_REQUEST', message: err.message } };
  const io = ioFailure(err);
  if (io) return io;
  const status = (err as FastifyError).statusCode;
  if (status && status < 500) return { status, body: { code: status === 413 ? 'BODY_TOO_LARGE' : 'BAD_REQUEST', message: err.message } };
  return { status: 500, body: { code: 'INTERNAL', message: 'internal server error' }, log: 'error' };
}

/** The node system errors of a disk or file system, by errno code: full, or failing. */
const diskFull = new Set(['ENOSPC', 'EDQUOT']);
const ioBroken = new Set(['EIO', 'EROFS', 'EACCES', 'EPERM', 'EMFILE', 'ENFILE']);

/**
 * A failed read or write of the platform's own files: 507 when the disk is full, 503 for other
 * I/O errors, with a hint; logged as an error with the file (the body does not name it).
 */
function ioFailure(err: Error): ReturnType<typeof errorAnswer> | undefined {
  const code = (err as NodeJS.ErrnoException).code;
  if (!code || !(diskFull.has(code) || ioBroken.has(code)) || (err as FastifyError).statusCode) return undefined;
  if (diskFull.has(code)) {
    return {
      status: 507,
      body: { code: 'NO_SPACE', message: `the platform's disk is full (${code}); nothing was changed`, hint: 'free space on the disk of the state directory (the platform log names the file), then try again' },
      log: 'error',
    };
  }
  return {
    status: 503,
    body: { code: 'UNAVAILABLE', message: `the platform cannot read or write its files (${code})`, hint: 'the platform log names the file and the cause; check the state directory' },
    log: 'error',
  };
}

/** Logs `err` as errorAnswer said to (`fields` added to the line). */
export function logErrorAnswer(log: FastifyBaseLogger | undefined, err: Error, answer: ReturnType<typeof errorAnswer>, fields: Record<string, unknown> = {}): void {
  if (answer.log === 'warn') log?.warn({ err, code: answer.body.code, ...fields }, err.message);
  if (answer.log === 'error') log?.error({ err, ...fields }, answer.status === 500 ? 'unhandled error' : `${answer.body.code}: ${err.message}`);
}

export function kubefnErrorHandler(err: FastifyError | KubefnError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const callId = reply.getHeader('x-call-id') as string | undefined;
  const answer = errorAnswer(err);
  const { status, body } = answer;
  logErrorAnswer(request.log, err, answer);
  if (callId) body.callId = callId;
  if (status === 401) reply.header('www-authenticate', 'Basic realm="Restricted"');
  // A full queue says when to come back: the function's start-up as this gateway measured it;
  // another refusal that knows (a standby autoscaler) says it too.
  if (body.code === 'QUEUE_FULL' || typeof (err as Partial<QueueFullError>).retryAfterS === 'number') reply.header('retry-after', String(retryAfterSeconds(err)));
  // Tells the gateway's answer from a function's own (event delivery retries on QUEUE_FULL).
  reply.header(kubefnErrorHeader, body.code);
  return reply.code(status).type('application/json').send(body);
}

/**
 * The fastify options that give what fastify answers before any route runs kubefn's error body:
 * the router's refusals (a malformed URL, a path parameter over 100 characters) and the HTTP
 * parser's (a malformed request line or header, headers over the size limit), which fastify
 * otherwise answers with its own JSON shape.
 */
export const kubefnFrameworkErrors: Pick<FastifyServerOptions, 'frameworkErrors' | 'clientErrorHandler'> = {
  frameworkErrors: (err, _request, reply) => void (reply as FastifyReply).code(400).header(kubefnErrorHeader, 'BAD_REQUEST').type('application/json').send({ code: 'BAD_REQUEST', message: err.message }),
  clientErrorHandler: answerClientError,
};

/** Unknown routes, in kubefn's error body. */
export function kubefnNotFound(app: FastifyInstance): void {
  app.setNotFoundHandler((request, reply) =>
    reply.code(404).header(kubefnErrorHeader, 'NOT_FOUND').send({ code: 'NOT_FOUND', message: `no route ${request.method} ${request.url.split('?')[0]}` }),
  );
}

/** A request the HTTP parser refused: answered on the raw socket, which is then closed (its framing is lost). */
function answerClientError(err: Error & { code?: string }, socket: Duplex): void {
  // Nothing to answer: the client is gone, or an answer is already on its way.
  if (err.code === 'ECONNRESET' || err.code === 'EPIPE' || !socket.writable || (socket as Duplex & { _httpMessage?: unknown })._httpMessage) {
    socket.destroy();
    return;
  }
  const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
  const why = status === 431 ? 'request headers are too large' : status === 408 ? 'the request took too long to arrive' : 'malformed HTTP request';
  const body = JSON.stringify({ code: 'BAD_REQUEST', message: `${why}${err.code ? ` (${err.code})` : ''}` });
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
      `${kubefnErrorHeader}: BAD_REQUEST\r\nconnection: close\r\n\r\n${body}`,
  );
}
