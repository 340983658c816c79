// The gateway's queue settings, and the budget all functions' queues share: how many requests
// may wait across all functions, and how many bytes of request bodies they may declare.

import { KubefnError } from '@kubefn/platform';

export interface QueueSettings {
  /**
   * Least depth of a function's queue, requests (default 1000). The depth is
   * max(minPerFunction, peak arrivals per second over the last 60 s x (decisionIntervalMs +
   * start-up) / 1000): enough to hold the traffic until the autoscaler decided and a replica
   * started. Example: 3000 req/s, a 2 s start-up -> 3000 x 3 = 9000.
   */
  minPerFunction: number;
  /** Most depth of a function's queue, requests (default: no cap but the gateway-wide ones). */
  maxPerFunction: number;
  /** The autoscaler's decision interval, ms (default 1000). */
  decisionIntervalMs: number;
  /** A function's start-up before the gateway measured one, ms (default 2000). */
  defaultStartupMs: number;
  /** Requests queued across all functions before 503 QUEUE_FULL (default 50 000). */
  maxRequests: number;
  /** Declared body bytes (content-length) of queued requests across all functions (default 256 MiB). */
  maxBodyBytes: number;
  /** What a queued body without a content-length (chunked) counts as, bytes (default 64 KiB). */
  chunkedBodyBytes: number;
}

export const defaultQueueSettings: QueueSettings = {
  minPerFunction: 1000,
  maxPerFunction: Number.MAX_SAFE_INTEGER,
  decisionIntervalMs: 1000,
  defaultStartupMs: 2000,
  maxRequests: 50_000,
  maxBodyBytes: 256 * 1024 * 1024,
  chunkedBodyBytes: 64 * 1024,
};

/** Defaults for what `given` leaves out; INVALID_SPEC naming the setting for a value that is not a positive integer. */
export function queueSettings(given: Partial<QueueSettings> = {}): QueueSettings {
  const out = { ...defaultQueueSettings };
  for (const key of Object.keys(defaultQueueSettings) as (keyof QueueSettings)[]) {
    const v = given[key];
    if (v === undefined) continue;
    if (!Number.isSafeInteger(v) || v < (key === 'chunkedBodyBytes' || key === 'decisionIntervalMs' ? 0 : 1)) {
      throw new KubefnError('INVALID_SPEC', `gateway queue setting ${key} must be a ${key === 'chunkedBodyBytes' || key === 'decisionIntervalMs' ? 'non-negative' : 'positive'} integer, not ${String(v)}`, {
        fields: [{ field: `queue.${key}`, message: 'not a valid integer' }],
      });
    }
    out[key] = v;
  }
  if (out.maxPerFunction < out.minPerFunction) out.minPerFunction = out.maxPerFunction;
  return out;
}

/** Requests and declared body bytes queued across all functions, within their limits. */
export class QueueBudget {
  requests = 0;
  bytes = 0;

  constructor(readonly settings: Pick<QueueSettings, 'maxRequests' | 'maxBodyBytes'>) {}

  /** Takes room for one request of `bytes`; or says which limit it would pass (nothing taken). */
  take(bytes: number): 'requests' | 'bytes' | undefined {
    if (this.requests + 1 > this.settings.maxRequests) return 'requests';
    if (this.bytes + bytes > this.settings.maxBodyBytes) return 'bytes';
    this.requests++;
    this.bytes += bytes;
    return undefined;
  }

  give(bytes: number): void {
    this.requests = Math.max(0, this.requests - 1);
    this.bytes = Math.max(0, this.bytes - bytes);
  }
}
