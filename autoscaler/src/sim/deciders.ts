// The autoscalers the simulator can run, by name (`--decider`). Each entry builds one from the
// simulated world's scale target, stats sources and clock; a restart builds a fresh one. Both are
// the real Autoscaler class: `demand` (the default) and `knative`, its mode kept to compare with.

import { Autoscaler, type ScaleTarget, type StatsSource } from '../autoscaler.js';
import type { ActivationStall, PokeBody } from '@kubefn/platform';
import type { Clock } from '../clock.js';

/** What the simulator drives: the Autoscaler class's public loop. */
export interface SimAutoscaler {
  /** One collection (every 1 s), and a decision round when one is due. */
  tick(): Promise<void>;
  /** A request found the function with no ready replica; the body carries the gateway's queue. */
  poke(name: string, body?: PokeBody): Promise<void>;
  /** The last decision for `name`; the simulator reads only whether it was panicking. */
  lastDecision(name: string): { panicking: boolean } | undefined;
  /** Why `name`'s activation is stalled, if it is. */
  activation?(name: string): ActivationStall | undefined;
}

export interface SimAutoscalerOptions {
  target: ScaleTarget;
  sources: StatsSource[];
  clock: Clock;
  /** Undefined: the decider's own interval. */
  decideEveryMs?: number;
}

export interface DeciderEntry {
  /** One line for --help and the docs. */
  description: string;
  create(options: SimAutoscalerOptions): SimAutoscaler;
}

export const deciders: Record<string, DeciderEntry> = {
  demand: {
    description: 'demand (arrivals x service time) in the windows, a backlog term panic does not hold, 1 s decisions, start-up aware (the default)',
    create: (o) => new Autoscaler({ target: o.target, sources: o.sources, clock: o.clock, mode: 'demand', ...(o.decideEveryMs !== undefined ? { decideEveryMs: o.decideEveryMs } : {}) }),
  },
  knative: {
    description: "Knative's KPA as shipped before: in-flight requests (queue included) in the windows, 2 s decisions, pokes ask for max(1, min)",
    create: (o) => new Autoscaler({ target: o.target, sources: o.sources, clock: o.clock, mode: 'knative', ...(o.decideEveryMs !== undefined ? { decideEveryMs: o.decideEveryMs } : {}) }),
  },
};

/** The decider a run uses without --decider. */
export const defaultDecider = 'demand';
