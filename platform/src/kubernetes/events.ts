// Kubernetes Events about Functions (`kubectl describe function <name>`, `kubectl get events`):
// scaling, failed reconciles, stalled activations. Best effort and bounded: an Event that cannot
// be written is dropped, never waited for, and a burst of them (1,000 functions scaling at once)
// is cut by a token bucket instead of becoming a storm of API calls.

import { hostname } from 'node:os';
import type { CoreV1Api, CoreV1Event } from '@kubernetes/client-node';
import { TokenBucket } from '../limits.js';
import { functionApiVersion } from './objects.js';

export type FunctionEventType = 'Normal' | 'Warning';

export interface FunctionEventRecorderOptions {
  core: Pick<CoreV1Api, 'createNamespacedEvent'>;
  namespace: string;
  /** Who reports: kubefn-autoscaler, kubefn-gateway. */
  component: string;
  onWarning?: (message: string, err?: unknown) => void;
  /** Events written per second on average (default 5), and at most at once (burst, default 20). */
  ratePerSecond?: number;
  burst?: number;
  /** The same event (function, reason, message) again within this is not written again, ms (default 60000). */
  dedupeMs?: number;
  now?: () => number;
}

/** Most writes in flight, and most remembered events for the dedupe. */
const maxInFlight = 20;
const maxRemembered = 1000;

export class FunctionEventRecorder {
  readonly #o: Required<Omit<FunctionEventRecorderOptions, 'onWarning'>> & Pick<FunctionEventRecorderOptions, 'onWarning'>;
  readonly #instance = hostname();
  readonly #bucket: TokenBucket;
  #inFlight = 0;
  /** Event key -> when it was last written; insertion order is age order. */
  readonly #recent = new Map<string, number>();
  /** Events dropped by the bounds (bucket empty, too many in flight). */
  #dropped = 0;
  #warnedFailure = false;

  constructor(options: FunctionEventRecorderOptions) {
    this.#o = { ratePerSecond: 5, burst: 20, dedupeMs: 60_000, now: Date.now, ...options };
    this.#bucket = new TokenBucket(this.#o.ratePerSecond, this.#o.burst, this.#o.now);
  }

  /** Events dropped by the bounds so far (not counting repeats within the dedupe time). */
  get dropped(): number {
    return this.#dropped;
  }

  /** Writes an Event about Function `fn` in the background. */
  record(fn: { name: string; uid?: string | undefined }, type: FunctionEventType, reason: string, message: string): void {
    const now = this.#o.now();
    const key = `${fn.name}\0${reason}\0${message}`;
    const last = this.#recent.get(key);
    if (last !== undefined && now - last < this.#o.dedupeMs) return;
    if (this.#inFlight >= maxInFlight || !this.#bucket.tryTake()) {
      this.#dropped++;
      return;
    }
    this.#recent.delete(key);
    this.#recent.set(key, now);
    if (this.#recent.size > maxRemembered) this.#recent.delete(this.#recent.keys().next().value!);
    this.#inFlight++;
    const at = new Date(now);
    const body: CoreV1Event = {
      metadata: { generateName: `${fn.name}.`, namespace: this.#o.namespace },
      involvedObject: { apiVersion: functionApiVersion, kind: 'Function', name: fn.name, namespace: this.#o.namespace, ...(fn.uid ? { uid: fn.uid } : {}) },
      type,
      reason,
      message: message.slice(0, 1024),
      source: { component: this.#o.component },
      reportingComponent: `kubefn.dev/${this.#o.component}`,
      reportingInstance: this.#instance,
      firstTimestamp: at,
      lastTimestamp: at,
      count: 1,
    };
    void Promise.resolve()
      .then(() => this.#o.core.createNamespacedEvent({ namespace: this.#o.namespace, body }))
      .catch((err: unknown) => {
        // Said once (a missing RBAC rule would say it for every event).
        if (!this.#warnedFailure) this.#o.onWarning?.(`writing a Kubernetes Event failed (${reason} of function "${fn.name}"); later failures are not logged`, err);
        this.#warnedFailure = true;
      })
      .finally(() => this.#inFlight--);
  }
}
