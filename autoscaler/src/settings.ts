// Turns a function's validated scale spec, and the cluster defaults for what it leaves out, into the decider's numbers.

import { parseDuration, type ScaleSpec } from '@kubefn/platform';
import { defaultAutoscalerConfig, type AutoscalerConfig } from './config.js';
import type { ScaleSettings } from './decider.js';

/** The scale knobs a spec may leave to the cluster's autoscaler config. */
export type ClusterScaleKnobs = Required<
  Pick<
    ScaleSpec,
    | 'metric'
    | 'target'
    | 'targetUtilizationPercent'
    | 'pendingTarget'
    | 'stableWindow'
    | 'panicWindowPercent'
    | 'panicThresholdPercent'
    | 'maxScaleUpRate'
    | 'maxScaleDownRate'
    | 'scaleDownDelay'
    | 'scaleToZeroGrace'
  >
>;

/**
 * Each knob from the spec when it is set, else from `config`. Precedence: spec > config file >
 * Knative's defaults (`defaultAutoscalerConfig`).
 *
 * Example with the defaults and `{ containerConcurrency: 10 }`: target = min(100, 10) = 10,
 * targetPerReplica = 10 x 70 % = 7 in-flight requests.
 */
export function settingsFromSpec(scale: ScaleSpec, config: AutoscalerConfig = defaultAutoscalerConfig): ScaleSettings {
  const metric = scale.metric ?? config.metric;
  const target = scale.target ?? targetDefault(metric, config);
  const utilizationPercent = scale.targetUtilizationPercent ?? config.containerConcurrencyTargetPercentage;
  const stableWindowMs = scale.stableWindow !== undefined ? parseDuration(scale.stableWindow) : config.stableWindowMs;
  const panicWindowPercent = scale.panicWindowPercent ?? config.panicWindowPercentage;
  // A hard per-replica cap bounds the concurrency target: aiming above it could never be reached.
  const base = metric === 'concurrency' && scale.containerConcurrency > 0 ? Math.min(target, scale.containerConcurrency) : target;
  return {
    // Scale to zero disabled cluster-wide keeps one replica of every function.
    minScale: config.enableScaleToZero ? scale.min : Math.max(1, scale.min),
    maxScale: scale.max,
    metric,
    targetPerReplica: Math.max(0.01, (base * utilizationPercent) / 100),
    pendingTarget: scale.pendingTarget ?? config.pendingTargetDefault,
    stableWindowMs,
    // At least one 1 s metric bucket.
    panicWindowMs: Math.max(1000, Math.round((stableWindowMs * panicWindowPercent) / 100)),
    panicThreshold: (scale.panicThresholdPercent ?? config.panicThresholdPercentage) / 100,
    maxScaleUpRate: scale.maxScaleUpRate ?? config.maxScaleUpRate,
    maxScaleDownRate: scale.maxScaleDownRate ?? config.maxScaleDownRate,
    scaleDownDelayMs: scale.scaleDownDelay !== undefined ? parseDuration(scale.scaleDownDelay) : config.scaleDownDelayMs,
    scaleToZeroGraceMs: scale.scaleToZeroGrace !== undefined ? parseDuration(scale.scaleToZeroGrace) : config.scaleToZeroGracePeriodMs,
  };
}

/**
 * What `config` stands in for, in the spec's own terms (durations like "60s"): what a function
 * that sets none of these knobs gets. `fn init` shows these in the fn.yaml it writes.
 */
export function clusterScaleDefaults(config: AutoscalerConfig = defaultAutoscalerConfig): ClusterScaleKnobs {
  return {
    metric: config.metric,
    target: targetDefault(config.metric, config),
    targetUtilizationPercent: config.containerConcurrencyTargetPercentage,
    pendingTarget: config.pendingTargetDefault,
    stableWindow: seconds(config.stableWindowMs),
    panicWindowPercent: config.panicWindowPercentage,
    panicThresholdPercent: config.panicThresholdPercentage,
    maxScaleUpRate: config.maxScaleUpRate,
    maxScaleDownRate: config.maxScaleDownRate,
    scaleDownDelay: seconds(config.scaleDownDelayMs),
    scaleToZeroGrace: seconds(config.scaleToZeroGracePeriodMs),
  };
}

/** "60s", as Knative writes durations (not "1m"); "1500ms" when not whole seconds. */
function seconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${Math.round(ms)}ms`;
}

function targetDefault(metric: 'concurrency' | 'rps', config: AutoscalerConfig): number {
  return metric === 'rps' ? config.requestsPerSecondTargetDefault : config.containerConcurrencyTargetDefault;
}
