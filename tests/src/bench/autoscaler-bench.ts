// What the autoscaler's per-function history costs at 1,000 functions: heap for the metric
// windows, and CPU per decision round (the stable and panic averages, the pending readings and
// the decision for every function), for the ring of numbers (MetricWindow) against the one-bucket-
// object-per-second window it replaced (kept below as BucketWindow, for the comparison only), and
// for whole rounds of the real Autoscaler (collect + decide) with a stats source in process.
//
//   npm run bench:autoscaler [-- --functions 1000 --rounds 50 --json]
//
// Heap needs --expose-gc (the npm script passes it). Writes bench-results/autoscaler.json.

import { Autoscaler, decide, initialDeciderState, MetricWindow, settingsFromSpec, type ScaledFunction, type ScaleTarget } from '@kubefn/autoscaler';
import { parseFunctionSpec } from '@kubefn/platform';
import { writeBenchResults } from './results.js';

interface Window {
  add(t: number, concurrency: number, requests: number, pending?: number): void;
  average(now: number, windowMs: number, metric: 'concurrency' | 'rps'): number | undefined;
  pendingAverage(now: number, windowMs: number): number | undefined;
  pendingLatest(now: number, withinMs: number): number | undefined;
  observedMs(now: number): number;
}

/** The window before the ring: a bucket object per second for an hour, averages that walk them all. */
class BucketWindow implements Window {
  #buckets: { t: number; concurrency: number; requests: number; pending?: number }[] = [];
  constructor(private readonly capacityMs: number) {}
  add(t: number, concurrency: number, requests: number, pending?: number): void {
    const second = Math.floor(t / 1000) * 1000;
    const last = this.#buckets.at(-1);
    if (last && last.t === second) {
      last.concurrency += concurrency;
      last.requests += requests;
      if (pending !== undefined) last.pending = Math.max(last.pending ?? 0, pending);
    } else {
      this.#buckets.push(pending === undefined ? { t: second, concurrency, requests } : { t: second, concurrency, requests, pending });
    }
    const oldest = second - this.capacityMs;
    while (this.#buckets.length > 0 && this.#buckets[0]!.t <= oldest) this.#buckets.shift();
  }
  average(now: number, windowMs: number, metric: 'concurrency' | 'rps'): number | undefined {
    const from = now - windowMs;
    let sum = 0;
    let first = Infinity;
    let n = 0;
    for (const b of this.#buckets) {
      if (b.t <= from || b.t > now) continue;
      sum += metric === 'concurrency' ? b.concurrency : b.requests;
      first = Math.min(first, b.t);
      n++;
    }
    if (n === 0) return undefined;
    const span = Math.max(n, Math.floor((now - first) / 1000) + 1);
    return sum / Math.min(span, Math.ceil(windowMs / 1000));
  }
  pendingAverage(now: number, windowMs: number): number | undefined {
    let sum = 0;
    let n = 0;
    for (const b of this.#buckets) {
      if (b.t <= now - windowMs || b.t > now || b.pending === undefined) continue;
      sum += b.pending;
      n++;
    }
    return n === 0 ? undefined : sum / n;
  }
  pendingLatest(now: number, withinMs: number): number | undefined {
    for (let i = this.#buckets.length - 1; i >= 0; i--) {
      const b = this.#buckets[i]!;
      if (b.t > now) continue;
      if (b.t <= now - withinMs) return undefined;
      if (b.pending !== undefined) return b.pending;
    }
    return undefined;
  }
  observedMs(now: number): number {
    const first = this.#buckets[0];
    return first ? Math.max(0, now - first.t) : 0;
  }
}

const args = process.argv.slice(2);
const option = (name: string, fallback: number): number => {
  const i = args.indexOf(`--${name}`);
  const v = i >= 0 ? Number(args[i + 1]) : fallback;
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} must be a positive number`);
  return v;
};
const functions = option('functions', 1000);
const rounds = option('rounds', 50);
const json = args.includes('--json');
const gc = (globalThis as { gc?: () => void }).gc;

const settings = settingsFromSpec(parseFunctionSpec({ name: 'f' }).scale);
const start = 1_000_000_000_000;

function heapUsed(): number {
  gc?.();
  gc?.();
  return process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers;
}

/** Heap for `functions` windows, each filled with `seconds` of samples; and CPU per decision round. */
function measure(make: () => Window, seconds: number) {
  const before = heapUsed();
  const windows: Window[] = [];
  for (let f = 0; f < functions; f++) {
    const w = make();
    for (let s = 1; s <= seconds; s++) w.add(start + s * 1000, 10 + (f % 7), 100 + (s % 13));
    windows.push(w);
  }
  const heapBytes = heapUsed() - before;
  const now = start + seconds * 1000;
  const state = initialDeciderState();
  let sink = 0;
  const round = () => {
    for (const w of windows) {
      const { decision } = decide(
        state,
        {
          stableValue: w.average(now, settings.stableWindowMs, settings.metric),
          panicValue: w.average(now, settings.panicWindowMs, settings.metric),
          pendingLatest: w.pendingLatest(now, settings.panicWindowMs),
          pendingAverage: w.pendingAverage(now, settings.stableWindowMs),
          readyReplicas: 1,
          currentReplicas: 1,
          observedMs: w.observedMs(now),
        },
        settings,
        now,
      );
      sink += decision.desired ?? 0;
    }
  };
  round(); // warm up
  const cpu = process.cpuUsage();
  for (let r = 0; r < rounds; r++) round();
  const used = process.cpuUsage(cpu);
  if (sink < 0) console.log(sink);
  return { heapBytes, perFunctionBytes: heapBytes / functions, cpuMsPerRound: (used.user + used.system) / 1000 / rounds, windows };
}

/** Whole ticks of the real Autoscaler: list, collect from one gateway, file, decide every tick. */
async function autoscalerRounds() {
  const specs = Array.from({ length: functions }, (_, i) => parseFunctionSpec({ name: `fn-${i}` }));
  const list: ScaledFunction[] = specs.map((spec) => ({ spec, replicas: 1, readyReplicas: 1 }));
  const target: ScaleTarget = { list: async () => list, scale: async () => {} };
  const samples = specs.map((s, i) => ({ name: s.name, concurrency: 50 + (i % 20), requests: 300 }));
  let now = start;
  const before = heapUsed();
  const autoscaler = new Autoscaler({
    target,
    sources: [{ collect: () => ({ samples, answered: 1, expected: 1 }) }],
    clock: { now: () => now },
    decideEveryMs: 1,
  });
  // Fill a stable window first.
  for (let s = 0; s < 61; s++) {
    now += 1000;
    await autoscaler.tick();
  }
  const heapBytes = heapUsed() - before;
  const cpu = process.cpuUsage();
  for (let r = 0; r < rounds; r++) {
    now += 1000;
    await autoscaler.tick();
  }
  const used = process.cpuUsage(cpu);
  return { heapBytes, cpuMsPerRound: (used.user + used.system) / 1000 / rounds, keep: autoscaler };
}

const mib = (b: number) => (b / 1024 / 1024).toFixed(2);

const ring = measure(() => new MetricWindow(settings.stableWindowMs), 3600);
const ringResult = { heapBytes: ring.heapBytes, perFunctionBytes: ring.perFunctionBytes, cpuMsPerRound: ring.cpuMsPerRound };
ring.windows.length = 0;
const buckets = measure(() => new BucketWindow(3_600_000), 3600);
const bucketResult = { heapBytes: buckets.heapBytes, perFunctionBytes: buckets.perFunctionBytes, cpuMsPerRound: buckets.cpuMsPerRound };
buckets.windows.length = 0;
const whole = await autoscalerRounds();

const results = {
  functions,
  rounds,
  stableWindowMs: settings.stableWindowMs,
  heapMeasured: gc !== undefined,
  ring: ringResult,
  buckets: bucketResult,
  autoscaler: { heapBytes: whole.heapBytes, cpuMsPerRound: whole.cpuMsPerRound },
};
const file = await writeBenchResults('autoscaler', results);

if (json) {
  console.log(JSON.stringify(results));
} else {
  if (!gc) console.log('(no --expose-gc: heap numbers are rough)');
  console.log(`${functions} functions, ${rounds} rounds, stable window ${settings.stableWindowMs / 1000} s, windows filled with an hour of samples`);
  console.log('what                              heap MiB   bytes/function   CPU ms/round');
  const row = (what: string, r: { heapBytes: number; cpuMsPerRound: number }, per?: number) =>
    console.log(`${what.padEnd(34)}${mib(r.heapBytes).padStart(8)}   ${(per === undefined ? '' : per.toFixed(0)).padStart(14)}   ${r.cpuMsPerRound.toFixed(2).padStart(12)}`);
  row('ring window (MetricWindow)', ringResult, ringResult.perFunctionBytes);
  row('bucket objects (before)', bucketResult, bucketResult.perFunctionBytes);
  row('Autoscaler tick (collect+decide)', results.autoscaler, results.autoscaler.heapBytes / functions);
  console.log(`results: ${file}`);
}
