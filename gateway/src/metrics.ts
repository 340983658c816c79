// The gateway's Prometheus metrics, on a private registry.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export class GatewayMetrics {
  readonly registry = new Registry();
  readonly requests = new Counter({
    name: 'kubefn_gateway_requests_total',
    help: 'Function invocations by function and HTTP status code.',
    labelNames: ['function', 'code'] as const,
    registers: [this.registry],
  });
  readonly duration = new Histogram({
    name: 'kubefn_gateway_request_duration_seconds',
    help: 'Time from a request arriving at the gateway to its response headers, by function.',
    labelNames: ['function'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [this.registry],
  });
  readonly coldStart = new Histogram({
    name: 'kubefn_gateway_cold_start_seconds',
    help: 'How long requests that found no ready replica waited for one.',
    labelNames: ['function'] as const,
    buckets: [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly pokes = new Counter({
    name: 'kubefn_autoscaler_pokes_total',
    help: 'Cold pokes this gateway sent the autoscaler (one in flight per function, with its queue), by function.',
    labelNames: ['function'] as const,
    registers: [this.registry],
  });
  readonly queued: Gauge<'function'>;
  readonly inFlight: Gauge<'function'>;

  constructor(queueDepths: () => Iterable<[string, number]>, inFlight: () => Iterable<[string, number]>) {
    this.inFlight = this.#perFunctionGauge('kubefn_gateway_in_flight_requests', 'Requests in the gateway (queued or at a replica), by function.', inFlight);
    this.queued = this.#perFunctionGauge('kubefn_gateway_queued_requests', 'Requests waiting for a replica, by function.', queueDepths);
    collectDefaultMetrics({ register: this.registry });
  }

  /** A gauge read from `source` at scrape time, so the request path never touches it. */
  #perFunctionGauge(name: string, help: string, source: () => Iterable<[string, number]>): Gauge<'function'> {
    return new Gauge({
      name,
      help,
      labelNames: ['function'] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [fn, n] of source()) this.set({ function: fn }, n);
      },
    });
  }
}
