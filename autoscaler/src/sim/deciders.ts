// The autoscalers the simulator can run, by name (`--decider`). Each entry builds one from the
// simulated world's scale target, stats sources and clock; a restart builds a fresh one. Today
// only `knative` exists: the shipped Autoscaler loop with the shipped KPA decider. A second one
// goes here, and becomes the default by changing `defaultDecider`.

import { Autoscaler, type ScaleTarget, type StatsSource } from '../autoscaler.js';
import type { Clock } from '../clock.js';

/** What the simulator drives: the Autoscaler class's public loop. */
export interface SimAutoscaler {
  /** One collection (every 1 s), and a decision round when one is due. */
  tick(): Promise<void>;
  /** A request found the function with no ready replica. */
  poke(name: string): Promise<void>;
  /** The last decision for `name`; the simulator reads only whether it was panicking. */
  lastDecision(name: string): { panicking: boolean } | undefined;
}

export interface SimAutoscalerOptions {
  target: ScaleTarget;
  sources: StatsSource[];
  clock: Clock;
  decideEveryMs: number;
}

export interface DeciderEntry {
  /** One line for --help and the docs. */
  description: string;
  create(options: SimAutoscalerOptions): SimAutoscaler;
}

export const deciders: Record<string, DeciderEntry> = {
  knative: {
    description: "the shipped Autoscaler and decider.ts (Knative's KPA: stable and panic windows)",
    create: (o) => new Autoscaler({ target: o.target, sources: o.sources, clock: o.clock, decideEveryMs: o.decideEveryMs }),
  },
};

/** The decider a run uses without --decider. */
export const defaultDecider = 'knative';
