// Request logging of every kubefn server: at most one line per request, written when it completes
// (method, url, status, ms, call id), instead of fastify's two ("incoming request" and "request
// completed"); with `enabled` false, none (`fn up`'s human output).

import { LogController, type FastifyReply, type FastifyRequest } from 'fastify';
import { statsPath } from '@kubefn/platform';

class OneLineRequestLog extends LogController {
  readonly #enabled: boolean;

  constructor(enabled: boolean) {
    super({ disableRequestLogging: !enabled });
    this.#enabled = enabled;
  }

  override incomingRequest(): void {}

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    // Probes and the autoscaler's scrape of /system/stats (each second) are machinery, not traffic.
    if (!this.#enabled || request.url === '/healthz' || (request.url.startsWith(statsPath) && reply.statusCode < 400)) return;
    const callId = reply.getHeader('x-call-id');
    const line = { method: request.method, url: request.url, status: reply.statusCode, ms: Math.round(reply.elapsedTime), ...(callId ? { callId } : {}) };
    if (error) request.log.error({ ...line, err: error }, 'request failed');
    else request.log.info(line, 'request');
  }
}

export function requestLogController(enabled: boolean): LogController {
  return new OneLineRequestLog(enabled);
}
