// Prometheus metrics of event delivery, per function and trigger (the trigger label is
// "<type>:<subject or schedule>"), on the gateway's registry.

import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

type Labels = 'function' | 'trigger';

export interface TriggerLag {
  function: string;
  trigger: string;
  lag: number;
}

export class EventMetrics {
  readonly delivered: Counter<Labels>;
  readonly acked: Counter<Labels>;
  readonly retried: Counter<Labels>;
  readonly deadLettered: Counter<Labels>;
  readonly dropped: Counter<Labels>;
  readonly latency: Histogram<Labels>;

  constructor(registry: Registry, lags: () => Iterable<TriggerLag>) {
    const counter = (name: string, help: string) => new Counter({ name, help, labelNames: ['function', 'trigger'] as const, registers: [registry] });
    this.delivered = counter('kubefn_events_delivered_total', 'Event deliveries to a function (a redelivery counts again), by function and trigger.');
    this.acked = counter('kubefn_events_acked_total', 'Events the function handled with a 2xx, by function and trigger.');
    this.retried = counter('kubefn_events_retried_total', 'Failed deliveries handed back for a later retry, by function and trigger.');
    this.deadLettered = counter('kubefn_events_dead_lettered_total', 'Events given up on and sent to the dead-letter subject, by function and trigger.');
    this.dropped = counter('kubefn_events_dropped_total', 'Core NATS messages dropped at the in-flight limit (at most once), by function and trigger.');
    this.latency = new Histogram({
      name: 'kubefn_events_latency_seconds',
      help: "Time from an event's publication to the function's answer, by function and trigger.",
      labelNames: ['function', 'trigger'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: [registry],
    });
    new Gauge({
      name: 'kubefn_events_consumer_lag',
      help: 'Messages in the stream not yet delivered to the trigger\'s consumer, plus those delivered and not acknowledged, by function and trigger.',
      labelNames: ['function', 'trigger'] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const l of lags()) this.set({ function: l.function, trigger: l.trigger }, l.lag);
      },
    });
  }
}

export function triggerLabel(t: { type: string; subject?: string | undefined; schedule?: string | undefined }): string {
  return `${t.type}:${t.subject ?? t.schedule ?? ''}`;
}
