// The one fastify error handler of every kubefn server (the gateway, the autoscaler's and the
// builder's): kubefn errors as their JSON body ({code, message, hint?, fields?, callId?}),
// fastify's own 4xx (validation, body too large) as BAD_REQUEST or BODY_TOO_LARGE, and anything
// else as a 500 that is logged with its cause and never shown to the caller. The code is also in
// the x-kubefn-error header.

import type { FastifyBaseLogger, FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { isKubefnError, type ErrorBody, type KubefnError } from '@kubefn/platform';

/** Set on every error the platform answered itself, to its code. */
export const kubefnErrorHeader = 'x-kubefn-error';

/** What the platform answers for `err`: its status and body, and whether and how to log it. */
export function errorAnswer(err: FastifyError | KubefnError | Error): { status: number; body: ErrorBody; log?: 'warn' | 'error' } {
  if (isKubefnError(err)) {
    const e = err as KubefnError;
    return { status: e.status, body: e.toJSON(), ...(e.status >= 500 && !e.userFault ? { log: 'warn' as const } : {}) };
  }
  if ((err as FastifyError).validation) return { status: 400, body: { code: 'BAD_REQUEST', message: err.message } };
  const status = (err as FastifyError).statusCode;
  if (status && status < 500) return { status, body: { code: status === 413 ? 'BODY_TOO_LARGE' : 'BAD_REQUEST', message: err.message } };
  return { status: 500, body: { code: 'INTERNAL', message: 'internal server error' }, log: 'error' };
}

/** Logs `err` as errorAnswer said to (`fields` added to the line). */
export function logErrorAnswer(log: FastifyBaseLogger | undefined, err: Error, answer: ReturnType<typeof errorAnswer>, fields: Record<string, unknown> = {}): void {
  if (answer.log === 'warn') log?.warn({ err, code: answer.body.code, ...fields }, err.message);
  if (answer.log === 'error') log?.error({ err, ...fields }, 'unhandled error');
}

export function kubefnErrorHandler(err: FastifyError | KubefnError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const callId = reply.getHeader('x-call-id') as string | undefined;
  const answer = errorAnswer(err);
  const { status, body } = answer;
  logErrorAnswer(request.log, err, answer);
  if (callId) body.callId = callId;
  if (status === 401) reply.header('www-authenticate', 'Basic realm="Restricted"');
  // Tells the gateway's answer from a function's own (event delivery retries on QUEUE_FULL).
  reply.header(kubefnErrorHeader, body.code);
  return reply.code(status).type('application/json').send(body);
}
