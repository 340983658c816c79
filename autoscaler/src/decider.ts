// The scaling decision, Knative KPA style: a pure function of (state, metrics, settings, now).

/** The settings the decider reads, in plain numbers (ms, ratios). See `settingsFromSpec`. */
export interface ScaleSettings {
  minScale: number;
  /** 0 = unlimited. */
  maxScale: number;
  metric: 'concurrency' | 'rps';
  /** Wanted load per replica after utilisation, e.g. 100 x 70% = 70. */
  targetPerReplica: number;
  /** Messages waiting in event triggers per replica to aim for (KEDA's lagThreshold, default 10). */
  pendingTarget: number;
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
  /**
   * Messages waiting in the function's event triggers: the newest reading, and the mean of the
   * readings over the stable window. Undefined (as for a function without event triggers) is no
   * pending demand; it never makes a decision without concurrency data.
   */
  pendingLatest?: number;
  pendingAverage?: number;
  readyReplicas: number;
  /** What the function runs now (desired by the last decision). */
  currentReplicas: number;
  /**
   * How long the metric window has held data, in ms. Scale to zero waits until it covers a whole
   * stable window (Knative: the revision must have been observed that long). Default: long enough.
   */
  observedMs?: number;
  /**
   * The share (0..1) of the panic window's seconds with data (a second in which no gateway
   * answered is unknown). Under `minCoverage` the decision holds the current scale: it may go up
   * on the data there is, never down, and never to zero. Default 1.
   */
  coverage?: number;
  /**
   * The demand decider's instantaneous backlog term, in the metric's unit: (arrivals + queued /
   * horizon) x service time, what the replicas must carry to serve the arrivals and drain the
   * queue within the horizon. It can raise any decision and trigger panic, but panic does not
   * hold it: it is not in `maxPanicReplicas`. Undefined (the knative decider): no such term.
   */
  backlogValue?: number;
  /**
   * Activation stalled (replicas asked for and none ready within the function's p99 start-up, or
   * no room on the nodes): the decision adds no replica; it may still go down.
   */
  stalled?: boolean;
  /** `initial` not yet reached once: the decision stays at or above it (Knative's initial scale). */
  floor?: number;
}

/** Below this share of known seconds in the panic window, the decision only holds or scales up. */
export const minCoverage = 0.5;

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
  /** Replicas the pending messages want, before rate limits and min/max. */
  pendingWant?: number;
  /** Replicas the backlog term wants (demand decider), before rate limits and min/max. */
  backlogWant?: number;
  /** True when the scale holds for want of data: none in a window, or too little (see `coverage`). */
  holding?: boolean;
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
 *
 * Pending messages are a second demand beside the load: pendingWant = ceil(pending / pendingTarget),
 * and the decision takes the larger of the two, through the same rate limits, scale-down delay,
 * min/max and grace period. Panic stays a matter of the load alone. Example: 0 replicas, no
 * requests, 45 messages waiting at pendingTarget 10 -> pendingWant 5 -> desired 5 (from zero,
 * ready counts as 1, maxUp = 1000).
 */
export function decide(
  state: DeciderState,
  input: DeciderInput,
  s: ScaleSettings,
  now: number,
): { decision: Decision; state: DeciderState } {
  if (input.stableValue === undefined || input.panicValue === undefined) {
    return { decision: { desired: undefined, panicking: state.panicSince !== undefined, holding: true }, state };
  }
  const ready = Math.max(1, input.readyReplicas);
  const maxUp = Math.ceil(s.maxScaleUpRate * ready);
  const maxDown = Math.floor(ready / s.maxScaleDownRate);
  const clampRate = (n: number) => Math.min(maxUp, Math.max(maxDown, n));
  const stableWant = Math.ceil(input.stableValue / s.targetPerReplica);
  const panicWant = Math.ceil(input.panicValue / s.targetPerReplica);
  const pendingWant = pendingWantOf(input, s);
  const backlogWant = input.backlogValue !== undefined ? Math.max(0, Math.ceil(input.backlogValue / s.targetPerReplica - 1e-9)) : 0;
  // As Knative: the rounded-up panic want against the ready replicas (one replica panics as soon
  // as the panic window needs a second one). The backlog term may start a panic too.
  const overThreshold = Math.max(panicWant, backlogWant) / ready >= s.panicThreshold;

  let panicSince = state.panicSince;
  if (overThreshold) panicSince = now;
  else if (panicSince !== undefined && now - panicSince >= s.stableWindowMs) panicSince = undefined;

  let want: number;
  let maxPanicReplicas = 0;
  if (panicSince !== undefined) {
    if (input.backlogValue === undefined) {
      want = Math.max(clampRate(stableWant), clampRate(panicWant), clampRate(pendingWant), state.maxPanicReplicas);
      maxPanicReplicas = want;
    } else {
      // Panic holds what the windows wanted, not the backlog (a queue, once drained, is gone),
      // and not the replicas the scale-down rate kept for a moment either.
      maxPanicReplicas = Math.max(Math.min(maxUp, Math.max(stableWant, panicWant, pendingWant)), state.maxPanicReplicas);
      want = clampRate(Math.max(maxPanicReplicas, backlogWant));
    }
  } else {
    want = clampRate(Math.max(stableWant, pendingWant, backlogWant));
  }

  // Scale-down delay: act on the highest want seen within the delay.
  let recent = state.recent;
  if (s.scaleDownDelayMs > 0) {
    recent = [...state.recent.filter((r) => now - r.t < s.scaleDownDelayMs), { t: now, want }];
    want = Math.max(...recent.map((r) => r.want));
  }

  want = Math.max(want, s.minScale, input.floor ?? 0);
  if (s.maxScale > 0) want = Math.min(want, s.maxScale);
  // A stalled activation gets no more replicas than it has: more would not become ready either.
  if (input.stalled) want = Math.min(want, Math.max(input.currentReplicas, s.minScale));

  // Too little data to trust a lower number: hold (or go up). The scale-down delay and the grace
  // period do not run on it either, so a gap in the data does not count towards going down.
  if ((input.coverage ?? 1) < minCoverage) {
    let desired = Math.max(want, input.currentReplicas);
    if (s.maxScale > 0) desired = Math.min(desired, Math.max(want, s.maxScale));
    const panicking = panicSince !== undefined;
    return {
      decision: { desired, panicking, stableWant, panicWant, pendingWant, backlogWant, holding: true },
      state: { panicSince, maxPanicReplicas: panicking ? Math.max(maxPanicReplicas, desired) : 0, recent: state.recent, zeroSince: state.zeroSince },
    };
  }

  // To zero only after a whole stable window of data and then the grace period; until then keep
  // the last replica. A message waiting anywhere in the stable window makes pendingWant >= 1, so
  // the function goes to zero only when the load and the pending messages both read zero.
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
    decision: { desired: want, panicking: panicSince !== undefined, stableWant, panicWant, pendingWant, backlogWant },
    state: { panicSince, maxPanicReplicas, recent, zeroSince },
  };
}

/**
 * Replicas for the messages waiting. Pending is a level (messages there now), not a rate like
 * requests or a per-second average like concurrency, so its two readings do different jobs:
 * the latest reading scales up at once (a backlog that appears is met at the next decision, as
 * KEDA acts on each poll), and the stable-window mean of the readings scales down slowly (the
 * replicas that just emptied a backlog stay while it is still in the window, as replicas stay
 * after a burst of requests). Taking the larger of the two does both. Example at target 10,
 * stable window 60 s: 0, then 45 waiting -> latest 45 -> 5 replicas; 45 for 10 s, then drained:
 * 10 s later the mean is 45 x 10 / 20 = 22.5 -> 3; 35 s later 10 -> 1; 60 s later the window
 * holds only zeros -> 0, and the grace period runs.
 */
function pendingWantOf(input: DeciderInput, s: ScaleSettings): number {
  const pending = Math.max(input.pendingLatest ?? 0, input.pendingAverage ?? 0);
  return pending > 0 ? Math.ceil(pending / s.pendingTarget) : 0;
}
