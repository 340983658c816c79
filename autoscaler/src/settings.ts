// Turns a function's validated scale spec into the decider's numbers.

import { parseDuration, type ScaleSpec } from '@kubefn/platform';
import type { ScaleSettings } from './decider.js';

export function settingsFromSpec(scale: ScaleSpec): ScaleSettings {
  const stableWindowMs = parseDuration(scale.stableWindow);
  const base =
    scale.metric === 'concurrency' && scale.containerConcurrency > 0
      ? Math.min(scale.target, scale.containerConcurrency)
      : scale.target;
  return {
    minScale: scale.min,
    maxScale: scale.max,
    metric: scale.metric,
    targetPerReplica: Math.max(0.01, (base * scale.targetUtilizationPercent) / 100),
    stableWindowMs,
    panicWindowMs: Math.max(1000, Math.round((stableWindowMs * scale.panicWindowPercent) / 100)),
    panicThreshold: scale.panicThresholdPercent / 100,
    maxScaleUpRate: scale.maxScaleUpRate,
    maxScaleDownRate: scale.maxScaleDownRate,
    scaleDownDelayMs: parseDuration(scale.scaleDownDelay),
    scaleToZeroGraceMs: parseDuration(scale.scaleToZeroGrace),
  };
}
