// `npm run sim:targets [-- --json] [--seed n]`: runs the scenarios behind each target of the demand decider, with it and
// with Knative's side by side in one run, and prints what each measured against its target, as a
// table and (with --json) as JSON. Exits 1 when a target is missed.

import { scenarios } from './scenarios.js';
import { simulate, type SimOptions } from './simulate.js';
import { summarize, type Summary } from './summary.js';
import { parseBlackouts, parseStartup } from './faults.js';

interface Row {
  /** What the row checks, as the table names it. */
  row: string;
  /** `npm run sim -- ...` that reproduces it (both deciders). */
  command: string;
  demand: string;
  knative: string;
  target: string;
  met: boolean;
}

type Runs = { demand: Summary; knative: Summary };

let seed = 1;

async function both(scenario: string, options: Partial<SimOptions>): Promise<Runs> {
  const s = scenarios[scenario]!;
  const [demand, knative] = await Promise.all(['demand', 'knative'].map(async (decider) => summarize(await simulate(s, { ...options, decider, seed }))));
  return { demand: demand!, knative: knative! };
}

const pct = (n: number) => `${n.toFixed(0)} %`;

export async function runTargets(): Promise<Row[]> {
  const rows: Row[] = [];
  const add = (row: string, command: string, runs: Runs, show: (s: Summary) => string, target: string, met: boolean) =>
    rows.push({ row, command, demand: show(runs.demand), knative: show(runs.knative), target, met });
  const headline = (s: Summary) => `peak ${s.peakDesired}, ${s.overload503s} rejected, ${s.waitedOver1s} waited > 1 s, ${s.overReplicaSeconds} replica-s over`;

  for (const name of ['step', 'spike']) {
    const r = await both(name, { scale: { max: 100 } });
    const d = r.demand;
    add(`${name}, --max 100`, `npm run sim -- --scenario ${name} --max 100`, r, headline,
      'peak ≤ 15, 0 rejected, waited > 1 s ≤ ¼ of knative, over ≤ 400',
      d.peakDesired <= 15 && d.overload503s === 0 && d.waitedOver1s <= r.knative.waitedOver1s / 4 && d.overReplicaSeconds <= 400);
  }
  {
    const r = await both('step', { scale: { max: 100 }, startup: parseStartup('2000') });
    add('step, --startup-ms 2000 --max 100', 'npm run sim -- --scenario step --startup-ms 2000 --max 100', r,
      (s) => `peak ${s.peakDesired}, ${s.overReplicaSeconds} replica-s over (${s.overload503s} rejected)`,
      'peak ≤ 25, over ≤ ⅕ of knative',
      r.demand.peakDesired <= 25 && r.demand.overReplicaSeconds <= r.knative.overReplicaSeconds / 5);
  }
  {
    const r = await both('steady', { blackouts: parseBlackouts('100..250') });
    const show = (s: Summary) => `replicas ${s.minDesired}..${s.peakDesired}, ${s.overload503s} rejected`;
    add('blackout of every gateway, 150 s at 3000 req/s', 'npm run sim -- --scenario steady --blackout 100..250', r, show,
      'stays at 5, 0 rejected', r.demand.minDesired === 5 && r.demand.peakDesired === 5 && r.demand.overload503s === 0);
    const g = await both('steady', { gateways: 2, blackouts: parseBlackouts('100..250:2') });
    add('blackout of 1 of 2 gateways', 'npm run sim -- --scenario steady --gateways 2 --blackout 100..250:2', g, show,
      'within 5 ± 1', g.demand.minDesired >= 4 && g.demand.peakDesired <= 6);
  }
  {
    const r = await both('alternating', { restartAtS: [200], startup: parseStartup('2000') });
    add('restart mid-load (9000/1000 req/s alternating, 2 s start-up)', 'npm run sim -- --scenario alternating --restart-at 200 --startup-ms 2000', r,
      (s) => `never below ${s.minDesired}, ${s.overload503s} rejected`, 'never below 8, 0 rejected',
      r.demand.minDesired >= 8 && r.demand.overload503s === 0);
  }
  {
    const r = await both('never-ready', {});
    add('never-ready, containerConcurrency 1, 20 req/s', 'npm run sim -- --scenario never-ready', r,
      (s) => `desired ≤ ${s.peakDesired}, stalled ${s.stalledS} s`, 'desired ≤ 2, ActivationStalled set',
      r.demand.peakDesired <= 2 && r.demand.stalledS > 0);
  }
  {
    const r = await both('cold-burst', { startup: parseStartup('2000') });
    add('cold burst, 3000 req/s onto zero, 2 s start-up', 'npm run sim -- --scenario cold-burst --startup-ms 2000', r,
      (s) => `${s.overload503s} rejected, p99 wait ${s.p99WaitMs} ms`, '0 rejected, p99 wait ≤ 2300 ms',
      r.demand.overload503s === 0 && (r.demand.p99WaitMs ?? Infinity) <= 2300);
  }
  for (const name of ['diurnal', 'sawtooth']) {
    const r = await both(name, {});
    const d = r.demand;
    const k = r.knative;
    add(name, `npm run sim -- --scenario ${name}`, r,
      (s) => `${s.replicaSeconds} replica-s, ${s.waitedOver1s} waited > 1 s, p99 wait ${s.p99WaitMs} ms`,
      `replica-s ≤ knative + 5 % (${pct((100 * d.replicaSeconds) / k.replicaSeconds)} of it), waits no worse`,
      d.replicaSeconds <= k.replicaSeconds * 1.05 && d.waitedOver1s <= k.waitedOver1s && (d.p99WaitMs ?? 0) <= (k.p99WaitMs ?? 0));
  }
  return rows;
}

export async function main(argv: string[]): Promise<number> {
  const at = argv.indexOf('--seed');
  if (at >= 0) {
    seed = Number(argv[at + 1]);
    if (!Number.isInteger(seed)) {
      console.error('error: --seed needs a whole number');
      return 1;
    }
  }
  const rows = await runTargets();
  if (argv.includes('--json')) {
    console.log(JSON.stringify({ command: 'npm run sim:targets', seed, rows }, null, 2));
  } else {
    console.log('| scenario | demand (default) | knative | target | met |\n| --- | --- | --- | --- | --- |');
    for (const r of rows) console.log(`| ${r.row} | ${r.demand} | ${r.knative} | ${r.target} | ${r.met ? 'yes' : '**no**'} |`);
    console.log(`\nSeed ${seed}. Each row's command is in --json; the 1,000-function cost is \`npm run bench:autoscaler\`.`);
  }
  return rows.every((r) => r.met) ? 0 : 1;
}

process.exitCode = await main(process.argv.slice(2));
