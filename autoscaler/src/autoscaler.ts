// The autoscaler loop: collects per-second samples from the gateways, decides every second (the
// demand decider; Knative's every 2 s) and at once on a poke, and sets replica counts through the
// scale target. See docs/autoscaler.md for the demand decider.

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
  /**
   * Replicas asked for that the nodes have no room for (Kubernetes: pods Unschedulable), when the
   * driver knows: an activation with any is stalled at once.
   */
  unschedulable?: number;
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
  /**
   * Whether it scales (default true). A passive autoscaler (a standby) collects and decides like
   * an active one, so its windows are full when it becomes active, but calls no scale.
   */
  active?: boolean;
  /**
   * `demand` (default): windows of arrivals x service time, a backlog term, 1 s decisions,
   * start-up aware. `knative`: Knative's KPA as shipped before it (in-flight requests, queue
   * included, in the windows; 2 s decisions; a poke asks for max(1, min)), kept for comparison.
   */
  mode?: 'demand' | 'knative';
}

/** Completed calls a service-time estimate needs before demand is measured with it. */
const minServiceSamples = 5;
/** Start-up samples kept per function (p50 and p99 of the last ones). */
const startupSamplesKept = 32;
/** A function's p99 start-up before one was measured: this long without a ready replica stalls it. */
export const defaultStallAfterMs = 10_000;
/** The least a measured start-up lets an activation wait before it is called stalled. */
const minStallAfterMs = 2000;

interface Tracked {
  createdAt: string | undefined;
  /** The spec's scale the settings were made from (the same object until the spec changes). */
  scale: ScaleSpec;
  settings: ScaleSettings;
  /** Sized to the stable window. */
  window: MetricWindow;
  state: DeciderState;
  last?: Decision;
  /** Decisions made for it (a count, for operators and tests). */
  decisions: number;
  /**
   * Started in panic at its ready count because this autoscaler found it running (a restart):
   * the panic runs from the first second of data, so it ends one stable window of data later.
   */
  restartPanic: boolean;
  /** The last decision held the scale for want of data (logged once per spell). */
  holding: boolean;
  /** The gateways' service-time estimate, ms, and the completed calls behind it (capped). */
  serviceMs: number | undefined;
  serviceSamples: number;
  /** The newest second's arrivals and queue (all gateways, scaled to their share), and when. */
  latest: { requests: number; queued: number; at: number } | undefined;
  /** When each replica asked for and not yet ready was asked for, oldest first. */
  starts: number[];
  /** Ready replicas at the last look, to see start-ups complete. */
  lastReady: number;
  /** Recent start-up times, ms: a ring of `startupSamplesKept`. */
  startups: number[];
  stall: ActivationStall | undefined;
  /**
   * `initial` was reached once, the function was found running, or someone else (`fn scale`)
   * set it below `initial`: it no longer floors.
   */
  initialReached: boolean;
  /** The replica count at the last look. */
  lastReplicas: number;
}

/** One function's samples of one collection, combined across gateways. */
interface Combined {
  concurrency: number;
  requests: number;
  /** Undefined when no gateway had a reading. */
  pending: number | undefined;
  queued: number;
  completed: number;
  /** Sum of serviceMs x weight, and the weights (completed calls, at least 1 per reading). */
  serviceSum: number;
  serviceWeight: number;
}

function combine(samples: Iterable<FunctionSample>): Map<string, Combined> {
  const byName = new Map<string, Combined>();
  for (const s of samples) {
    let acc = byName.get(s.name);
    if (!acc) {
      acc = { concurrency: 0, requests: 0, pending: undefined, queued: 0, completed: 0, serviceSum: 0, serviceWeight: 0 };
      byName.set(s.name, acc);
    }
    // Each gateway counts its own share of the requests and holds its own queue: sum. All read
    // the same trigger consumers: max (scaling-contract.ts). A reading that is not a count is left out.
    // Counts are read as per-second rates over the interval they cover (a tick that came late, a
    // scrape after failed ones). Intervals under half a second (a decision between ticks) count
    // as half a second, so a few calls in a sliver of time do not read as a burst.
    const perSecond = isCount(s.spanMs) && s.spanMs > 0 ? 1000 / Math.max(500, s.spanMs) : 1;
    acc.concurrency += s.concurrency;
    acc.requests += s.requests * perSecond;
    if (isCount(s.pending)) acc.pending = Math.max(acc.pending ?? 0, s.pending);
    if (isCount(s.queued)) acc.queued += s.queued;
    const completed = isCount(s.completed) ? s.completed * perSecond : 0;
    acc.completed += completed;
    if (isCount(s.serviceMs) && s.serviceMs > 0) {
      const w = Math.max(1, completed);
      acc.serviceSum += s.serviceMs * w;
      acc.serviceWeight += w;
    }
  }
  return byName;
}

const noTraffic: Combined = { concurrency: 0, requests: 0, pending: undefined, queued: 0, completed: 0, serviceSum: 0, serviceWeight: 0 };

function isCount(n: unknown): n is number {
  return typeof n === 'number' && Number.isFinite(n) && n >= 0;
}

/** One collection with failures as not answered, and a bare array as one gateway that answered. */
function asCollection(reply: StatsCollection | FunctionSample[]): StatsCollection {
  if (Array.isArray(reply)) return { samples: reply, answered: 1, expected: 1 };
  const answered = isCount(reply.answered) ? Math.floor(reply.answered) : 0;
  const expected = isCount(reply.expected) ? Math.max(answered, Math.floor(reply.expected)) : answered;
  return {
    samples: Array.isArray(reply.samples) ? reply.samples : [],
    answered,
    expected,
    ...(Array.isArray(reply.backfill) ? { backfill: reply.backfill } : {}),
  };
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
  readonly #demand: boolean;
  readonly #onActivation: AutoscalerOptions['onActivation'];
  #active: boolean;
  #ticks = 0;
  /** Gateways the last collection meant to read: a poke from one stands for this many queues. */
  #expected = 1;
  readonly #tracked = new Map<string, Tracked>();
  readonly #pokes = new Map<string, Promise<void>>();
  /** Scale calls made by decisions and not answered yet: one per function, never awaited by a tick. */
  readonly #scaling = new Map<string, Promise<void>>();
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
    this.#demand = (options.mode ?? 'demand') === 'demand';
    this.#decideEveryMs = options.decideEveryMs ?? (this.#demand ? 1000 : 2000);
    this.#log = options.logger;
    this.#config = options.config;
    this.#onActivation = options.onActivation;
    this.#active = options.active ?? true;
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
    this.#ticks++;
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
    if (expected > 0) this.#expected = expected;
    const byName = combine(collections.flatMap((c) => c.samples));
    const backfill = this.#demand ? backfillByAge(collections, expected) : [];
    const live = new Set<string>();
    for (const fn of functions) {
      live.add(fn.spec.name);
      const t = this.#trackedFor(fn, now, this.#starting);
      this.#observeStartups(t, fn, now);
      // Seconds from the gateways' rings, older than anything this window holds: a new
      // autoscaler's first decision then reads a full window.
      const ownSince = t.window.firstKnownMs;
      for (const b of backfill) {
        const at = now - b.ageMs;
        if (ownSince !== undefined && at >= ownSince) continue;
        this.#file(t, at, b.byName.get(fn.spec.name) ?? noTraffic, b.share);
      }
      if (!known) continue;
      this.#file(t, now, byName.get(fn.spec.name) ?? noTraffic, share);
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
   * Files one second of `fn`'s combined samples. The demand decider's windows hold demand:
   * arrivals x the service-time estimate (Little's law: the in-flight requests the arrivals need,
   * whatever waits in a queue), and, while that estimate is young, the requests in flight at
   * replicas (the queue left out). Knative's hold the gateways' in-flight count, queue included.
   */
  #file(t: Tracked, at: number, c: Combined, share: number): void {
    if (this.#demand) {
      if (c.serviceWeight > 0) {
        const ms = c.serviceSum / c.serviceWeight;
        t.serviceMs = ms;
        t.serviceSamples = Math.min(1_000_000, t.serviceSamples + Math.max(1, c.completed));
      }
      if (t.latest === undefined || at >= t.latest.at) t.latest = { requests: c.requests * share, queued: c.queued * share, at };
      t.window.add(at, this.#demandOf(t, c) * share, c.requests * share, c.pending);
    } else {
      t.window.add(at, c.concurrency * share, c.requests * share, c.pending);
    }
  }

  #serviceKnown(t: Tracked): boolean {
    return t.serviceMs !== undefined && t.serviceSamples >= minServiceSamples;
  }

  #demandOf(t: Tracked, c: Combined): number {
    if (this.#serviceKnown(t)) return (c.requests * t.serviceMs!) / 1000;
    return Math.max(0, c.concurrency - c.queued);
  }

  /**
   * The backlog term in the metric's unit: what serves the arrivals and drains `queued` within
   * the horizon, the function's start-up (p50) plus a decision interval: replicas asked for now
   * help only from then on. Undefined without a service-time estimate (concurrency: nothing says
   * what a queued request costs) or without a recent reading.
   */
  #backlogValue(t: Tracked, now: number, queued?: number): number | undefined {
    const latest = t.latest && now - t.latest.at <= 2 * this.#tickMs ? t.latest : undefined;
    const q = Math.max(queued ?? 0, latest?.queued ?? 0);
    const rate = latest?.requests ?? 0;
    const horizonS = (this.#startupP(t, 0.5, 1000) + this.#decideEveryMs) / 1000;
    const perSecond = rate + q / horizonS;
    if (t.settings.metric === 'rps') return perSecond;
    if (!this.#serviceKnown(t)) return undefined;
    return (perSecond * t.serviceMs!) / 1000;
  }

  /** Whether a recent reading (within two ticks) had requests waiting in a gateway's queue. */
  #queuedNow(t: Tracked, now: number): boolean {
    return t.latest !== undefined && now - t.latest.at <= 2 * this.#tickMs && t.latest.queued > 0;
  }

  /** The q-quantile of the measured start-ups, ms; `prior` before any. */
  #startupP(t: Tracked, q: number, prior: number): number {
    if (t.startups.length === 0) return prior;
    const sorted = [...t.startups].sort((a, b) => a - b);
    return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
  }

  /**
   * Start-ups: replicas asked for are stamped when asked (by this autoscaler) or when first seen
   * starting; one that turns ready gives a start-up time. An activation whose oldest start has
   * waited past twice the p99 start-up (10 s before any was measured), or that has replicas the
   * nodes have no room for, is stalled: no replica is added until one becomes ready.
   */
  #observeStartups(t: Tracked, fn: ScaledFunction, now: number): void {
    const starting = Math.max(0, fn.replicas - fn.readyReplicas);
    for (let k = fn.readyReplicas - t.lastReady; k > 0 && t.starts.length > 0; k--) {
      const at = t.starts.shift()!;
      t.startups.push(now - at);
      if (t.startups.length > startupSamplesKept) t.startups.shift();
    }
    // Scale-downs remove starting replicas first, newest first.
    if (t.starts.length > starting) t.starts.length = starting;
    while (t.starts.length < starting) t.starts.push(now);
    const rose = fn.readyReplicas > t.lastReady;
    t.lastReady = fn.readyReplicas;
    if (fn.readyReplicas >= Math.max(1, fn.spec.scale.initial)) t.initialReached = true;
    // Until `initial` is reached this autoscaler never asks for fewer, so a count that falls below
    // it is an operator's scale (`fn scale`), and the operator wins.
    if (fn.replicas < t.lastReplicas && fn.replicas < fn.spec.scale.initial) t.initialReached = true;
    t.lastReplicas = fn.replicas;
    if (!this.#demand) return;
    let stall: string | undefined;
    if (starting > 0 && !rose) {
      const after = t.startups.length > 0 ? Math.max(minStallAfterMs, 2 * this.#startupP(t, 0.99, 0)) : defaultStallAfterMs;
      const waited = now - t.starts[0]!;
      if ((fn.unschedulable ?? 0) > 0) {
        stall = `${fn.unschedulable} of ${starting} replicas asked for have no room on the nodes (unschedulable)`;
      } else if (waited > after) {
        stall = `no replica became ready within ${seconds(after)} (${t.startups.length > 0 ? 'twice its p99 start-up' : 'no start-up measured yet'}); ${starting} asked for, waiting ${seconds(waited)}`;
      }
    }
    if ((stall === undefined) === (t.stall === undefined)) {
      if (stall !== undefined) t.stall = { ...t.stall!, reason: stall };
      return;
    }
    t.stall = stall === undefined ? undefined : { reason: stall, since: new Date(now).toISOString() };
    if (stall !== undefined) this.#log?.warn('activation stalled: adding no replicas until one becomes ready', { function: fn.spec.name, reason: stall });
    else this.#log?.info('activation no longer stalled', { function: fn.spec.name });
    this.#onActivation?.(fn.spec.name, t.stall);
  }

  /**
   * Active: decisions are carried out (scale calls) from the next one on. Passive: they are made
   * and kept, not carried out; a poke is refused (the caller tries another replica).
   */
  setActive(active: boolean): void {
    this.#active = active;
  }

  get active(): boolean {
    return this.#active;
  }

  /** Ticks begun, and decisions made per function: whether it keeps deciding (an outage, a standby). */
  progress(): { active: boolean; ticks: number; decided: Record<string, number> } {
    const decided: Record<string, number> = {};
    for (const [name, t] of this.#tracked) decided[name] = t.decisions;
    return { active: this.#active, ticks: this.#ticks, decided };
  }

  /** Why `name`'s activation is stalled, if it is. */
  activation(name: string): ActivationStall | undefined {
    return this.#tracked.get(name)?.stall;
  }

  /**
   * A gateway holds requests for `name` that no replica took: none is ready (a cold start), or
   * its queue outgrew the replicas. Decides for `name` now instead of at the next round, and only
   * ever scales up: from zero to at least max(1, min), and with the demand decider to what the
   * backlog term wants for `body.queued` (times the gateways: each holds its own queue).
   * Concurrent pokes share one decision.
   */
  poke(name: string, body: PokeBody = {}): Promise<void> {
    const pending = this.#pokes.get(name);
    if (pending) return pending;
    const p = (async () => {
      const fn = (await this.#target.list()).find((f) => f.spec.name === name);
      if (!fn) return;
      const now = this.#clock.now();
      const t = this.#trackedFor(fn, now);
      if (!this.#demand) {
        if (fn.replicas > 0) return;
        // Restart the grace period, so the replica started for this request is not culled by a
        // decision made on samples from before it arrived.
        t.state = { ...t.state, zeroSince: now };
        const n = Math.max(1, fn.spec.scale.min);
        this.#log?.info('scaling from zero', { function: name, replicas: n });
        await this.#target.scale(name, n);
        return;
      }
      if (fn.replicas === 0) t.state = { ...t.state, zeroSince: now };
      const queued = isCount(body.queued) ? Math.max(1, body.queued) * this.#expected : this.#expected;
      await this.#decideAndScale(fn, now, [], [], queued);
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
        decisions: 0,
        restartPanic,
        holding: false,
        serviceMs: undefined,
        serviceSamples: 0,
        latest: undefined,
        starts: [],
        lastReady: fn.readyReplicas,
        startups: [],
        stall: undefined,
        // Found running by a restarted autoscaler: whatever `initial` was, it has been served.
        initialReached: found,
        lastReplicas: fn.replicas,
      };
      this.#tracked.set(fn.spec.name, t);
    } else if (t.scale !== fn.spec.scale) {
      t.scale = fn.spec.scale;
      t.settings = settingsFromSpec(fn.spec.scale, this.#config);
      t.window.resize(windowSpanMs(t.settings));
    }
    return t;
  }

  /**
   * One decision for `fn`, and the scale call when it changes the count. `poked`: a poke's queue
   * (all gateways): the decision may only raise the count, and from zero gives at least one.
   */
  async #decideAndScale(fn: ScaledFunction, now: number, held: string[], resumed: string[], poked?: number): Promise<void> {
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
        ...(this.#demand
          ? {
              backlogValue: this.#backlogValue(t, now, poked),
              stalled: t.stall !== undefined,
              // `initial` keeps the count from falling below it until it has been reached; it never
              // raises a count (the driver creates the function at `initial`).
              // A request waiting in a gateway's queue keeps (or brings) one replica, whatever the
              // windows say: with no service time measured yet it is no demand in them, and a lost
              // poke must not leave it waiting for its timeout, nor a decision take its replica.
              floor: Math.max(
                t.initialReached ? 0 : Math.min(fn.spec.scale.initial, fn.replicas),
                (poked !== undefined && fn.replicas === 0) || this.#queuedNow(t, now) ? 1 : 0,
              ),
            }
          : {}),
      },
      settings,
      now,
    );
    t.state = state;
    t.last = decision;
    t.decisions++;
    const holding = decision.holding === true;
    if (holding !== t.holding) (holding ? held : resumed).push(fn.spec.name);
    t.holding = holding;
    let desired = decision.desired;
    if (poked !== undefined) {
      // A poke only ever adds; from zero it brings one replica even with no data at all.
      desired = Math.max(desired ?? 0, fn.replicas, fn.replicas === 0 ? Math.max(1, fn.spec.scale.min) : 0);
      if (settings.maxScale > 0) desired = Math.min(desired, Math.max(settings.maxScale, fn.replicas));
    } else if (this.#pokes.has(fn.spec.name) || this.#scaling.has(fn.spec.name)) {
      // The count is about to change: the next decision sees where it landed.
      return;
    }
    if (desired === undefined || desired === fn.replicas) return;
    // A standby decides (its state follows the traffic) and leaves the scaling to the leader.
    if (!this.#active) return;
    this.#log?.info(fn.replicas === 0 ? 'scaling from zero' : 'scaling', {
      function: fn.spec.name,
      from: fn.replicas,
      to: desired,
      panicking: decision.panicking,
      ...(decision.pendingWant ? { pendingWant: decision.pendingWant } : {}),
      ...(decision.backlogWant ? { backlogWant: decision.backlogWant } : {}),
      ...(poked !== undefined ? { poke: { queued: poked } } : {}),
    });
    for (let k = fn.replicas; k < desired; k++) t.starts.push(now);
    const name = fn.spec.name;
    if (poked !== undefined) {
      await this.#target.scale(name, desired);
      return;
    }
    // Not awaited: a scale call that hangs (an API server that does not answer) holds only its
    // own function, never the tick that collects and decides for every other.
    const to = desired;
    const call = Promise.resolve()
      .then(() => this.#target.scale(name, to))
      .catch((err: unknown) => this.#log?.warn('scaling failed', { function: name, to, err: String(err) }))
      .finally(() => this.#scaling.delete(name));
    this.#scaling.set(name, call);
  }

  /** Resolves when every scale call made so far has answered (for tests and shutdown). */
  async settled(): Promise<void> {
    await Promise.all([...this.#scaling.values()]);
  }
}

/** What a function's window must keep: its stable window (the panic window is a part of it). */
function windowSpanMs(s: ScaleSettings): number {
  return Math.max(1000, s.stableWindowMs, s.panicWindowMs);
}

/** One second of the gateways' rings, combined across gateways by age (whole seconds). */
interface BackfillBucket {
  ageMs: number;
  byName: Map<string, Combined>;
  /** expected / answered for this second. */
  share: number;
}

/** The backfill seconds of a tick's collections, oldest first. */
function backfillByAge(collections: StatsCollection[], expected: number): BackfillBucket[] {
  const byAge = new Map<number, { samples: FunctionSample[]; answered: number }>();
  for (const c of collections) {
    for (const b of c.backfill ?? []) {
      if (!isCount(b.ageMs) || !Array.isArray(b.samples)) continue;
      const age = Math.round(b.ageMs / 1000) * 1000;
      if (age <= 0) continue;
      const acc = byAge.get(age) ?? { samples: [], answered: 0 };
      acc.samples.push(...b.samples);
      acc.answered += isCount(b.answered) ? b.answered : 1;
      byAge.set(age, acc);
    }
  }
  return [...byAge.entries()]
    .sort((a, b) => b[0] - a[0])
    .map(([ageMs, x]) => ({ ageMs, byName: combine(x.samples), share: Math.max(1, expected) / Math.max(1, x.answered) }));
}

/** "4.2 s" */
function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}
