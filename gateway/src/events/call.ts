// One event, one call of its function through the gateway's FunctionCaller, the core of the
// HTTP invoke route: scale from zero, concurrency limits, the queue, retries, metrics and call
// ids are exactly those of an HTTP call, and so are the gateway's own answers (status, error
// body, x-kubefn-error code). The event's body is already in memory, so it goes to the replica
// as one buffer and the answer comes back as one, with no request or reply objects around them:
// measured with `npm run bench:events`, calling through fastify's app.inject instead cost the
// gateway nearly three times the CPU per message.

import { randomUUID } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import { KubefnError } from '@kubefn/platform';
import { errorAnswer, kubefnErrorHeader, logErrorAnswer } from '../error-handler.js';
import type { FunctionCaller } from '../function-call.js';

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

export interface CallerInvokeOptions {
  /** Where the gateway's refusals and failures are logged, as the HTTP route's error handler logs them. */
  log?: FastifyBaseLogger;
  /** One info line per call, in the request log's shape (the gateway's requestLog). */
  requestLog?: boolean;
}

/** Invokes through `caller`, as POST /function/<name><path> would. */
export function callerInvoke(caller: FunctionCaller, options: CallerInvokeOptions = {}): Invoke {
  const never = new AbortController().signal;
  return async (call) => {
    const started = performance.now();
    const method = call.method ?? 'POST';
    const path = call.path ?? '';
    const callId = call.headers['x-call-id'] || randomUUID();
    const startNs = (BigInt(Date.now()) * 1_000_000n).toString();
    let result: EventResult;
    let finished: ((status: number) => void) | undefined;
    try {
      const { name, fn } = await caller.find(call.name, call.body.length);
      finished = caller.begin(name);
      const answer = await caller.send(name, fn, {
        method,
        path: path || '/',
        headers: { ...call.headers, 'x-call-id': callId, 'x-start-time': startNs },
        body: call.body,
        signal: never,
      });
      // Not aborted: `never` never fires.
      const { upstream, lease } = answer!;
      // Until the replica's answer began, as the HTTP route measures it.
      caller.observeDuration(name, (performance.now() - started) / 1000);
      let body: Buffer;
      try {
        body = Buffer.from(await upstream.body.arrayBuffer());
      } catch (err) {
        throw new KubefnError('REPLICA_FAILED', `function "${name}" replica ${lease.endpoint.id} failed while answering: ${(err as Error).message}`, { cause: err });
      } finally {
        lease.release();
      }
      result = { status: upstream.statusCode, headers: { ...upstream.headers, 'x-call-id': callId }, body, code: undefined, ms: 0 };
    } catch (err) {
      const answer = errorAnswer(err as Error);
      const { status, body } = answer;
      logErrorAnswer(options.log, err as Error, answer, { callId });
      body.callId = callId;
      result = {
        status,
        headers: { 'content-type': 'application/json; charset=utf-8', 'x-call-id': callId, [kubefnErrorHeader]: body.code },
        body: Buffer.from(JSON.stringify(body)),
        code: body.code,
        ms: 0,
      };
    }
    finished?.(result.status);
    result.ms = performance.now() - started;
    if (options.requestLog) {
      options.log?.info({ method, url: `/function/${call.name}${path}`, status: result.status, ms: Math.round(result.ms), callId }, 'request');
    }
    return result;
  };
}

export const isSuccess = (status: number): boolean => status >= 200 && status < 300;
