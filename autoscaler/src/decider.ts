// The scaling decision, Knative KPA style: a pure function of (state, metrics, settings, now).

/** The settings the decider reads, in plain numbers (ms, ratios). See `settingsFromSpec`. */
export interface ScaleSettings {
  minScale: number;
  /** 0 = unlimited. */
  maxScale: number;
  metric: 'concurrency' | 'rps';
  /** Wanted load per replica after utilisation, e.g. 100 x 70% = 70. */
  targetPerReplica: number;
  stableWindowMs: number;
  panicWindowMs: number;
  /** Ratio, e.g. 2.0 for 200%. */
  panicThreshold: number;
  maxScaleUpRate: number;
  maxScaleDownRate: number;
  scaleDownDelayMs: number;
  scaleToZeroGraceMs: number;
}

export interface DeciderInput {
  /** Mean load over the stable window, undefined without data. */
  stableValue: number | undefined;
  /** Mean load over the panic window, undefined without data. */
  panicValue: number | undefined;
  readyReplicas: number;
  /** What the function runs now (desired by the last decision). */
  currentReplicas: number;
  /**
   * How long the metric window has held data, in ms. Scale to zero waits until it covers a whole
   * stable window (Knative: the revision must have been observed that long). Default: long enough.
   */
  observedMs?: number;
}

export interface DeciderState {
  /** When the load last was over the panic threshold; undefined when not panicking. */
  panicSince: number | undefined;
  /** Highest decision while panicking: panic never scales down. */
  maxPanicReplicas: number;
  /** Recent decisions, kept for the scale-down delay. */
  recent: { t: number; want: number }[];
  /** When the decision first became 0; the grace period runs from here. */
  zeroSince: number | undefined;
}

export interface Decision {
  /** Replicas to run; undefined = no data, change nothing. */
  desired: number | undefined;
  panicking: boolean;
  /** Unclamped wants, for logs and the simulator. */
  stableWant?: number;
  panicWant?: number;
}

export const initialDeciderState = (): DeciderState => ({
  panicSince: undefined,
  maxPanicReplicas: 0,
  recent: [],
  zeroSince: undefined,
});

/**
 * One decision. Worked example with target 70 per replica, 2 ready, panic threshold 2.0:
 * panic window mean 300 -> panicWant ceil(300/70) = 5; 5 / 2 ready = 2.5 >= 2.0 -> panic;
 * stable mean 100 -> stableWant 2; in panic desired = max(2, 5) = 5 (within maxUp = 2000).
 */
export function decide(
  state: DeciderState,
  input: DeciderInput,
  s: ScaleSettings,
  now: number,
): { decision: Decision; state: DeciderState } {
  if (input.stableValue === undefined || input.panicValue === undefined) {
    return { decision: { desired: undefined, panicking: state.panicSince !== undefined }, state };
  }
  const ready = Math.max(1, input.readyReplicas);
  const maxUp = Math.ceil(s.maxScaleUpRate * ready);
  const maxDown = Math.floor(ready / s.maxScaleDownRate);
  const clampRate = (n: number) => Math.min(maxUp, Math.max(maxDown, n));
  const stableWant = Math.ceil(input.stableValue / s.targetPerReplica);
  const panicWant = Math.ceil(input.panicValue / s.targetPerReplica);
  // As Knative: the rounded-up panic want against the ready replicas (one replica panics as soon
  // as the panic window needs a second one).
  const overThreshold = panicWant / ready >= s.panicThreshold;

  let panicSince = state.panicSince;
  if (overThreshold) panicSince = now;
  else if (panicSince !== undefined && now - panicSince >= s.stableWindowMs) panicSince = undefined;

  let want: number;
  let maxPanicReplicas = 0;
  if (panicSince !== undefined) {
    want = Math.max(clampRate(stableWant), clampRate(panicWant), state.maxPanicReplicas);
    maxPanicReplicas = want;
  } else {
    want = clampRate(stableWant);
  }

  // Scale-down delay: act on the highest want seen within the delay.
  let recent = state.recent;
  if (s.scaleDownDelayMs > 0) {
    recent = [...state.recent.filter((r) => now - r.t < s.scaleDownDelayMs), { t: now, want }];
    want = Math.max(...recent.map((r) => r.want));
  }

  want = Math.max(want, s.minScale);
  if (s.maxScale > 0) want = Math.min(want, s.maxScale);

  // To zero only after a whole stable window of data and then the grace period; until then keep
  // the last replica.
  let zeroSince = state.zeroSince;
  if (want === 0 && (input.observedMs ?? Infinity) < s.stableWindowMs && input.currentReplicas > 0) {
    want = 1;
    zeroSince = undefined;
  } else if (want === 0) {
    zeroSince ??= now;
    if (now - zeroSince < s.scaleToZeroGraceMs && input.currentReplicas > 0) want = 1;
  } else {
    zeroSince = undefined;
  }

  return {
    decision: { desired: want, panicking: panicSince !== undefined, stableWant, panicWant },
    state: { panicSince, maxPanicReplicas, recent, zeroSince },
  };
}
