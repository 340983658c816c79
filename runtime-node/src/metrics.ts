// Prometheus metrics for one runtime, on a private registry so embedding code's own metrics never mix in.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Live numbers the gauges read at scrape time, so the hot path never touches a gauge. */
export interface RuntimeStats {
  readonly inFlight: number;
  readonly abandoned: number;
  /** Calls past the concurrency cap waiting for a slot now, and all that ever waited. */
  readonly waitingCalls: number;
  readonly waitedCalls: number;
}

/** 1 ms to 60 s, in seconds: covers a warm hello-world and the longest calls a 60 s timeout allows. */
export const durationBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export class RuntimeMetrics {
  readonly registry = new Registry();
  private readonly requests: Counter<'code'>;
  private readonly duration: Histogram;
  // Status codes are a small, bounded set; caching the labelled child saves building a labels
  // object per call (prom-client still hashes the labels on every inc).
  private readonly byCode = new Map<number, Counter.Internal>();

  constructor(functionName: string, stats: RuntimeStats) {
    const registers = [this.registry];
    this.registry.setDefaultLabels({ function: functionName });
    this.requests = new Counter({
      name: 'kubefn_runtime_requests_total',
      help: 'Calls answered by this replica, by HTTP status code (499: the client went away first).',
      labelNames: ['code'],
      registers,
    });
    this.duration = new Histogram({
      name: 'kubefn_runtime_request_duration_seconds',
      help: 'Time from receiving a call to the end of its response, in seconds.',
      buckets: durationBuckets,
      registers,
    });
    new Gauge({
      name: 'kubefn_runtime_in_flight',
      help: 'Calls whose response has not ended yet.',
      registers,
      collect() {
        this.set(stats.inFlight);
      },
    });
    new Gauge({
      name: 'kubefn_runtime_waiting_calls',
      help: 'Calls past the concurrency cap waiting for a slot (the gateways sent more than the cap).',
      registers,
      collect() {
        this.set(stats.waitingCalls);
      },
    });
    new Counter({
      name: 'kubefn_runtime_waited_calls_total',
      help: 'Calls that arrived past the concurrency cap and waited for a slot.',
      registers,
      collect() {
        this.reset();
        this.inc(stats.waitedCalls);
      },
    });
    new Gauge({
      name: 'kubefn_runtime_abandoned_calls',
      help: 'Handlers still running after their call was answered (timed out, client gone, or body too large).',
      registers,
      collect() {
        this.set(stats.abandoned);
      },
    });
    collectDefaultMetrics({ register: this.registry });
  }

  /** Records one answered call; `seconds` from receipt to the end of the response. */
  observe(status: number, seconds: number): void {
    let child = this.byCode.get(status);
    if (child === undefined) {
      child = this.requests.labels(String(status));
      this.byCode.set(status, child);
    }
    child.inc();
    this.duration.observe(seconds);
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
