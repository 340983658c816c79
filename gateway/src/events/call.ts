// One event, one call through the gateway's own invoke route (app.inject): scale from zero,
// concurrency limits, the queue, metrics and call ids are exactly those of an HTTP call.

import type { FastifyInstance } from 'fastify';
import { kubefnErrorHeader } from '../error-handler.js';

export interface EventCall {
  name: string;
  /** Path under the function (default none: /function/<name>). */
  path?: string;
  method?: string;
  headers: Record<string, string>;
  body: Buffer;
}

export interface EventResult {
  status: number;
  headers: Record<string, string | string[] | number | undefined>;
  body: Buffer;
  /** The gateway's error code when it answered for the function (QUEUE_FULL, BODY_TOO_LARGE…). */
  code: string | undefined;
  ms: number;
}

export type Invoke = (call: EventCall) => Promise<EventResult>;

/** Invokes through `app`'s /function/<name> route. */
export function injectInvoke(app: FastifyInstance): Invoke {
  return async (call) => {
    const started = performance.now();
    const res = await app.inject({
      method: (call.method ?? 'POST') as 'POST',
      url: `/function/${call.name}${call.path ?? ''}`,
      headers: call.headers,
      payload: call.body,
    });
    const header = res.headers[kubefnErrorHeader];
    const code = typeof header === 'string' ? header : undefined;
    return { status: res.statusCode, headers: res.headers, body: res.rawPayload, code, ms: performance.now() - started };
  };
}

export const isSuccess = (status: number): boolean => status >= 200 && status < 300;
