// The autoscaler loop: collects per-second samples from the gateways, decides every 2 s (and at
// once on a cold poke), and sets replica counts through the scale target.

import type { ActivationStall, FunctionSample, PokeBody, ScaleSpec, StatsCollection, StatsSource } from '@kubefn/platform';

// The gateway's side of the contract lives in platform (scaling-contract.ts); named here too for
// the autoscaler's callers.
export type { FunctionSample, StatsCollection, StatsSource } from '@kubefn/platform';
import { systemClock, type Clock } from './clock.js';
import type { AutoscalerConfig } from './config.js';
import { decide, initialDeciderState, type Decision, type DeciderState, type ScaleSettings } from './decider.js';
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
  /**
   * Called when a function's activation stalls (replicas asked for, none ready within its p99
   * start-up) with the reason, and with undefined when it recovers: the platform shows it in the
   * function's status.
   */
  onActivation?: (name: string, stall: ActivationStall | undefined) => void;
}

interface Tracked {
  createdAt: string | undefined;
  /** The spec's scale the settings were made from (the same object until the spec changes). */
  scale: ScaleSpec;
  settings: ScaleSettings;
  /** Sized to the stable window. */
  window: MetricWindow;
  state: DeciderState;
  last?: Decision;
  /**
   * Started in panic at its ready count because this autoscaler found it running (a restart):
   * the panic runs from the first second of data, so it ends one stable window of data later.
   */
  restartPanic: boolean;
  /** The last decision held the scale for want of data (logged once per spell). */
  holding: boolean;
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

/** One collection with failures as not answered, and a bare array as one gateway that answered. */
function asCollection(reply: StatsCollection | FunctionSample[]): StatsCollection {
  if (Array.isArray(reply)) return { samples: reply, answered: 1, expected: 1 };
  const answered = isCount(reply.answered) ? Math.floor(reply.answered) : 0;
  const expected = isCount(reply.expected) ? Math.max(answered, Math.floor(reply.expected)) : answered;
  return { samples: Array.isArray(reply.samples) ? reply.samples : [], answered, expected };
}

/** Functions named in one log line at most. */
const maxNamesLogged = 10;

export class Autoscaler {
  readonly #target: ScaleTarget;
  readonly #sources: StatsSource[];
  readonly #clock: Clock;
  readonly #tickMs: number;
  readonly #decideEveryMs: number;
  readonly #log: AutoscalerLogger | undefined;
  #config: AutoscalerConfig | undefined;
  readonly #tracked = new Map<string, Tracked>();
  readonly #pokes = new Map<string, Promise<void>>();
  #timer: NodeJS.Timeout | undefined;
  #lastDecideAt = 0;
  #ticking: Promise<void> | undefined;
  /** No tick yet: the functions the first tick finds were running before this autoscaler. */
  #starting = true;
  /** Sources whose collect threw last time, so a lasting failure is logged once. */
  readonly #throwing = new Set<StatsSource>();

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
    const collections = await Promise.all(this.#sources.map((source) => this.#collect(source, now)));
    let answered = 0;
    let expected = 0;
    for (const c of collections) {
      answered += c.answered;
      expected += c.expected;
    }
    // A gateway that did not answer carries a share of the traffic like the others: scale the
    // answers up by expected / answered. With no answer at all, the second stays unknown.
    const known = answered > 0;
    const share = known ? expected / answered : 0;
    const byName = new Map<string, Combined>();
    for (const s of collections.flatMap((c) => c.samples)) {
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
      const t = this.#trackedFor(fn, now, this.#starting);
      if (!known) continue;
      const s = byName.get(fn.spec.name) ?? { concurrency: 0, requests: 0, pending: undefined };
      // The sample covers the interval ending now; it is filed under the current second, so a
      // window of N seconds ending now holds the last N samples.
      t.window.add(now, s.concurrency * share, s.requests * share, s.pending);
    }
    for (const name of this.#tracked.keys()) if (!live.has(name)) this.#tracked.delete(name);
    this.#starting = false;
    if (now - this.#lastDecideAt >= this.#decideEveryMs) {
      this.#lastDecideAt = now;
      const held: string[] = [];
      const resumed: string[] = [];
      await Promise.all(functions.map((fn) => this.#decideAndScale(fn, now, held, resumed)));
      if (held.length > 0) {
        this.#log?.warn('holding the scale: stats cover less than half of the panic window (failed or missing scrapes), so no scale-down until they come back', {
          functions: held.slice(0, maxNamesLogged),
          count: held.length,
          gateways: { answered, expected },
        });
      }
      if (resumed.length > 0) this.#log?.info('stats back: deciding again', { functions: resumed.slice(0, maxNamesLogged), count: resumed.length });
    }
  }

  async #collect(source: StatsSource, now: number): Promise<StatsCollection> {
    try {
      const c = asCollection(await source.collect(now));
      this.#throwing.delete(source);
      return c;
    } catch (err) {
      if (!this.#throwing.has(source)) {
        this.#throwing.add(source);
        this.#log?.warn('collecting stats failed; its gateways count as not answered', { err: String(err) });
      }
      return { samples: [], answered: 0, expected: 1 };
    }
  }

  /**
   * A request found `name` with no ready replica: scale from zero now instead of at the next
   * round. Concurrent pokes share one scale call.
   */
  poke(name: string, _body: PokeBody = {}): Promise<void> {
    const pending = this.#pokes.get(name);
    if (pending) return pending;
    const p = (async () => {
      const fn = (await this.#target.list()).find((f) => f.spec.name === name);
      if (!fn || fn.replicas > 0) return;
      const t = this.#trackedFor(fn, this.#clock.now());
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

  /**
   * New cluster defaults, applied from the next decision on: every function's settings are made
   * again from its spec and `config`, and its window keeps the seconds both sizes hold. The
   * caller validates (parseAutoscalerConfig) and keeps the last good config on a bad one.
   */
  setConfig(config: AutoscalerConfig | undefined): void {
    this.#config = config;
    for (const t of this.#tracked.values()) {
      t.settings = settingsFromSpec(t.scale, config);
      t.window.resize(windowSpanMs(t.settings));
    }
  }

  /** The last decision per function, for status and debugging. */
  lastDecision(name: string): Decision | undefined {
    return this.#tracked.get(name)?.last;
  }

  /**
   * The history of `fn`, new when first seen (or created again under its name). With `found`
   * (the first tick of this autoscaler: a restart, or a start beside functions already running),
   * a function with more than one ready replica starts in panic at that count, as Knative starts
   * a restarted autoscaler: it has no history yet, and its first seconds of data must not scale
   * it down. A function deployed later starts as usual.
   */
  #trackedFor(fn: ScaledFunction, now: number, found = false): Tracked {
    let t = this.#tracked.get(fn.spec.name);
    if (!t || t.createdAt !== fn.createdAt) {
      const settings = settingsFromSpec(fn.spec.scale, this.#config);
      const restartPanic = found && fn.readyReplicas > 1;
      const state = initialDeciderState();
      if (restartPanic) {
        state.panicSince = now;
        state.maxPanicReplicas = fn.readyReplicas;
      }
      t = {
        createdAt: fn.createdAt,
        scale: fn.spec.scale,
        settings,
        window: new MetricWindow(windowSpanMs(settings)),
        state,
        restartPanic,
        holding: false,
      };
      this.#tracked.set(fn.spec.name, t);
    } else if (t.scale !== fn.spec.scale) {
      t.scale = fn.spec.scale;
      t.settings = settingsFromSpec(fn.spec.scale, this.#config);
      t.window.resize(windowSpanMs(t.settings));
    }
    return t;
  }

  async #decideAndScale(fn: ScaledFunction, now: number, held: string[], resumed: string[]): Promise<void> {
    const t = this.#trackedFor(fn, now);
    const settings = t.settings;
    if (t.restartPanic) {
      // Panic from the first second of data on, however late it came (a restart into an outage).
      if (t.state.panicSince === undefined) t.restartPanic = false;
      else t.state = { ...t.state, panicSince: Math.max(t.state.panicSince, t.window.firstKnownMs ?? now) };
    }
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
        coverage: t.window.coverage(now, settings.panicWindowMs),
      },
      settings,
      now,
    );
    t.state = state;
    t.last = decision;
    const holding = decision.holding === true;
    if (holding !== t.holding) (holding ? held : resumed).push(fn.spec.name);
    t.holding = holding;
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

/** What a function's window must keep: its stable window (the panic window is a part of it). */
function windowSpanMs(s: ScaleSettings): number {
  return Math.max(1000, s.stableWindowMs, s.panicWindowMs);
}
