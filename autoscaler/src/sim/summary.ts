// The figures that compare runs: how fast capacity arrived, what it cost against an ideal, and
// what the callers felt (queueing, waits, rejections), plus the CSV of a run.

import type { Row, SimResult } from './simulate.js';

export interface Summary {
  scenario: string;
  /** The autoscaler that ran (--decider). */
  decider: string;
  /** Fewest replicas asked for at once after the first second (a restart or a blackout must not drop them). */
  minDesired: number;
  /** Seconds the activation was called stalled. */
  stalledS: number;
  /** Start of the biggest one-second rise of the offered rate, s. */
  riseAtS: number;
  /** From riseAtS until ready x capacity >= offered in flight, s; null if never. */
  toCapacityS: number | null;
  /** Most replicas asked for at once. */
  peakDesired: number;
  /** Sum over the seconds of ready + starting replicas. */
  replicaSeconds: number;
  /** Sum over the seconds of the replicas needed at the target (see `idealReplicas`). */
  idealReplicaSeconds: number;
  /** Sum of (ready + starting - ideal) where positive: paid for and not needed at the target. */
  overReplicaSeconds: number;
  /** Sum of (ideal - ready) where positive: ready capacity short of the target. */
  underReplicaSeconds: number;
  peakQueue: number;
  arrived: number;
  /** Started after more than 1 s in the queue, or still queued at the end after 1 s. */
  waitedOver1s: number;
  waitedOver1sPct: number;
  /** Over the requests that started; null when none did. */
  p99WaitMs: number | null;
  maxWaitMs: number | null;
  /** Arrivals a gateway refused because its queue was full (503 QUEUE_FULL): the only rejection the model has. */
  rejected: number;
  /** The same count under the name the table uses. */
  overload503s: number;
  /** From the load stopping (a second with rate 0 after one with load) to no replica, s; null if never. */
  toZeroS: number | null;
}

/**
 * Replicas a perfect autoscaler with these settings would run in second `row`: the offered
 * load without noise (expected rate; x mean service time for concurrency, Little's law) over
 * the target per replica, rounded up, clamped to min and max. Zero load needs zero replicas.
 */
export function idealReplicas(r: SimResult, row: Row): number {
  const { settings } = r;
  const load = settings.metric === 'rps' ? row.expectedRps : (row.expectedRps * r.options.serviceMs) / 1000;
  let n = Math.max(settings.minScale, Math.ceil(load / settings.targetPerReplica - 1e-9));
  if (settings.maxScale > 0) n = Math.min(n, settings.maxScale);
  return n;
}

export function summarize(r: SimResult): Summary {
  const { rows, totals } = r;
  let used = 0;
  let ideal = 0;
  let over = 0;
  let under = 0;
  for (const row of rows) {
    const want = idealReplicas(r, row);
    const provisioned = row.ready + row.starting;
    used += provisioned;
    ideal += want;
    over += Math.max(0, provisioned - want);
    under += Math.max(0, want - row.ready);
  }
  const waited = totals.waitedOver1s + totals.waitingOver1sAtEnd;
  const started = totals.served + totals.inFlightAtEnd;
  return {
    scenario: r.scenario.name,
    decider: r.options.decider,
    minDesired: Math.min(...rows.slice(1).map((row) => row.desired)),
    stalledS: rows.filter((row) => row.stalled).length,
    riseAtS: r.riseAtS,
    toCapacityS: r.capacityAtMs === undefined ? null : r.capacityAtMs / 1000 - r.riseAtS,
    peakDesired: Math.max(0, ...rows.map((row) => row.desired)),
    replicaSeconds: used,
    idealReplicaSeconds: ideal,
    overReplicaSeconds: over,
    underReplicaSeconds: under,
    peakQueue: totals.maxQueued,
    arrived: totals.arrived,
    waitedOver1s: waited,
    waitedOver1sPct: totals.arrived > 0 ? (100 * waited) / totals.arrived : 0,
    p99WaitMs: started > 0 ? totals.p99WaitMs : null,
    maxWaitMs: started > 0 ? totals.maxWaitMs : null,
    rejected: totals.rejected,
    overload503s: totals.rejected,
    toZeroS: timeToZero(rows),
  };
}

/** Rows are seconds [t, t + 1) with replicas as of their end, so zero at row t counts as t + 1. */
function timeToZero(rows: Row[]): number | null {
  for (let i = 1; i < rows.length; i++) {
    if (!(rows[i - 1]!.expectedRps > 0 && rows[i]!.expectedRps === 0)) continue;
    for (let j = i; j < rows.length && rows[j]!.expectedRps === 0; j++) {
      if (rows[j]!.ready + rows[j]!.starting === 0) return rows[j]!.t + 1 - rows[i]!.t;
    }
  }
  return null;
}

const num = (n: number | null | undefined, digits = 0) => (n === null || n === undefined ? '—' : n.toFixed(digits));

export function summaryMarkdown(summaries: Summary[]): string {
  const head = [
    'scenario',
    'decider',
    'biggest rise at',
    'to capacity',
    'peak replicas',
    'replica-s used / ideal',
    'over / under',
    'peak queue',
    'waited > 1 s',
    'p99 wait',
    'max wait',
    'overload 503s',
    'to zero',
  ];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i === 0 ? ' --- ' : ' ---: ')).join('|')}|`];
  for (const s of summaries) {
    const cells = [
      s.scenario,
      s.decider,
      `${s.riseAtS} s`,
      s.toCapacityS === null ? '—' : `${num(s.toCapacityS, 2)} s`,
      String(s.peakDesired),
      `${s.replicaSeconds} / ${s.idealReplicaSeconds}`,
      `${s.overReplicaSeconds} / ${s.underReplicaSeconds}`,
      String(s.peakQueue),
      `${s.waitedOver1s} (${num(s.waitedOver1sPct, 2)} %)`,
      s.p99WaitMs === null ? '—' : `${s.p99WaitMs} ms`,
      s.maxWaitMs === null ? '—' : `${num(s.maxWaitMs)} ms`,
      String(s.overload503s),
      s.toZeroS === null ? '—' : `${s.toZeroS} s`,
    ];
    lines.push(`| ${cells.join(' | ')} |`);
  }
  return lines.join('\n') + '\n';
}

const columns = [
  't', 'offered_rps', 'served_rps', 'in_flight', 'queued', 'stable', 'panic',
  'desired', 'ready', 'panicking', 'rejected', 'starting', 'expected_rps', 'pending', 'failed_scrapes', 'restarted', 'stalled',
] as const;

/** One row per second; means to 2 decimals, so the same seed gives byte-identical files. */
export function toCsv(rows: Row[]): string {
  const f = (n: number | undefined) => (n === undefined ? '' : String(Math.round(n * 100) / 100));
  const out = [columns.join(',')];
  for (const r of rows) {
    out.push(
      [r.t, r.arrived, r.served, f(r.inFlight), f(r.queued), f(r.stable), f(r.panic),
        r.desired, r.ready, r.panicking ? 1 : 0, r.rejected, r.starting, f(r.expectedRps), r.pending, r.failedScrapes,
        r.restarted ? 1 : 0, r.stalled ? 1 : 0].join(','),
    );
  }
  return out.join('\n') + '\n';
}
