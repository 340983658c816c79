// The one fastify error handler of every kubefn server (the gateway, the autoscaler's and the
// builder's): kubefn errors as their JSON body ({code, message, hint?, fields?, callId?}),
// fastify's own 4xx (validation, body too large) as BAD_REQUEST or BODY_TOO_LARGE, and anything
// else as a 500 that is logged with its cause and never shown to the caller. The code is also in
// the x-kubefn-error header.

import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { isKubefnError, type ErrorBody, type KubefnError } from '@kubefn/platform';

/** Set on every error the platform answered itself, to its code. */
export const kubefnErrorHeader = 'x-kubefn-error';

export function kubefnErrorHandler(err: FastifyError | KubefnError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const callId = reply.getHeader('x-call-id') as string | undefined;
  let status: number;
  let body: ErrorBody;
  if (isKubefnError(err)) {
    const e = err as KubefnError;
    status = e.status;
    body = e.toJSON();
    if (status >= 500 && !e.userFault) request.log.warn({ err: e, code: e.code }, e.message);
  } else if ((err as FastifyError).validation) {
    status = 400;
    body = { code: 'BAD_REQUEST', message: err.message };
  } else if ((err as FastifyError).statusCode && (err as FastifyError).statusCode! < 500) {
    status = (err as FastifyError).statusCode!;
    body = { code: status === 413 ? 'BODY_TOO_LARGE' : 'BAD_REQUEST', message: err.message };
  } else {
    status = 500;
    body = { code: 'INTERNAL', message: 'internal server error' };
    request.log.error({ err }, 'unhandled error');
  }
  if (callId) body.callId = callId;
  if (status === 401) reply.header('www-authenticate', 'Basic realm="Restricted"');
  // Tells the gateway's answer from a function's own (event delivery retries on QUEUE_FULL).
  reply.header(kubefnErrorHeader, body.code);
  return reply.code(status).type('application/json').send(body);
}
