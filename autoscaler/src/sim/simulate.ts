// Runs one scenario: the real Autoscaler loop (collect every 1 s, decide every 2 s, poke from
// zero), with the real MetricWindow, decider and settings, against the Cluster model, in
// simulated time, with the failures asked for: several gateways, failed scrapes, an autoscaler
// restart, too little room on the nodes, slow or never-ready start-ups. Deterministic for a seed.

import { KubefnError, parseFunctionSpec, type BackfillSecond, type FunctionSample, type FunctionSpec } from '@kubefn/platform';
import type { ScaleTarget, StatsSource } from '../autoscaler.js';
import { ManualClock } from '../clock.js';
import type { ScaleSettings } from '../decider.js';
import { settingsFromSpec } from '../settings.js';
import { MetricWindow } from '../window.js';
import { defaultDecider, deciders, type SimAutoscaler } from './deciders.js';
import {
  defaultFailedScrape, failedScrapePolicies, scrapeFailedCode, scrapeFails, startupSampler, type Blackout, type Startup,
} from './faults.js';
import { Cluster, type SecondStats, type Totals } from './model.js';
import { exponential, poissonArrivals, seededRandom } from './rng.js';
import type { Scenario } from './scenarios.js';

export interface SimOptions {
  seed: number;
  /** From scheduling (the scale call, when the nodes have room) to a ready replica, drawn per replica. */
  startup: Startup;
  /** Mean service time of one request, ms. */
  serviceMs: number;
  /** `fixed`: every request takes serviceMs; `exp`: exponential with that mean. */
  serviceDist: 'fixed' | 'exp';
  /** Requests one replica serves at once; default the spec's containerConcurrency if > 0, else the scenario's, else 10. */
  capacity?: number;
  /** Gateway queue bound (Knative's activator: 10 000). */
  queueDepth: number;
  /** How often the Autoscaler decides, ms; undefined: the decider's own default (demand 1000, knative 2000). */
  decideEveryMs?: number;
  stepMs: number;
  /** The function's `scale` overrides, validated by parseFunctionSpec like a fn.yaml. */
  scale: Record<string, unknown>;
  /** Gateways: each gets an equal share of the arrivals (a Poisson split), has its own queue of queueDepth and its own stats. */
  gateways: number;
  /** Replicas the nodes hold; those beyond never become ready. Undefined: unlimited. */
  nodeCapacity?: number;
  /** Seconds at which the autoscaler restarts: its windows and decider state start empty. */
  restartAtS: number[];
  /** Failed scrapes. */
  blackouts: Blackout[];
  /** What a failed scrape contributes: a key of failedScrapePolicies. */
  failedScrape: string;
  /** The autoscaler: a key of deciders. */
  decider: string;
}

export const defaultSimOptions: SimOptions = {
  seed: 1,
  startup: { kind: 'fixed', ms: 500 },
  serviceMs: 100,
  serviceDist: 'fixed',
  queueDepth: 10_000,
  stepMs: 10,
  scale: {},
  gateways: 1,
  restartAtS: [],
  blackouts: [],
  failedScrape: defaultFailedScrape,
  decider: defaultDecider,
};

/** One second [t, t + 1) of traffic; replica counts as of its end, after that second's decision. */
export interface Row extends SecondStats {
  t: number;
  /** Window means at the end of the second, in the metric's unit (the decider reads them every 2 s). */
  stable: number | undefined;
  panic: number | undefined;
  desired: number;
  ready: number;
  /** Asked for and not ready (starting, pending or never ready). */
  starting: number;
  /** Of `starting`, those with no room on the nodes. */
  pending: number;
  panicking: boolean;
  /** Gateways whose scrape at the end of this second failed. */
  failedScrapes: number;
  /** The autoscaler restarted at the end of this second (before its collection). */
  restarted: boolean;
  /** The autoscaler calls the activation stalled at the end of this second. */
  stalled: boolean;
  /** The scenario's rate averaged over the second: the load without Poisson noise. */
  expectedRps: number;
}

export interface SimResult {
  scenario: Scenario;
  options: SimOptions;
  spec: FunctionSpec;
  settings: ScaleSettings;
  capacity: number;
  rows: Row[];
  totals: Totals & { inFlightAtEnd: number; queuedAtEnd: number; waitingOver1sAtEnd: number; p99WaitMs: number };
  /** The start of the biggest one-second rise of the expected rate, s. */
  riseAtS: number;
  /** When ready x capacity first covered the offered in-flight load (> 0) from riseAtS on, ms; undefined if never. */
  capacityAtMs: number | undefined;
}

/** Mean offered rate per second, sampled at the steps the arrivals are drawn at. */
export function expectedRates(scenario: Scenario, stepMs: number): number[] {
  const perSecond = Math.round(1000 / stepMs);
  return Array.from({ length: scenario.durationS }, (_, s) => {
    let sum = 0;
    for (let k = 0; k < perSecond; k++) sum += scenario.rate(s + (k * stepMs) / 1000);
    return sum / perSecond;
  });
}

/**
 * The second at which the expected rate rises most from the second before (from 0 before the
 * start); the first of equal rises (within 0.1 req/s), so a linear ramp gives its start.
 */
export function biggestRise(expected: number[]): number {
  let at = 0;
  let best = -Infinity;
  expected.forEach((r, s) => {
    const rise = r - (expected[s - 1] ?? 0);
    if (rise > best + 0.1) [best, at] = [rise, s];
  });
  return at;
}

export async function simulate(scenario: Scenario, options: Partial<SimOptions> = {}): Promise<SimResult> {
  const o: SimOptions = { ...defaultSimOptions, ...options, scale: { ...scenario.scale, ...options.scale } };
  if (1000 % o.stepMs !== 0) throw new Error(`stepMs must divide 1000 (got ${o.stepMs})`);
  const entry = deciders[o.decider];
  if (!entry) throw badOption(`no decider ${JSON.stringify(o.decider)}; there are ${Object.keys(deciders).join(', ')}`);
  const policy = failedScrapePolicies[o.failedScrape];
  if (!policy) {
    throw badOption(`no failed-scrape policy ${JSON.stringify(o.failedScrape)}; there are ${Object.keys(failedScrapePolicies).join(', ')}`);
  }
  if (!Number.isInteger(o.gateways) || o.gateways < 1 || o.gateways > 100) throw badOption(`gateways must be a whole number from 1 to 100 (got ${o.gateways})`);
  for (const b of o.blackouts) {
    if (b.gateway !== undefined && b.gateway > o.gateways) throw badOption(`blackout of gateway ${b.gateway}, but there are ${o.gateways} gateways`);
  }
  if (o.nodeCapacity !== undefined && !(Number.isInteger(o.nodeCapacity) && o.nodeCapacity >= 0)) {
    throw badOption(`node capacity must be a whole number >= 0 (got ${o.nodeCapacity})`);
  }
  const spec = parseFunctionSpec({ name: 'sim', scale: o.scale });
  const settings = settingsFromSpec(spec.scale);
  const cc = spec.scale.containerConcurrency ?? 0;
  const capacity = o.capacity ?? (cc > 0 ? cc : (scenario.capacity ?? 10));
  const random = seededRandom(o.seed);
  const serviceMs = o.serviceDist === 'exp' ? () => exponential(random, o.serviceMs) : () => o.serviceMs;
  // Start-ups draw from their own stream, so a distribution does not shift the arrivals.
  const drawStartup = startupSampler(o.startup, seededRandom(o.seed ^ 0x5bd1e995));
  const startupMs = scenario.neverReady ? () => Infinity : drawStartup;

  // Deployed and warm at t = 0, as the drivers start a function: max(min, initial) replicas,
  // unless the scenario starts at zero.
  const cluster = new Cluster(
    { capacity, startupMs, stepMs: o.stepMs, queueDepth: o.queueDepth, gateways: o.gateways, nodeCapacity: o.nodeCapacity, warm: !scenario.neverReady },
    scenario.initialReplicas ?? Math.max(settings.minScale, spec.scale.initial ?? 1),
  );
  const clock = new ManualClock(0);
  const target: ScaleTarget = {
    list: async () => [{ spec, replicas: cluster.desired, readyReplicas: cluster.ready, ...(cluster.pending > 0 ? { unschedulable: cluster.pending } : {}) }],
    scale: async (_name, n) => cluster.scaleTo(n, clock.now()),
  };
  // What each gateway's ConcurrencyStats reports: mean in flight including its queue, and
  // requests counted on arrival (rejected ones too, as the gateway counts before queueing),
  // since its last successful scrape. A failed scrape contributes what the policy says.
  let second: SecondStats = { arrived: 0, served: 0, rejected: 0, inFlight: 0, queued: 0 };
  let failedScrapes = 0;
  const lastGood: (FunctionSample[] | undefined)[] = [];
  // Each gateway's ring: its last stable window of closed seconds, newest last, and when each ended.
  const ringSeconds = Math.ceil(settings.stableWindowMs / 1000);
  const rings: { at: number; sample: FunctionSample }[][] = Array.from({ length: o.gateways }, () => []);
  // A new autoscaler's first collection backfills from the rings.
  let fresh = true;
  // The Autoscaler's windows are private and its Decision carries only the wants, so a mirror
  // window fed the same samples gives the CSV's stable and panic columns; a restart empties it.
  let mirror = new MetricWindow(settings.stableWindowMs + 1000);
  const source: StatsSource = {
    collect: (now) => {
      const samples: FunctionSample[] = [];
      let answered = 0;
      for (let g = 0; g < cluster.gateways; g++) {
        if (scrapeFails(o.blackouts, g, now)) {
          const failed = policy.contributes({ gateway: g, last: lastGood[g] });
          samples.push(...failed.samples);
          if (failed.answered) answered++;
          continue;
        }
        const got = [{ name: 'sim', ...cluster.scrape(g, now) }];
        lastGood[g] = got;
        samples.push(...got);
        answered++;
      }
      const sum = samples.reduce((a, x) => ({ c: a.c + x.concurrency, r: a.r + x.requests }), { c: 0, r: 0 });
      if (answered > 0) mirror.add(now, (sum.c * cluster.gateways) / answered, (sum.r * cluster.gateways) / answered);
      const backfill = fresh ? backfillOf(now) : undefined;
      fresh = false;
      return { samples, answered, expected: cluster.gateways, ...(backfill ? { backfill } : {}) };
    },
  };
  /** The rings' seconds before this one, of the gateways that answer now, combined by age, oldest first. */
  const backfillOf = (now: number): BackfillSecond[] => {
    const byAt = new Map<number, BackfillSecond>();
    rings.forEach((ring, g) => {
      if (scrapeFails(o.blackouts, g, now)) return;
      for (const { at, sample } of ring) {
        if (at >= now) continue;
        const b = byAt.get(at) ?? { ageMs: now - at, samples: [], answered: 0 };
        b.samples.push(sample);
        b.answered++;
        byAt.set(at, b);
      }
    });
    return [...byAt.values()].sort((a, b) => b.ageMs - a.ageMs);
  };
  const create = (): SimAutoscaler => {
    fresh = true;
    return entry.create({ target, sources: [source], clock, ...(o.decideEveryMs !== undefined ? { decideEveryMs: o.decideEveryMs } : {}) });
  };
  let autoscaler = create();
  const restarts = new Set(o.restartAtS.map((s) => s * 1000));

  const expected = expectedRates(scenario, o.stepMs);
  const riseAtS = biggestRise(expected);
  const load = (s: number) => ((expected[s] ?? 0) * o.serviceMs) / 1000; // offered in flight (Little's law)
  let capacityAtMs: number | undefined;
  const rows: Row[] = [];

  const tick = async (now: number) => {
    clock.set(now);
    second = cluster.takeSecond(1000);
    const restarted = restarts.has(now);
    if (restarted) {
      // A new process: empty windows, fresh decider state; it decides at its first collection.
      autoscaler = create();
      mirror = new MetricWindow(settings.stableWindowMs + 1000);
    }
    failedScrapes = 0;
    for (let g = 0; g < cluster.gateways; g++) {
      if (scrapeFails(o.blackouts, g, now)) failedScrapes++;
      // The gateway closes its second whether or not it is scraped.
      const ring = rings[g]!;
      ring.push({ at: now, sample: { name: 'sim', ...cluster.closeSecond(g, now) } });
      if (ring.length > ringSeconds) ring.shift();
    }
    try {
      await autoscaler.tick();
    } catch (err) {
      // A source that throws fails the whole tick; Autoscaler.start logs it and goes on.
      if ((err as { code?: unknown }).code !== scrapeFailedCode) throw err;
    }
    const s = now / 1000 - 1;
    rows.push({
      t: s,
      ...second,
      stable: mirror.average(now, settings.stableWindowMs, settings.metric),
      panic: mirror.average(now, settings.panicWindowMs, settings.metric),
      desired: cluster.desired,
      ready: cluster.ready,
      starting: cluster.starting,
      pending: cluster.pending,
      panicking: autoscaler.lastDecision('sim')?.panicking ?? false,
      stalled: autoscaler.activation?.('sim') !== undefined,
      failedScrapes,
      restarted,
      expectedRps: expected[s] ?? 0,
    });
  };

  const lastPoke = new Array<number>(o.gateways).fill(0);
  const endMs = scenario.durationS * 1000;
  for (let t = 0; t < endMs; t += o.stepMs) {
    clock.set(t);
    if (t > 0 && t % 1000 === 0) await tick(t);
    cluster.advance(t);
    const s = Math.floor(t / 1000);
    // Capacity counts while there is load: a load that stops first never had it.
    if (capacityAtMs === undefined && s >= riseAtS && load(s) > 0 && cluster.ready * capacity >= load(s)) capacityAtMs = t;
    // Each gateway gets an equal share: a split Poisson process is Poisson at the share's rate.
    const share = scenario.rate(t / 1000) / 1000 / cluster.gateways;
    for (let g = 0; g < cluster.gateways; g++) {
      const cold = cluster.arrive(t, poissonArrivals(random, share, o.stepMs), g);
      // A gateway pokes when a request finds no ready replica, with its queue: once, and again
      // each time its queue has doubled while none is ready (one poke in flight per function).
      if (!cold) {
        if (cluster.anyReady) lastPoke[g] = 0;
        continue;
      }
      const queued = cluster.queuedAt(g);
      if (queued >= Math.max(1, 2 * lastPoke[g]!)) {
        lastPoke[g] = queued;
        await autoscaler.poke('sim', { queued });
      }
    }
    cluster.dispatch(t, serviceMs);
  }
  await tick(endMs);

  return {
    scenario,
    options: o,
    spec,
    settings,
    capacity,
    rows,
    totals: {
      ...cluster.totals,
      inFlightAtEnd: cluster.inFlight,
      queuedAtEnd: cluster.queued,
      waitingOver1sAtEnd: cluster.waitingOver1s(endMs),
      p99WaitMs: cluster.waitQuantileMs(0.99),
    },
    riseAtS,
    capacityAtMs,
  };
}

function badOption(message: string): KubefnError {
  return new KubefnError('BAD_REQUEST', message, { hint: 'see npm run sim -- --help' });
}
