// `npm run bench:events`: one function reached three ways in one run, side by side — HTTP through
// the gateway, a core NATS trigger and a JetStream trigger — each measured for throughput and
// for send-to-handler latency at fixed offered rates. Prints a table and writes events.json.
//
// The function (tests/fixtures/bench-events) runs as one replica (scale min 1, max 1), so the
// figures are about the event path, not scaling. Each message's body carries the wall clock
// (performance.timeOrigin + performance.now()) the bench read just before sending it; the
// handler subtracts it from the same clock read on its first line and keeps the result, and the
// bench reads them back over HTTP after each run (bench-function.ts), so nothing is reported
// while measuring. The two processes' clocks are compared first and the latencies corrected by
// the difference. CPU per message of the gateway (`fn up`), the replica and nats-server comes
// from /proc around each run: it moves much less than the rates on a shared machine.
//
// Env: BENCH_MESSAGES=20000 (messages per event throughput run), BENCH_SECONDS=10 (HTTP
// closed-loop duration, and the length of each latency run), BENCH_RATE=1000 and
// BENCH_LOW_RATE=100 (offered rates of the two latency runs, msg/s), BENCH_WARMUP=2000 (messages
// per path before measuring), BENCH_CONNECTIONS=32 (HTTP closed-loop concurrency),
// BENCH_MAX_IN_FLIGHT (the jetstream trigger's maxInFlight; unset: the platform's default),
// BENCH_ROWS=http,nats,jetstream (which paths), BENCH_CPU_PROF=<dir> (run `fn up` with
// --cpu-prof into <dir> and print where its time went), BENCH_OUT (where events.json goes).

import { cpus } from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import { Pool } from 'undici';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import { waitFor } from '@kubefn/platform/testing';
import { Api } from '../support/api.js';
import { startNatsServer } from '../support/nats-server.js';
import { newHome, repoRoot, startPlatform } from '../support/platform-process.js';
import { BenchFunction, messageBody as body, wallMs } from './bench-function.js';
import { percentile } from './cold-start.js';
import { summarizeCpuProfiles } from './cpu-profile.js';
import { childrenOf, CpuMeter } from './proc-cpu.js';
import { writeBenchResults } from './results.js';

const knob = (name: string, fallback: number): number => {
  const raw = process.env[name];
  const n = raw === undefined || raw === '' ? fallback : Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a whole number of at least 1 (got ${raw})`);
  return n;
};
const settings = {
  messages: knob('BENCH_MESSAGES', 20_000),
  seconds: knob('BENCH_SECONDS', 10),
  rate: knob('BENCH_RATE', 1000),
  lowRate: knob('BENCH_LOW_RATE', 100),
  warmup: knob('BENCH_WARMUP', 2000),
  connections: knob('BENCH_CONNECTIONS', 32),
  /** The jetstream trigger's maxInFlight; unset: the platform's default. */
  maxInFlight: process.env.BENCH_MAX_IN_FLIGHT ? knob('BENCH_MAX_IN_FLIGHT', 64) : undefined,
};
const allRows = ['http', 'nats', 'jetstream'] as const;
type RowName = (typeof allRows)[number];
const rows = (process.env.BENCH_ROWS || allRows.join(',')).split(',') as RowName[];
for (const r of rows) if (!allRows.includes(r)) throw new Error(`BENCH_ROWS: unknown row "${r}" (take ${allRows.join(', ')})`);
const profileDir = process.env.BENCH_CPU_PROF ? path.resolve(process.env.BENCH_CPU_PROF) : undefined;

const fixture = path.join(repoRoot, 'tests', 'fixtures', 'bench-events');
const fnName = 'bench-events';
const natsSubject = 'bench.nats';
const jsStream = 'BENCHEV';
const jsSubject = 'bench.js';
const enc = new TextEncoder();
const round3 = (x: number) => Math.round(x * 1000) / 1000;
const settleTimeoutMs = (n: number) => 60_000 + n * 5;

type Processes = 'gateway' | 'replica' | 'natsServer';
type CpuPerMessage = Record<Processes, number | null>;

interface Throughput {
  /** Messages handled per second: HTTP, autocannon's average; events, first send to last handled. */
  msgsPerSec: number;
  sent: number;
  handled: number;
  distinct: number;
  seconds: number;
  cpuUsPerMsg: CpuPerMessage;
  [extra: string]: unknown;
}

interface Latency {
  offeredPerSec: number;
  sent: number;
  handled: number;
  p50ms: number;
  p99ms: number;
  maxms: number;
  cpuUsPerMsg: CpuPerMessage;
  [extra: string]: unknown;
}

/** One way of reaching the function. */
interface Path {
  /** Core NATS drops what arrives while its trigger has maxInFlight calls running. */
  mayDrop: boolean;
  warmUp(): Promise<void>;
  throughput(): Promise<Throughput>;
  /** Sends message `i` of a latency run; may resolve with its round trip, ms. */
  send(tag: string, i: number): Promise<number | void> | void;
  /** The gateway's count of messages this path dropped so far. */
  dropped(): Promise<number>;
  close?(): Promise<void>;
}

interface Bench {
  api: Api;
  fn: BenchFunction;
  gatewayUrl: string;
  meter: CpuMeter<Processes>;
}

/** CPU µs per handled message of each process since the meter's last mark (null: not Linux). */
function cpuPerMessage(meter: CpuMeter<Processes>, handled: number): CpuPerMessage {
  const used = meter.since();
  const out = {} as CpuPerMessage;
  for (const k of Object.keys(used) as Processes[]) out[k] = used[k] === null || handled === 0 ? null : Math.round((used[k]! * 1000) / handled);
  return out;
}

/** Calls `send(i)` for i in [0, count) at `rate` a second, whatever is due at each tick of about 1 ms; resolves with the seconds it took. */
async function paced(rate: number, count: number, send: (i: number) => void): Promise<number> {
  const start = performance.now();
  let i = 0;
  while (i < count) {
    const due = Math.min(count, Math.floor(((performance.now() - start) * rate) / 1000) + 1);
    while (i < due) send(i++);
    if (i < count) await new Promise((resolve) => setTimeout(resolve, 1));
  }
  return (performance.now() - start) / 1000;
}

/** Sends `rate * seconds` messages at `rate` a second (open loop) and reads their send-to-handler latencies. */
async function latencyRun(b: Bench, p: Path, tag: string, rate: number): Promise<Latency> {
  const n = rate * settings.seconds;
  const droppedBefore = await p.dropped();
  const roundTrips: number[] = [];
  const pending: Promise<unknown>[] = [];
  b.meter.mark();
  const seconds = await paced(rate, n, (i) => {
    const sent = p.send(tag, i);
    if (sent) pending.push(sent.then((ms) => typeof ms === 'number' && roundTrips.push(ms)));
  });
  await Promise.all(pending);
  const settled = await b.fn.settle(tag, n, { mayDrop: p.mayDrop, timeoutMs: settleTimeoutMs(n) });
  const cpu = cpuPerMessage(b.meter, settled.count);
  const l = (await b.fn.stats(tag, true)).latencies ?? [];
  if (l.length === 0) throw new Error(`no latencies recorded for ${tag}`);
  return {
    offeredPerSec: Math.round(n / seconds),
    sent: n,
    handled: settled.count,
    p50ms: round3(percentile(l, 50)),
    p99ms: round3(percentile(l, 99)),
    maxms: round3(Math.max(...l)),
    cpuUsPerMsg: cpu,
    ...(p.mayDrop ? { droppedAtGateway: (await p.dropped()) - droppedBefore } : {}),
    ...(roundTrips.length ? { roundTripP50ms: round3(percentile(roundTrips, 50)), roundTripP99ms: round3(percentile(roundTrips, 99)) } : {}),
  };
}

interface TriggerCounts {
  type: string;
  dropped?: number;
  acked?: number;
  retried?: number;
}

async function triggerCounts(api: Api, type: string): Promise<TriggerCounts> {
  const info = (await api.ok('GET', `/system/function/${fnName}`)) as { events: { triggers: TriggerCounts[] } };
  return info.events.triggers.find((t) => t.type === type)!;
}

function httpPath(b: Bench): Path {
  const url = `${b.gatewayUrl}/function/${fnName}`;
  const post = (tag: string) => ({ url, method: 'POST' as const, body: body(tag, 0, 0), headers: { 'content-type': 'text/plain' } });
  // Open loop: each request leaves on schedule whether or not earlier ones came back.
  const pool = new Pool(b.gatewayUrl, { connections: 128 });
  return {
    mayDrop: false,
    dropped: async () => 0,
    warmUp: async () => void (await autocannon({ ...post('http-warm'), connections: 8, amount: settings.warmup })),
    throughput: async () => {
      b.meter.mark();
      const r = await autocannon({ ...post('http-tput'), connections: settings.connections, duration: settings.seconds });
      const s = await b.fn.stats('http-tput');
      return {
        msgsPerSec: Math.round(r.requests.average),
        sent: r.requests.sent,
        // Answered within the duration; those still running at its end reached the handler too.
        answered: r.requests.total,
        handled: s.count,
        distinct: s.count,
        seconds: settings.seconds,
        cpuUsPerMsg: cpuPerMessage(b.meter, s.count),
        connections: settings.connections,
        roundTripP50ms: r.latency.p50,
        roundTripP99ms: r.latency.p99,
        errors: r.errors + r.timeouts + r.non2xx,
      };
    },
    send: async (tag, i) => {
      const t0 = performance.now();
      const res = await pool.request({ path: `/function/${fnName}`, method: 'POST', body: body(tag, i), headers: { 'content-type': 'text/plain' } });
      await res.body.text();
      if (res.statusCode !== 200) throw new Error(`POST answered ${res.statusCode}`);
      return performance.now() - t0;
    },
    close: () => pool.close(),
  };
}

function natsPath(b: Bench, nc: NatsConnection): Path {
  const dropped = async () => (await triggerCounts(b.api, 'nats')).dropped ?? 0;
  return {
    mayDrop: true,
    dropped,
    // At a pace the gateway keeps up with.
    warmUp: async () => {
      await paced(1000, settings.warmup, (i) => nc.publish(natsSubject, enc.encode(body('nats-warm', i))));
      await b.fn.settle('nats-warm', settings.warmup, { mayDrop: true, timeoutMs: settleTimeoutMs(settings.warmup) });
    },
    throughput: async () => {
      const n = settings.messages;
      const droppedBefore = await dropped();
      b.meter.mark();
      const start = wallMs();
      for (let i = 0; i < n; i++) nc.publish(natsSubject, enc.encode(body('nats-tput', i)));
      await nc.flush();
      const publishedMs = wallMs() - start;
      const s = await b.fn.settle('nats-tput', n, { mayDrop: true, timeoutMs: settleTimeoutMs(n) });
      return { ...eventThroughput(b, n, s, start, publishedMs), droppedAtGateway: (await dropped()) - droppedBefore };
    },
    send: (tag, i) => nc.publish(natsSubject, enc.encode(body(tag, i))),
  };
}

/** The throughput figures both event paths report: `n` sent from `start`, settled as `s`. */
function eventThroughput(b: Bench, n: number, s: { count: number; distinct: number; lastAt: number }, start: number, publishedMs: number) {
  const seconds = (s.lastAt - start) / 1000;
  return {
    msgsPerSec: Math.round(s.distinct / seconds),
    sent: n,
    handled: s.count,
    distinct: s.distinct,
    seconds: round3(seconds),
    cpuUsPerMsg: cpuPerMessage(b.meter, s.count),
    publishedPerSec: Math.round(n / (publishedMs / 1000)),
  };
}

/** Publishes `count` messages with at most `window` acks outstanding; resolves when all are acked. */
async function publishPipelined(js: JetStreamClient, count: number, window: number, make: (i: number) => string): Promise<void> {
  let outstanding = 0;
  let failed: unknown;
  let slot: (() => void) | undefined;
  const all: Promise<void>[] = [];
  for (let i = 0; i < count && !failed; i++) {
    while (outstanding >= window) await new Promise<void>((resolve) => (slot = resolve));
    outstanding++;
    const acked = js.publish(jsSubject, enc.encode(make(i))).then(
      () => {},
      (err: unknown) => void (failed ??= err),
    );
    all.push(
      acked.finally(() => {
        outstanding--;
        slot?.();
        slot = undefined;
      }),
    );
  }
  await Promise.all(all);
  if (failed) throw failed;
}

function jetstreamPath(b: Bench, js: JetStreamClient): Path {
  return {
    mayDrop: false,
    dropped: async () => 0,
    warmUp: async () => {
      await publishPipelined(js, settings.warmup, 256, (i) => body('js-warm', i));
      await b.fn.settle('js-warm', settings.warmup, { mayDrop: false, timeoutMs: settleTimeoutMs(settings.warmup) });
    },
    throughput: async () => {
      const n = settings.messages;
      const before = await triggerCounts(b.api, 'jetstream');
      b.meter.mark();
      const start = wallMs();
      await publishPipelined(js, n, 1024, (i) => body('js-tput', i));
      const publishedMs = wallMs() - start;
      const s = await b.fn.settle('js-tput', n, { mayDrop: false, timeoutMs: settleTimeoutMs(n) });
      const row = eventThroughput(b, n, s, start, publishedMs);
      const after = await triggerCounts(b.api, 'jetstream');
      return {
        ...row,
        handledTwice: s.count - s.distinct,
        acked: (after.acked ?? 0) - (before.acked ?? 0),
        retried: (after.retried ?? 0) - (before.retried ?? 0),
      };
    },
    send: async (tag, i) => void (await js.publish(jsSubject, enc.encode(body(tag, i)))),
  };
}

interface Row {
  throughput: Throughput;
  latency: Latency;
  latencyLow: Latency;
}

async function measure(natsUrl: string) {
  const platform = await startPlatform(await newHome(), {
    args: ['--nats', natsUrl],
    ...(profileDir ? { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] } : {}),
  });
  const api = new Api(platform.url, platform.token);
  const fn = new BenchFunction(platform.url, fnName);
  let nc: NatsConnection | undefined;
  let paths: Record<RowName, Path> | undefined;
  try {
    await api.deploy({
      name: fnName,
      image: await api.upload(fixture, 'handler.js'),
      scale: { min: 1, max: 1 },
      triggers: [{ type: 'http' }, { type: 'nats', subject: natsSubject }, { type: 'jetstream', stream: jsStream, subject: jsSubject, ...(settings.maxInFlight ? { maxInFlight: settings.maxInFlight } : {}) }],
    });
    await waitFor(async () => (await api.status(fnName)).availableReplicas >= 1, { what: `${fnName} ready` });
    type Events = { events: { triggers: { ready: boolean }[] } };
    await waitFor(async () => ((await api.ok('GET', `/system/function/${fnName}`)) as Events).events.triggers.every((t) => t.ready), { what: 'triggers ready' });
    nc = await connect({ servers: natsUrl });
    const clockProbeMs = await fn.measureOffset();
    const meter = new CpuMeter<Processes>({
      gateway: platform.child.pid,
      replica: childrenOf(platform.child.pid!).find((c) => c.comm === 'node')?.pid,
      natsServer: childrenOf(process.pid).find((c) => c.comm === 'nats-server')?.pid,
    });
    const b: Bench = { api, fn, gatewayUrl: platform.url, meter };
    paths = { http: httpPath(b), nats: natsPath(b, nc), jetstream: jetstreamPath(b, jetstream(nc)) };

    const measured: Partial<Record<RowName, Row>> = {};
    for (const row of rows) {
      const p = paths[row];
      await p.warmUp();
      measured[row] = {
        throughput: await p.throughput(),
        latency: await latencyRun(b, p, `${row}-lat`, settings.rate),
        latencyLow: await latencyRun(b, p, `${row}-low`, settings.lowRate),
      };
      console.error(`${row}: ${JSON.stringify(measured[row])}`);
    }

    const results = {
      machine: { cpus: cpus().length, node: process.version },
      settings: { ...settings, rows },
      clock: { offsetMs: round3(fn.offsetMs), probeRoundTripMs: round3(clockProbeMs) },
      rows: measured,
      triggers: ((await api.ok('GET', `/system/function/${fnName}`)) as { events: unknown }).events,
    };
    console.log(table(measured, results.clock));
    await writeBenchResults('events', results);
    console.log(JSON.stringify(results));
  } finally {
    for (const p of Object.values(paths ?? {})) await p.close?.();
    await nc?.close();
    await fn.close();
    await platform.stop();
  }
}

function table(measured: Partial<Record<RowName, Row>>, clock: { offsetMs: number; probeRoundTripMs: number }): string {
  const fmt = (x: number) => x.toLocaleString('en-US');
  const { rate, lowRate } = settings;
  const cpu = (c: CpuPerMessage) => `${c.gateway ?? '?'} / ${c.replica ?? '?'} / ${c.natsServer ?? '?'}`;
  const { http, nats, jetstream: js } = measured;
  return [
    `One replica. Throughput: HTTP closed loop at concurrency ${settings.connections} for ${settings.seconds} s; events ${fmt(settings.messages)} messages sent as fast as possible, ` +
      `first send to last handled. Latency: send to the handler's first line, ${settings.seconds} s at each offered rate.`,
    '',
    `| path | msgs/s | p50 / p99 ms at ${fmt(rate)}/s | p50 / p99 ms at ${fmt(lowRate)}/s | CPU µs/msg at full rate: gateway / replica / nats-server |`,
    '|---|---|---|---|---|',
    ...rows.map((r) => {
      const { throughput: t, latency: l, latencyLow: low } = measured[r]!;
      return `| ${r} | ${fmt(t.msgsPerSec)} | ${l.p50ms} / ${l.p99ms} | ${low.p50ms} / ${low.p99ms} | ${cpu(t.cpuUsPerMsg)} |`;
    }),
    '',
    ...(http ? [`http: round trip at concurrency ${settings.connections} p50 ${String(http.throughput.roundTripP50ms)} / p99 ${String(http.throughput.roundTripP99ms)} ms, at ${fmt(rate)}/s p50 ${String(http.latency.roundTripP50ms)} / p99 ${String(http.latency.roundTripP99ms)} ms; errors ${String(http.throughput.errors)}`] : []),
    ...(nats ? [`nats: handled ${fmt(nats.throughput.distinct)} of ${fmt(nats.throughput.sent)} sent at ${fmt(nats.throughput.publishedPerSec as number)}/s, ${fmt(nats.throughput.droppedAtGateway as number)} dropped at the trigger's in-flight limit; dropped at ${fmt(rate)}/s: ${String(nats.latency.droppedAtGateway)}, at ${fmt(lowRate)}/s: ${String(nats.latencyLow.droppedAtGateway)}`] : []),
    ...(js ? [`jetstream: handled ${fmt(js.throughput.distinct)} of ${fmt(js.throughput.sent)} (published with acks at ${fmt(js.throughput.publishedPerSec as number)}/s), ${String(js.throughput.handledTwice)} handled twice`] : []),
    `clock difference handler - bench: ${clock.offsetMs} ms (probe round trip ${clock.probeRoundTripMs} ms), subtracted`,
  ].join('\n');
}

async function main() {
  const nats = await startNatsServer();
  try {
    await measure(nats.url);
  } finally {
    await nats.close();
  }
  if (profileDir) console.log(await summarizeCpuProfiles(profileDir));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
