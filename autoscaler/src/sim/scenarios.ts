// The named load shapes the simulator runs, and the CSV trace reader.

import { KubefnError } from '@kubefn/platform';

export interface Scenario {
  name: string;
  /** One line for the summary and the chart. */
  description: string;
  durationS: number;
  /** Offered load at `t` seconds since the start, req/s. */
  rate(t: number): number;
  /** Requests one replica serves at once, when neither --capacity nor containerConcurrency says. */
  capacity?: number;
  /** Replicas at t = 0 (default: the spec's max(min, initial), deployed and warm). */
  initialReplicas?: number;
  /** Replicas never become ready (a readiness probe that never passes). */
  neverReady?: boolean;
  /** Scale fields of the function spec for this scenario; the command line's win. */
  scale?: Record<string, unknown>;
}

/**
 * Loads sized for the spec defaults (target 100 x 70 % = 70 in flight per replica, max 10) and a
 * 100 ms service time: in flight = rate x 0.1 s, so 5 000 req/s -> 500 in flight -> ceil(500 / 70)
 * = 8 replicas, which 8 x 100 slots can serve; 500 req/s -> 50 in flight -> 1 replica.
 */
const peak = 5000;
const base = 500;

export const scenarios: Record<string, Scenario> = {
  step: {
    name: 'step',
    description: `0 for 30 s, ${peak} req/s for 5 min, then 0`,
    durationS: 480,
    rate: (t) => (t >= 30 && t < 330 ? peak : 0),
    capacity: 100,
  },
  spike: {
    name: 'spike',
    description: `${base} req/s, 10x (${base * 10} req/s) for 30 s at 2 min, then ${base} again`,
    durationS: 330,
    rate: (t) => (t >= 120 && t < 150 ? base * 10 : base),
    capacity: 100,
  },
  diurnal: {
    name: 'diurnal',
    description: `a 20-minute "day": 200 req/s at night, ${peak} req/s at noon (sine)`,
    durationS: 1200,
    rate: (t) => 2600 - 2400 * Math.cos((2 * Math.PI * t) / 1200),
    capacity: 100,
  },
  sawtooth: {
    name: 'sawtooth',
    description: `4 ramps from 0 to ${peak} req/s over 2 min each, dropping to 0, then 0`,
    durationS: 630,
    rate: (t) => (t < 480 ? (peak * (t % 120)) / 120 : 0),
    capacity: 100,
  },
  idle: {
    name: 'idle',
    description: '1000 req/s for 30 s, 10 min idle, then 2 req/s for 5 s (a cold start)',
    durationS: 705,
    rate: (t) => (t >= 10 && t < 40 ? 1000 : t >= 640 && t < 645 ? 2 : 0),
    capacity: 100,
  },
  steady: {
    name: 'steady',
    description: '3000 req/s throughout, from 5 warm replicas (what it needs): a baseline for --blackout',
    durationS: 400,
    rate: () => 3000,
    capacity: 100,
    initialReplicas: 5,
  },
  alternating: {
    name: 'alternating',
    description: '9000 and 1000 req/s, alternating every 10 s (8 replicas for the mean), from 8 warm replicas: a baseline for --restart-at',
    durationS: 400,
    rate: (t) => (Math.floor(t / 10) % 2 === 0 ? 9000 : 1000),
    capacity: 100,
    initialReplicas: 8,
  },
  'cold-burst': {
    name: 'cold-burst',
    description: 'served 100 req/s for 20 s and went to zero; then 3000 req/s (5 replicas) onto zero from 150 s for 2 min, then 0',
    durationS: 400,
    rate: (t) => (t < 20 ? 100 : t >= 150 && t < 270 ? 3000 : 0),
    capacity: 100,
  },
  'cold-burst-fresh': {
    name: 'cold-burst-fresh',
    description: 'a function at zero that never served a call (its service time unknown), then 3000 req/s from 10 s for 2 min, then 0',
    durationS: 250,
    rate: (t) => (t >= 10 && t < 130 ? 3000 : 0),
    capacity: 100,
    initialReplicas: 0,
  },
  'never-ready': {
    name: 'never-ready',
    description: 'containerConcurrency 1, 20 req/s, and no replica ever becomes ready',
    durationS: 600,
    rate: () => 20,
    neverReady: true,
    scale: { containerConcurrency: 1 },
  },
};

const maxTraceSeconds = 7 * 86_400;

/**
 * A trace: rows of `second,rps` (a `second,rps` header line is optional; blank lines and lines
 * starting with # are skipped). Seconds are whole, start anywhere >= 0 and increase; a second
 * without a row keeps the previous rate, before the first row the rate is 0. Throws BAD_REQUEST
 * naming the first bad line.
 */
export function parseTrace(text: string, name: string): Scenario {
  const rows: { second: number; rps: number }[] = [];
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    if (rows.length === 0 && /^second\s*,\s*rps$/i.test(line)) return;
    const fail = (why: string): never => {
      throw new KubefnError('BAD_REQUEST', `${name} line ${i + 1}: ${why} (got ${JSON.stringify(raw)})`, {
        hint: 'each row is "second,rps" with a whole second and a rate >= 0, e.g. "12,350"; seconds increase',
      });
    };
    const cells = line.split(',').map((c) => c.trim());
    if (cells.length !== 2) fail('expected 2 columns, second,rps');
    const [second, rps] = cells.map(Number) as [number, number];
    if (!/^\d+$/.test(cells[0]!) || second > maxTraceSeconds) fail(`second must be a whole number from 0 to ${maxTraceSeconds}`);
    if (cells[1] === '' || !Number.isFinite(rps) || rps < 0) fail('rps must be a number >= 0');
    const last = rows.at(-1);
    if (last && second <= last.second) fail(`second must be after the previous row's ${last.second}`);
    rows.push({ second, rps });
  });
  if (rows.length === 0) {
    throw new KubefnError('BAD_REQUEST', `${name} has no rows`, { hint: 'write one "second,rps" row per line, e.g. "0,100"' });
  }
  // Dense per-second rates, the gaps filled with the previous row's rate.
  const durationS = rows.at(-1)!.second + 1;
  const perSecond = new Float64Array(durationS);
  for (let i = 0; i < rows.length; i++) {
    const end = rows[i + 1]?.second ?? durationS;
    perSecond.fill(rows[i]!.rps, rows[i]!.second, end);
  }
  return {
    name,
    description: `trace ${name}: ${rows.length} rows, ${durationS} s`,
    durationS,
    rate: (t) => perSecond[Math.floor(t)] ?? 0,
  };
}
