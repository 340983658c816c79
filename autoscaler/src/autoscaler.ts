// The autoscaler loop: collects per-second samples from the gateways, decides every 2 s (and at
// once on a cold poke), and sets replica counts through the scale target.

import type { FunctionSample, ScaleSpec, StatsSource } from '@kubefn/platform';

// The gateway's side of the contract lives in platform (scaling-contract.ts); named here too for
// the autoscaler's callers.
export type { FunctionSample, StatsSource } from '@kubefn/platform';
import { systemClock, type Clock } from './clock.js';
import type { AutoscalerConfig } from './config.js';
import { decide, initialDeciderState, type Decision, type DeciderState } from './decider.js';
import { settingsFromSpec } from './settings.js';
import { MetricWindow } from './window.js';

export interface ScaledFunction {
  spec: { name: string; scale: ScaleSpec };
  replicas: number;
  readyReplicas: number;
  /**
   * When this function was created (the driver's createdAt). A function deleted and created again
   * under the same name is a new one: its history (window, decider state) starts empty.
   */
  createdAt?: string;
}

/** What the autoscaler needs from a driver. */
export interface ScaleTarget {
  list(): Promise<ScaledFunction[]>;
  scale(name: string, replicas: number): Promise<void>;
}

export interface AutoscalerLogger {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
}

export interface AutoscalerOptions {
  target: ScaleTarget;
  sources: StatsSource[];
  clock?: Clock;
  /** How often samples are collected, ms. */
  tickMs?: number;
  /** How often decisions are made, ms. */
  decideEveryMs?: number;
  logger?: AutoscalerLogger;
  /** Cluster defaults for the scale knobs a function's spec leaves out (default: Knative's). */
  config?: AutoscalerConfig;
}

interface Tracked {
  createdAt: string | undefined;
  window: MetricWindow;
  state: DeciderState;
  last?: Decision;
}

/** One function's samples of one collection, combined across gateways. */
interface Combined {
  concurrency: number;
  requests: number;
  /** Undefined when no gateway had a reading. */
  pending: number | undefined;
}

function isCount(n: unknown): n is number {
  return typeof n === 'number' && Number.isFinite(n) && n >= 0;
}

/** Longest window kept per function: Knative's maximum stable window. */
const maxWindowMs = 3_600_000;

export class Autoscaler {
  readonly #target: ScaleTarget;
  readonly #sources: StatsSource[];
  readonly #clock: Clock;
  readonly #tickMs: number;
  readonly #decideEveryMs: number;
  readonly #log: AutoscalerLogger | undefined;
  readonly #config: AutoscalerConfig | undefined;
  readonly #tracked = new Map<string, Tracked>();
  readonly #pokes = new Map<string, Promise<void>>();
  #timer: NodeJS.Timeout | undefined;
  #lastDecideAt = 0;
  #ticking: Promise<void> | undefined;

  constructor(options: AutoscalerOptions) {
    this.#target = options.target;
    this.#sources = options.sources;
    this.#clock = options.clock ?? systemClock;
    this.#tickMs = options.tickMs ?? 1000;
    this.#decideEveryMs = options.decideEveryMs ?? 2000;
    this.#log = options.logger;
    this.#config = options.config;
  }

  start(): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => {
      // Skip a tick rather than pile them up when a scale call is slow.
      this.#ticking ??= this.tick()
        .catch((err: unknown) => this.#log?.warn('autoscaler tick failed', { err: String(err) }))
        .finally(() => (this.#ticking = undefined));
    }, this.#tickMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#ticking;
  }

  /** One collection, and a decision round when one is due. Public for tests. */
  async tick(): Promise<void> {
    const now = this.#clock.now();
    const functions = await this.#target.list();
    const samples = (await Promise.all(this.#sources.map((s) => s.collect(now)))).flat();
    const byName = new Map<string, Combined>();
    for (const s of samples) {
      const acc = byName.get(s.name) ?? { concurrency: 0, requests: 0, pending: undefined };
      // Each gateway counts its own share of the requests: sum. All read the same trigger
      // consumers: max (scaling-contract.ts). A reading that is not a count is left out.
      acc.concurrency += s.concurrency;
      acc.requests += s.requests;
      if (isCount(s.pending)) acc.pending = Math.max(acc.pending ?? 0, s.pending);
      byName.set(s.name, acc);
    }
    const live = new Set<string>();
    for (const fn of functions) {
      live.add(fn.spec.name);
      const t = this.#trackedFor(fn.spec.name, fn.createdAt);
      const s = byName.get(fn.spec.name) ?? { concurrency: 0, requests: 0, pending: undefined };
      // The sample covers the interval ending now; it is filed under the current second, so a
      // window of N seconds ending now holds the last N samples.
      t.window.add(now, s.concurrency, s.requests, s.pending);
    }
    for (const name of this.#tracked.keys()) if (!live.has(name)) this.#tracked.delete(name);
    if (now - this.#lastDecideAt >= this.#decideEveryMs) {
      this.#lastDecideAt = now;
      await Promise.all(functions.map((fn) => this.#decideAndScale(fn, now)));
    }
  }

  /**
   * A request found `name` with no ready replica: scale from zero now instead of at the next
   * round. Concurrent pokes share one scale call.
   */
  poke(name: string): Promise<void> {
    const pending = this.#pokes.get(name);
    if (pending) return pending;
    const p = (async () => {
      const fn = (await this.#target.list()).find((f) => f.spec.name === name);
      if (!fn || fn.replicas > 0) return;
      const t = this.#trackedFor(name, fn.createdAt);
      // Restart the grace period, so the replica started for this request is not culled by a
      // decision made on samples from before it arrived.
      t.state = { ...t.state, zeroSince: this.#clock.now() };
      const n = Math.max(1, fn.spec.scale.min);
      this.#log?.info('scaling from zero', { function: name, replicas: n });
      await this.#target.scale(name, n);
    })().finally(() => this.#pokes.delete(name));
    this.#pokes.set(name, p);
    return p;
  }

  /** The last decision per function, for status and debugging. */
  lastDecision(name: string): Decision | undefined {
    return this.#tracked.get(name)?.last;
  }

  #trackedFor(name: string, createdAt: string | undefined): Tracked {
    let t = this.#tracked.get(name);
    if (!t || t.createdAt !== createdAt) {
      t = { createdAt, window: new MetricWindow(maxWindowMs), state: initialDeciderState() };
      this.#tracked.set(name, t);
    }
    return t;
  }

  async #decideAndScale(fn: ScaledFunction, now: number): Promise<void> {
    const t = this.#trackedFor(fn.spec.name, fn.createdAt);
    const settings = settingsFromSpec(fn.spec.scale, this.#config);
    const { decision, state } = decide(
      t.state,
      {
        stableValue: t.window.average(now, settings.stableWindowMs, settings.metric),
        panicValue: t.window.average(now, settings.panicWindowMs, settings.metric),
        // The newest reading, if no older than the panic window (a gateway that missed a scrape
        // or two still counts); the mean over the stable window (see pendingWantOf).
        pendingLatest: t.window.pendingLatest(now, settings.panicWindowMs),
        pendingAverage: t.window.pendingAverage(now, settings.stableWindowMs),
        readyReplicas: fn.readyReplicas,
        currentReplicas: fn.replicas,
        observedMs: t.window.observedMs(now),
      },
      settings,
      now,
    );
    t.state = state;
    t.last = decision;
    if (decision.desired === undefined || decision.desired === fn.replicas) return;
    if (this.#pokes.has(fn.spec.name)) return;
    this.#log?.info('scaling', {
      function: fn.spec.name,
      from: fn.replicas,
      to: decision.desired,
      panicking: decision.panicking,
      ...(decision.pendingWant ? { pendingWant: decision.pendingWant } : {}),
    });
    await this.#target.scale(fn.spec.name, decision.desired);
  }
}
