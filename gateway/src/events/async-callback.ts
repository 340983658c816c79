// The callback of an async call: its final result POSTed to the caller's X-Callback-Url with the
// headers OpenFaaS's queue-worker sends (X-Call-Id, X-Function-Status, X-Duration-Seconds,
// X-Function-Name) and the function's content type. Not retried forever: a callback that gets no
// answer or a 5xx is tried again up to `attempts` in all, a 4xx is not.

import { request } from 'undici';
import type { EventResult } from './call.js';

export interface CallbackOptions {
  /** Per attempt, headers and body each, ms. */
  timeoutMs: number;
  /** Attempts in all (at least 1). */
  attempts: number;
  /** Pause between attempts, ms (default 500). */
  pauseMs?: number;
}

/** POSTs `result` to `url`; undefined when delivered, else what went wrong last. */
export async function postCallback(url: string, call: { callId: string; name: string; result: EventResult }, o: CallbackOptions): Promise<string | undefined> {
  const { result } = call;
  const headers: Record<string, string> = {
    'x-call-id': call.callId,
    'x-function-status': String(result.status),
    'x-duration-seconds': (result.ms / 1000).toFixed(6),
    'x-function-name': call.name,
  };
  const type = result.headers['content-type'];
  if (typeof type === 'string') headers['content-type'] = type;
  let problem = 'no attempt made';
  for (let attempt = 1; attempt <= o.attempts; attempt++) {
    try {
      const answer = await request(url, {
        method: 'POST',
        headers,
        body: result.body,
        headersTimeout: o.timeoutMs,
        bodyTimeout: o.timeoutMs,
        signal: AbortSignal.timeout(o.timeoutMs),
      });
      // The receiver's answer is not ours to keep: dump() reads a bounded amount and drops it.
      await answer.body.dump().catch(() => {});
      if (answer.statusCode < 400) return undefined;
      problem = `answered ${answer.statusCode}`;
      if (answer.statusCode < 500) return problem;
    } catch (err) {
      problem = (err as Error).message ?? String(err);
    }
    if (attempt < o.attempts) await new Promise((resolve) => setTimeout(resolve, o.pauseMs ?? 500));
  }
  return problem;
}

/** A callback URL may carry credentials: logs get its origin and path only. */
export function redact(url: string): string {
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname}`;
  } catch {
    return '(unparseable)';
  }
}
