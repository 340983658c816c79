// Knative's documented KPA behaviours, as tables: each case is a series of decisions with the
// inputs the decider sees and the replicas (and panic mode) it must answer.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decide, initialDeciderState, type DeciderInput, type DeciderState, type ScaleSettings } from './decider.js';
import { MetricWindow } from './window.js';

const base: ScaleSettings = {
  minScale: 0,
  maxScale: 0,
  metric: 'concurrency',
  targetPerReplica: 10,
  pendingTarget: 10,
  stableWindowMs: 60_000,
  panicWindowMs: 6_000,
  panicThreshold: 2,
  maxScaleUpRate: 1000,
  maxScaleDownRate: 2,
  scaleDownDelayMs: 0,
  scaleToZeroGraceMs: 30_000,
};

interface Step {
  t: number;
  /** Shorthand: stable and panic load both `load`. */
  load?: number;
  input?: Partial<DeciderInput>;
  want: number | undefined;
  panic?: boolean;
}

interface Case {
  name: string;
  settings?: Partial<ScaleSettings>;
  steps: Step[];
}

const n = (replicas: number): Partial<DeciderInput> => ({ readyReplicas: replicas, currentReplicas: replicas });

const cases: Case[] = [
  // No data
  { name: 'no data -> no decision', steps: [{ t: 0, input: { stableValue: undefined, panicValue: undefined }, want: undefined }] },
  {
    name: 'no data keeps the panic state and decides nothing',
    steps: [
      { t: 0, input: { stableValue: 5, panicValue: 25 }, want: 3, panic: true },
      { t: 2000, input: { stableValue: undefined, panicValue: undefined, ...n(3) }, want: undefined, panic: true },
    ],
  },
  // Stable mode
  {
    name: 'stable mode wants ceil(load / target)',
    steps: [
      { t: 0, load: 35, input: n(4), want: 4, panic: false },
      { t: 2000, load: 41, input: n(4), want: 5, panic: false },
      { t: 4000, load: 40, input: n(4), want: 4, panic: false },
    ],
  },
  // Panic entry and exit
  {
    name: 'panic starts when the panic window needs >= 200% of the ready replicas',
    steps: [{ t: 0, input: { stableValue: 5, panicValue: 20, ...n(1) }, want: 2, panic: true }],
  },
  {
    name: 'the threshold compares the rounded-up panic want with the ready replicas',
    steps: [
      // 10 in flight at target 10: one replica's worth, 1/1 < 2.
      { t: 0, input: { stableValue: 5, panicValue: 10, ...n(1) }, want: 1, panic: false },
      // 10.1: ceil -> 2 replicas' worth, 2/1 >= 2.
      { t: 2000, input: { stableValue: 5, panicValue: 10.1, ...n(1) }, want: 2, panic: true },
    ],
  },
  {
    name: 'with more ready replicas the same load is no panic',
    steps: [{ t: 0, input: { stableValue: 30, panicValue: 30, ...n(2) }, want: 3, panic: false }],
  },
  {
    name: 'panic takes the larger of stable and panic wants',
    steps: [{ t: 0, input: { stableValue: 45, panicValue: 30, ...n(1) }, want: 5, panic: true }],
  },
  {
    name: 'panic never scales down and ends a full stable window after the last over-threshold decision',
    steps: [
      { t: 0, input: { stableValue: 5, panicValue: 25, ...n(1) }, want: 3, panic: true },
      { t: 2000, load: 5, input: n(3), want: 3, panic: true },
      { t: 10_000, input: { stableValue: 5, panicValue: 60, ...n(3) }, want: 6, panic: true },
      { t: 12_000, load: 5, input: n(6), want: 6, panic: true },
      { t: 69_999, load: 5, input: n(6), want: 6, panic: true },
      { t: 70_000, load: 5, input: n(6), want: 3, panic: false },
    ],
  },
  // Rate limits
  { name: 'scale-down is limited to ready / maxScaleDownRate', steps: [{ t: 0, load: 10, input: n(10), want: 5 }] },
  {
    name: 'scale-up is limited to maxScaleUpRate x ready',
    settings: { maxScaleUpRate: 3 },
    steps: [{ t: 0, input: { stableValue: 1000, panicValue: 1000, ...n(2) }, want: 6 }],
  },
  {
    name: 'no ready replica counts as one for the rate limits',
    settings: { maxScaleUpRate: 4 },
    steps: [{ t: 0, input: { stableValue: 100, panicValue: 100, readyReplicas: 0, currentReplicas: 1 }, want: 4 }],
  },
  // Min, max
  { name: 'min scale is a floor, even with no load', settings: { minScale: 2 }, steps: [{ t: 0, load: 0, input: n(2), want: 2 }, { t: 40_000, load: 0, input: n(2), want: 2 }] },
  { name: 'max scale caps the want, panic included', settings: { maxScale: 4 }, steps: [{ t: 0, load: 500, input: n(2), want: 4, panic: true }] },
  { name: 'max scale 0 means unlimited', steps: [{ t: 0, load: 5000, input: n(200), want: 500 }] },
  // Scale to zero
  {
    name: 'the last replica stays for the grace period after the first zero decision, then goes',
    steps: [
      { t: 0, load: 0, want: 1 },
      { t: 29_999, load: 0, want: 1 },
      { t: 30_000, load: 0, want: 0 },
    ],
  },
  {
    name: 'traffic during the grace period restarts it',
    steps: [
      { t: 0, load: 0, want: 1 },
      { t: 20_000, input: { stableValue: 0.1, panicValue: 0 }, want: 1 },
      { t: 40_000, load: 0, want: 1 },
      { t: 69_999, load: 0, want: 1 },
      { t: 70_000, load: 0, want: 0 },
    ],
  },
  {
    name: 'zero waits until the window holds a whole stable window of data',
    steps: [
      { t: 0, load: 0, input: { observedMs: 2000 }, want: 1 },
      { t: 58_000, load: 0, input: { observedMs: 59_999 }, want: 1 },
      { t: 60_000, load: 0, input: { observedMs: 60_000 }, want: 1 },
      { t: 89_999, load: 0, input: { observedMs: 89_999 }, want: 1 },
      { t: 90_000, load: 0, input: { observedMs: 90_000 }, want: 0 },
    ],
  },
  {
    name: 'at zero with no load it stays at zero',
    steps: [{ t: 0, load: 0, input: { readyReplicas: 0, currentReplicas: 0 }, want: 0 }],
  },
  // Scale-down delay
  {
    name: 'scale-down delay holds the highest want of the delay window',
    settings: { scaleDownDelayMs: 10_000, maxScaleDownRate: 100 },
    steps: [
      { t: 0, load: 50, input: n(5), want: 5 },
      { t: 5_000, load: 10, input: n(5), want: 5 },
      { t: 9_999, load: 10, input: n(5), want: 5 },
      { t: 10_000, load: 10, input: n(5), want: 1 },
    ],
  },
  {
    name: 'scale-down delay does not slow scale-up',
    settings: { scaleDownDelayMs: 60_000 },
    steps: [
      { t: 0, load: 10, input: n(1), want: 1 },
      { t: 2000, load: 15, input: n(1), want: 2 },
    ],
  },
  // Pending messages (event triggers): a second demand beside the load.
  {
    name: 'pending messages with no load scale from zero to ceil(pending / pendingTarget) in one decision',
    steps: [{ t: 0, load: 0, input: { pendingLatest: 45, pendingAverage: 45, readyReplicas: 0, currentReplicas: 0 }, want: 5, panic: false }],
  },
  {
    name: 'pending from zero is clamped by max scale',
    settings: { maxScale: 3 },
    steps: [{ t: 0, load: 0, input: { pendingLatest: 45, pendingAverage: 45, readyReplicas: 0, currentReplicas: 0 }, want: 3 }],
  },
  {
    name: 'one message waiting activates a function at zero (activation threshold 0)',
    steps: [{ t: 0, load: 0, input: { pendingLatest: 1, readyReplicas: 0, currentReplicas: 0 }, want: 1 }],
  },
  {
    name: 'no pending reading is no pending demand',
    steps: [{ t: 0, load: 0, input: { pendingLatest: undefined, pendingAverage: undefined, readyReplicas: 0, currentReplicas: 0 }, want: 0 }],
  },
  {
    name: 'the larger of the load want and the pending want wins',
    steps: [
      { t: 0, load: 35, input: { ...n(4), pendingLatest: 20, pendingAverage: 20 }, want: 4 },
      { t: 2000, load: 35, input: { ...n(4), pendingLatest: 80, pendingAverage: 20 }, want: 8 },
    ],
  },
  {
    name: 'pending never panics: panic follows the load alone',
    steps: [
      { t: 0, load: 0, input: { ...n(1), pendingLatest: 100, pendingAverage: 100 }, want: 10, panic: false },
      // Panicking on load, the pending want is one more floor that panic does not go under.
      { t: 2000, input: { ...n(10), stableValue: 5, panicValue: 250, pendingLatest: 300, pendingAverage: 100 }, want: 30, panic: true },
      { t: 4000, input: { ...n(30), stableValue: 5, panicValue: 5, pendingLatest: 0, pendingAverage: 0 }, want: 30, panic: true },
    ],
  },
  {
    name: 'the latest reading scales up; the stable-window mean holds replicas while a backlog drains',
    settings: { maxScaleDownRate: 100 },
    steps: [
      { t: 0, load: 0, input: { ...n(1), pendingLatest: 45, pendingAverage: 10 }, want: 5 },
      { t: 2000, load: 0, input: { ...n(5), pendingLatest: 0, pendingAverage: 30 }, want: 3 },
      { t: 4000, load: 0, input: { ...n(3), pendingLatest: 0, pendingAverage: 0.5 }, want: 1 },
    ],
  },
  {
    name: 'pending scale-up keeps to the rate limit',
    settings: { maxScaleUpRate: 2 },
    steps: [{ t: 0, load: 0, input: { ...n(2), pendingLatest: 100, pendingAverage: 100 }, want: 4 }],
  },
  {
    name: 'pending scale-down keeps to the rate limit and the scale-down delay',
    settings: { scaleDownDelayMs: 10_000 },
    steps: [
      { t: 0, load: 0, input: { ...n(8), pendingLatest: 80, pendingAverage: 80 }, want: 8 },
      { t: 2000, load: 0, input: { ...n(8), pendingLatest: 0, pendingAverage: 0 }, want: 8 },
      { t: 10_000, load: 0, input: { ...n(8), pendingLatest: 0, pendingAverage: 0 }, want: 4 },
    ],
  },
  {
    name: 'messages waiting hold the last replica; zero comes a grace period after load and pending both read zero',
    steps: [
      { t: 0, load: 0, input: { pendingLatest: 0, pendingAverage: 0.2 }, want: 1 },
      { t: 20_000, load: 0, input: { pendingLatest: 0, pendingAverage: 0.2 }, want: 1 },
      { t: 40_000, load: 0, input: { pendingLatest: 0, pendingAverage: 0 }, want: 1 },
      { t: 69_999, load: 0, input: { pendingLatest: 0, pendingAverage: 0 }, want: 1 },
      { t: 70_000, load: 0, input: { pendingLatest: 0, pendingAverage: 0 }, want: 0 },
    ],
  },
];

describe('decide (table)', () => {
  for (const c of cases) {
    it(c.name, () => {
      let state: DeciderState = initialDeciderState();
      const settings = { ...base, ...c.settings };
      for (const step of c.steps) {
        const load = step.load === undefined ? {} : { stableValue: step.load, panicValue: step.load };
        const input: DeciderInput = { stableValue: 0, panicValue: 0, readyReplicas: 1, currentReplicas: 1, ...load, ...step.input };
        const out = decide(state, input, settings, step.t);
        state = out.state;
        assert.equal(out.decision.desired, step.want, `desired at t=${step.t} ms`);
        if (step.panic !== undefined) assert.equal(out.decision.panicking, step.panic, `panic mode at t=${step.t} ms`);
      }
    });
  }
});

/**
 * The decider fed from a real MetricWindow the way the autoscaler does it: a sample every second,
 * a decision every 2 s. Returns the replica count after each decision, keyed by time.
 */
function replay(
  load: (t: number) => number,
  untilMs: number,
  settings: ScaleSettings,
  startReplicas: number,
  pending: (t: number) => number | undefined = () => undefined,
): Map<number, number> {
  const window = new MetricWindow(3_600_000);
  let state = initialDeciderState();
  let replicas = startReplicas;
  const out = new Map<number, number>();
  for (let t = 1000; t <= untilMs; t += 1000) {
    window.add(t, load(t), 0, pending(t));
    if (t % 2000 !== 0) continue;
    const r = decide(
      state,
      {
        stableValue: window.average(t, settings.stableWindowMs, 'concurrency'),
        panicValue: window.average(t, settings.panicWindowMs, 'concurrency'),
        pendingLatest: window.pendingLatest(t, settings.panicWindowMs),
        pendingAverage: window.pendingAverage(t, settings.stableWindowMs),
        readyReplicas: replicas,
        currentReplicas: replicas,
        observedMs: window.observedMs(t),
      },
      settings,
      t,
    );
    state = r.state;
    replicas = r.decision.desired ?? replicas;
    out.set(t, replicas);
  }
  return out;
}

describe('decide over a metric window', () => {
  it('goes to zero a stable window plus the grace period after the last request', () => {
    // Load 20 (2 replicas) until t = 20 s, then nothing.
    const timeline = replay((t) => (t <= 20_000 ? 20 : 0), 200_000, base, 2);
    const zeroAt = [...timeline].find(([, r]) => r === 0)?.[0];
    // The stable average reaches 0 once the window no longer holds t <= 20 s: at 80 s; grace 30 s.
    assert.equal(zeroAt, 110_000);
    assert.equal(timeline.get(108_000), 1, 'one replica until then');
  });

  it('a function started at its initial scale with no traffic steps down by the rate limit, reaching zero after window + grace', () => {
    const timeline = replay(() => 0, 200_000, base, 3);
    assert.equal(timeline.get(2000), 1, '3 -> floor(3 / 2) = 1 at the first decision');
    const zeroAt = [...timeline].find(([, r]) => r === 0)?.[0];
    // Data from t = 1 s: a whole stable window at 61 s, first decision after that at 62 s, + 30 s grace.
    assert.equal(zeroAt, 92_000);
  });

  it('panics on a burst and comes back to the stable want a stable window after it', () => {
    const burst = (t: number) => (t > 60_000 && t <= 70_000 ? 200 : 10);
    const timeline = replay(burst, 200_000, base, 1);
    assert.equal(timeline.get(58_000), 1);
    const peak = Math.max(...[...timeline].filter(([t]) => t > 60_000 && t <= 72_000).map(([, r]) => r));
    assert.ok(peak >= 19, `the burst (200 in flight at target 10) reaches ${peak} replicas`);
    // Over the threshold is measured against the ready replicas: at 62 s one replica faces 73 in
    // flight (>= 2 x 10); from 64 s the added replicas carry the burst under 200%. So panic, and
    // the peak, hold until a stable window after 62 s, whatever the load does meanwhile.
    for (const [t, r] of timeline) if (t >= 66_000 && t < 122_000) assert.equal(r, peak, `held at t=${t}`);
    assert.ok(timeline.get(122_000)! < peak, 'panic over at 122 s: scale-down resumes');
    assert.ok((timeline.get(200_000) ?? 0) <= 2, 'back near the stable want of 1 after the window');
  });

  it('pending read as 0 with no traffic goes to zero as an idle function does: a stable window, then the grace period', () => {
    const withPending = replay(() => 0, 200_000, base, 3, () => 0);
    const without = replay(() => 0, 200_000, base, 3);
    assert.deepEqual([...withPending], [...without]);
    assert.equal([...withPending].find(([, r]) => r === 0)?.[0], 92_000);
  });

  it('a backlog scales up at once, drains, and the function goes to zero a stable window plus the grace after it', () => {
    // No requests at all; 45 messages waiting from 10 s to 20 s, then none.
    const timeline = replay(() => 0, 200_000, base, 0, (t) => (t > 10_000 && t <= 20_000 ? 45 : 0));
    assert.equal(timeline.get(10_000), 0);
    assert.equal(timeline.get(12_000), 5, 'ceil(45 / 10) at the first decision that sees the backlog');
    // Drained at 21 s: the latest reading is 0, the mean of the readings (ten of 45 among zeros)
    // holds replicas: at 22 s 450 / 22 = 20.5 -> 3; at 30 s 15 -> 2; at 44 s 10.2 -> 2; at 46 s -> 1.
    assert.equal(timeline.get(22_000), 3);
    assert.equal(timeline.get(30_000), 2);
    assert.equal(timeline.get(44_000), 2);
    assert.equal(timeline.get(46_000), 1);
    assert.equal(timeline.get(78_000), 1);
    const zeroAt = [...timeline].find(([t, r]) => t > 20_000 && r === 0)?.[0];
    // The last reading of 45 is at 20 s; the stable window holds only zeros from 80 s; + 30 s grace.
    assert.equal(zeroAt, 110_000);
  });
});

describe('decide with little data', () => {
  const settings: ScaleSettings = { ...base, targetPerReplica: 70 };

  it('under half coverage of the panic window holds the scale: no scale-down, no zero', () => {
    const input = { stableValue: 0, panicValue: 0, readyReplicas: 5, currentReplicas: 5, coverage: 2 / 6 };
    const { decision, state } = decide(initialDeciderState(), input, settings, 100_000);
    assert.equal(decision.desired, 5);
    assert.equal(decision.holding, true);
    assert.equal(state.zeroSince, undefined, 'the grace period does not run on a gap');
    const full = decide(initialDeciderState(), { ...input, coverage: 1 }, settings, 100_000).decision;
    assert.equal(full.desired, 2, 'with the data, down by the rate limit (5 -> 2)');
    assert.equal(full.holding, undefined);
  });

  it('under half coverage still scales up on the data there is', () => {
    const input = { stableValue: 700, panicValue: 700, readyReplicas: 5, currentReplicas: 5, coverage: 1 / 6 };
    const { decision } = decide(initialDeciderState(), input, settings, 100_000);
    assert.equal(decision.desired, 10);
  });
});
