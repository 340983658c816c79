import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decide, initialDeciderState, type DeciderInput, type DeciderState, type ScaleSettings } from './decider.js';

const base: ScaleSettings = {
  minScale: 0,
  maxScale: 0,
  metric: 'concurrency',
  targetPerReplica: 10,
  stableWindowMs: 60_000,
  panicWindowMs: 6_000,
  panicThreshold: 2,
  maxScaleUpRate: 1000,
  maxScaleDownRate: 2,
  scaleDownDelayMs: 0,
  scaleToZeroGraceMs: 30_000,
};

function run(steps: { t: number; input: Partial<DeciderInput>; want: number | undefined; panic?: boolean }[], settings: Partial<ScaleSettings> = {}) {
  let state: DeciderState = initialDeciderState();
  const s = { ...base, ...settings };
  for (const step of steps) {
    const input: DeciderInput = { stableValue: 0, panicValue: 0, readyReplicas: 1, currentReplicas: 1, ...step.input };
    const out = decide(state, input, s, step.t);
    state = out.state;
    assert.equal(out.decision.desired, step.want, `at t=${step.t}ms`);
    if (step.panic !== undefined) assert.equal(out.decision.panicking, step.panic, `panic at t=${step.t}ms`);
  }
}

describe('decide', () => {
  it('makes no decision without data', () => {
    run([{ t: 0, input: { stableValue: undefined, panicValue: undefined }, want: undefined }]);
  });

  it('wants ceil(load / target) replicas in the stable mode', () => {
    run([
      { t: 0, input: { stableValue: 35, panicValue: 35, readyReplicas: 4, currentReplicas: 4 }, want: 4, panic: false },
      { t: 2000, input: { stableValue: 41, panicValue: 41, readyReplicas: 4, currentReplicas: 4 }, want: 5, panic: false },
    ]);
  });

  it('enters panic at 200% of capacity, never scales down while panicking, leaves after a calm stable window', () => {
    run([
      // 1 ready, panic load 25 -> 2.5 replicas' worth >= 2.0 threshold
      { t: 0, input: { stableValue: 5, panicValue: 25, readyReplicas: 1 }, want: 3, panic: true },
      // Load drops; still panicking: keep 3
      { t: 2000, input: { stableValue: 5, panicValue: 5, readyReplicas: 3, currentReplicas: 3 }, want: 3, panic: true },
      { t: 59_000, input: { stableValue: 5, panicValue: 5, readyReplicas: 3, currentReplicas: 3 }, want: 3, panic: true },
      // A full stable window after the last over-threshold tick: back to stable, scale down by rate
      { t: 60_000, input: { stableValue: 5, panicValue: 5, readyReplicas: 3, currentReplicas: 3 }, want: 1, panic: false },
    ]);
  });

  it('limits scale-down to ready / maxScaleDownRate per decision', () => {
    run([{ t: 0, input: { stableValue: 10, panicValue: 10, readyReplicas: 10, currentReplicas: 10 }, want: 5 }]);
  });

  it('limits scale-up to maxScaleUpRate x ready', () => {
    run([{ t: 0, input: { stableValue: 1000, panicValue: 1000, readyReplicas: 2, currentReplicas: 2 }, want: 6 }], { maxScaleUpRate: 3 });
  });

  it('clamps to min and max scale', () => {
    run([{ t: 0, input: { stableValue: 0, panicValue: 0, readyReplicas: 2, currentReplicas: 2 }, want: 2 }], { minScale: 2 });
    run([{ t: 0, input: { stableValue: 500, panicValue: 500, readyReplicas: 2, currentReplicas: 2 }, want: 4 }], { maxScale: 4 });
  });

  it('keeps the last replica for the grace period, then goes to zero', () => {
    run([
      { t: 0, input: { stableValue: 0, panicValue: 0 }, want: 1 },
      { t: 29_999, input: { stableValue: 0, panicValue: 0 }, want: 1 },
      { t: 30_000, input: { stableValue: 0, panicValue: 0 }, want: 0 },
    ]);
  });

  it('restarts the grace period when traffic comes back', () => {
    run([
      { t: 0, input: { stableValue: 0, panicValue: 0 }, want: 1 },
      { t: 20_000, input: { stableValue: 0.1, panicValue: 0 }, want: 1 },
      { t: 40_000, input: { stableValue: 0, panicValue: 0 }, want: 1 },
      { t: 69_999, input: { stableValue: 0, panicValue: 0 }, want: 1 },
      { t: 70_000, input: { stableValue: 0, panicValue: 0 }, want: 0 },
    ]);
  });

  it('holds the highest want over the scale-down delay', () => {
    run(
      [
        { t: 0, input: { stableValue: 50, panicValue: 50, readyReplicas: 5, currentReplicas: 5 }, want: 5 },
        { t: 5_000, input: { stableValue: 10, panicValue: 10, readyReplicas: 5, currentReplicas: 5 }, want: 5 },
        { t: 9_999, input: { stableValue: 10, panicValue: 10, readyReplicas: 5, currentReplicas: 5 }, want: 5 },
        { t: 10_000, input: { stableValue: 10, panicValue: 10, readyReplicas: 5, currentReplicas: 5 }, want: 1 },
      ],
      { scaleDownDelayMs: 10_000, maxScaleDownRate: 100 },
    );
  });
});
