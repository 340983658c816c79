import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseArgs, usage } from './cli.js';
import { defaultDecider, deciders } from './deciders.js';
import { parseBlackouts, parseStartup, scrapeFails, startupSampler } from './faults.js';
import { Cluster } from './model.js';
import { seededRandom } from './rng.js';
import { scenarios, type Scenario } from './scenarios.js';
import { simulate } from './simulate.js';
import { summarize, summaryMarkdown, toCsv } from './summary.js';
import { chartSvg } from './svg.js';

const shape = (name: string, durationS: number, rate: (t: number) => number, extra: Partial<Scenario> = {}): Scenario => ({
  name,
  description: name,
  durationS,
  rate,
  capacity: 100,
  ...extra,
});

describe('fault flags: parsing', () => {
  it('reads --gateways, --restart-at, --blackout, --node-capacity, --startup-ms, --failed-scrape and --decider', async () => {
    const a = await parseArgs([
      '--scenario', 'steady', '--gateways', '3', '--restart-at', '120,300', '--blackout', '100..250,10..20:2',
      '--node-capacity', '4', '--startup-ms', 'p50=800,p99=2000', '--failed-scrape', 'last-good', '--decider', 'knative',
    ]);
    assert.deepEqual(a.scenarios.map((s) => s.name), ['steady']);
    const o = a.options;
    assert.deepEqual(
      [o.gateways, o.restartAtS, o.blackouts, o.nodeCapacity, o.startup, o.failedScrape, a.deciders],
      [3, [120, 300], [{ fromS: 100, toS: 250 }, { fromS: 10, toS: 20, gateway: 2 }], 4, { kind: 'lognormal', p50: 800, p99: 2000 }, 'last-good', ['knative']],
    );
    assert.deepEqual(o.scale, {}, 'none of them is taken for a scale field');
  });

  it('refuses bad values with BAD_REQUEST naming the flag', async () => {
    const bad: [string[], RegExp][] = [
      [['--gateways', '0'], /--gateways needs a whole number from 1/],
      [['--gateways', '1.5'], /--gateways needs a whole number/],
      [['--node-capacity', '-1'], /--node-capacity needs a whole number from 0/],
      [['--restart-at', 'soon'], /--restart-at needs a number/],
      [['--restart-at', '0'], /--restart-at needs whole seconds >= 1/],
      [['--blackout', '250..100'], /--blackout: "250..100" ends before it starts/],
      [['--blackout', '100-250'], /--blackout: "100-250" is not A..B/],
      [['--blackout', '1..2:0'], /gateways count from 1/],
      [['--startup-ms', 'fast'], /--startup-ms: "fast" is not a time/],
      [['--startup-ms', '2500..1500'], /ends before it starts/],
      [['--startup-ms', 'p50=800'], /needs both p50 and p99/],
      [['--startup-ms', 'p50=2000,p99=800'], /needs 0 < p50 <= p99/],
      [['--startup-ms', 'p90=800,p99=900'], /is not p50=ms,p99=ms/],
      [['--failed-scrape', 'nothing'], /--failed-scrape is one of missing, zero, last-good, error/],
      [['--decider', 'nope'], /--decider is one or more of demand, knative/],
      [['--decider', 'demand,nope'], /--decider is one or more of demand, knative/],
    ];
    for (const [argv, message] of bad) {
      await assert.rejects(parseArgs(['--scenario', 'steady', ...argv]), { code: 'BAD_REQUEST', message }, argv.join(' '));
    }
    // A blackout of a gateway that does not exist is refused when the run knows how many there are.
    const b = await parseArgs(['--scenario', 'steady', '--blackout', '1..2:3', '--gateways', '2']);
    await assert.rejects(simulate(b.scenarios[0]!, b.options), { code: 'BAD_REQUEST', message: /blackout of gateway 3, but there are 2/ });
  });

  it('reads the three start-up forms; a blackout covers seconds A <= t < B', () => {
    assert.deepEqual(parseStartup('2000'), { kind: 'fixed', ms: 2000 });
    assert.deepEqual(parseStartup('1500..2500'), { kind: 'uniform', min: 1500, max: 2500 });
    assert.deepEqual(parseStartup(' p99=2000, p50=800 '), { kind: 'lognormal', p50: 800, p99: 2000 });
    const [all, one] = [parseBlackouts('100..250'), parseBlackouts('100..250:2')];
    assert.deepEqual([99_000, 100_000, 249_000, 250_000].map((t) => scrapeFails(all, 0, t)), [false, true, true, false]);
    assert.deepEqual([0, 1, 2].map((g) => scrapeFails(one, g, 150_000)), [false, true, false], 'gateway 2 is index 1');
  });

  it('draws start-ups within a range, and a log-normal with the asked median and 99th percentile', () => {
    const uniform = startupSampler(parseStartup('1500..2500'), seededRandom(1));
    const u = Array.from({ length: 10_000 }, uniform);
    assert.ok(Math.min(...u) >= 1500 && Math.max(...u) < 2500);
    assert.ok(Math.max(...u) - Math.min(...u) > 900, 'it spreads over the range');
    const logn = startupSampler(parseStartup('p50=800,p99=2000'), seededRandom(1));
    const l = Array.from({ length: 20_000 }, logn).sort((a, b) => a - b);
    const [p50, p99] = [l[10_000]!, l[19_800]!];
    assert.ok(Math.abs(p50 - 800) < 40, `p50 ${p50}`);
    assert.ok(Math.abs(p99 - 2000) < 150, `p99 ${p99}`);
  });

  it('has a registry of deciders with demand as the default, runs it beside knative, and says so in the help', async () => {
    assert.deepEqual(Object.keys(deciders), ['demand', 'knative']);
    assert.equal(defaultDecider, 'demand');
    assert.match(usage, /--decider a,b\s+the autoscalers to run, each scenario under each, side by side \(default demand,knative\)/);
    assert.match(usage, /knative: Knative's KPA as shipped before/);
    assert.deepEqual((await parseArgs(['--scenario', 'step'])).deciders, ['demand', 'knative']);
    assert.deepEqual((await parseArgs(['--scenario', 'step', '--decider', 'knative,knative'])).deciders, ['knative']);
  });
});

describe('fault flags: effects', () => {
  it('--blackout: failed scrapes are missing data, not zero: the replicas hold; read as zero they went to zero', async () => {
    const healthy = await simulate(scenarios.steady!);
    assert.ok(healthy.rows.every((row) => row.desired === 5), 'without failures it holds the 5 it needs');
    assert.equal(healthy.totals.rejected, 0);

    const blackouts = parseBlackouts('100..250');
    const r = await simulate(scenarios.steady!, { blackouts });
    const during = r.rows.filter((row) => row.t >= 100 && row.t < 249);
    assert.ok(during.every((row) => row.failedScrapes === 1));
    assert.ok(r.rows.every((row) => row.desired === 5), r.rows.map((row) => row.desired).join(','));
    assert.equal(r.totals.rejected, 0);

    // What a failed scrape was before: an answer of zero traffic (under the decider of then).
    const zero = await simulate(scenarios.steady!, { blackouts, failedScrape: 'zero', decider: 'knative' });
    assert.ok(zero.rows.some((row) => row.t >= 100 && row.t < 249 && row.desired === 0), 'it scaled a function with 3000 req/s to zero');
    assert.ok(zero.totals.rejected > 100_000, `rejected ${zero.totals.rejected}`);
    assert.equal(summarize(zero).overload503s, zero.totals.rejected);
  });

  it('--failed-scrape: the policy decides what a failed scrape contributes', async () => {
    const blackouts = parseBlackouts('100..250');
    const kept = await simulate(scenarios.steady!, { blackouts, failedScrape: 'last-good' });
    assert.ok(kept.rows.every((row) => row.desired === 5), 'repeating the last good sample holds the replicas');
    assert.equal(kept.totals.rejected, 0);
    const held = await simulate(scenarios.steady!, { blackouts, failedScrape: 'error' });
    assert.ok(held.rows.every((row) => row.desired === 5), 'a failed tick decides nothing');
  });

  it('--gateways: each gateway gets its share of the load, and the autoscaler sums them', async () => {
    // A blackout of one gateway of two: the half that answered is scaled up by 2, so the
    // autoscaler still sees about the 300 in flight there are and keeps the 5 replicas (+-1).
    const r = await simulate(scenarios.steady!, { gateways: 2, blackouts: parseBlackouts('100..250:2') });
    const during = r.rows.filter((row) => row.t >= 130 && row.t < 240);
    assert.ok(during.every((row) => row.failedScrapes === 1));
    assert.ok(during.every((row) => row.desired >= 4 && row.desired <= 6), during.map((row) => row.desired).join(','));
    // Read as zero, that half of the traffic was missing: fewer than the 5 needed.
    const zero = await simulate(scenarios.steady!, { gateways: 2, blackouts: parseBlackouts('100..250:2'), failedScrape: 'zero' });
    assert.ok(zero.rows.filter((row) => row.t >= 130 && row.t < 240).every((row) => row.desired <= 4));
    const all = await simulate(scenarios.steady!, { gateways: 2 });
    assert.ok(all.rows.every((row) => row.desired === 5), 'with both read, the sum is the whole load');
    assert.ok(all.rows.filter((row) => row.t >= 60).every((row) => row.stable! > 290 && row.stable! < 310));
  });

  it('--gateways: each gateway has its own bounded queue and its own stats', () => {
    // No room on the nodes, so nothing is served: every arrival queues or is refused.
    const c = new Cluster({ capacity: 10, startupMs: () => 0, stepMs: 10, queueDepth: 100, gateways: 2, nodeCapacity: 0 }, 1);
    c.arrive(0, 150, 0);
    c.arrive(0, 30, 1);
    c.dispatch(0, () => 100);
    assert.deepEqual([c.queued, c.totals.rejected], [130, 50], 'gateway 1 holds 100 and refuses 50; gateway 2 holds 30');
    assert.deepEqual(c.scrape(0, 1000), { concurrency: 100 * 10 / 1000, requests: 150, queued: 100, completed: 0 });
    assert.deepEqual(c.scrape(1, 1000), { concurrency: 30 * 10 / 1000, requests: 30, queued: 30, completed: 0 });
    assert.deepEqual(c.scrape(1, 2000), { concurrency: 0, requests: 0, queued: 30, completed: 0 }, 'a scrape resets the counts it read; the queue is a level');
  });

  it('--node-capacity: replicas beyond it never become ready', async () => {
    const step = shape('step', 120, (t) => (t >= 10 ? 5000 : 0));
    const r = await simulate(step, { nodeCapacity: 3 });
    assert.ok(r.rows.every((row) => row.ready <= 3));
    assert.ok(r.rows.some((row) => row.ready === 3 && row.desired > 3 && row.pending === row.desired - 3));
    assert.ok(r.totals.rejected > 0, 'three replicas cannot serve 500 in flight');
    const free = await simulate(step);
    assert.ok(free.rows.some((row) => row.ready > 3) && free.rows.every((row) => row.pending === 0));
  });

  it('--node-capacity: a pending replica starts when an older one is removed', () => {
    const c = new Cluster({ capacity: 10, startupMs: () => 500, stepMs: 10, queueDepth: 10, nodeCapacity: 2 }, 1);
    c.scaleTo(3, 0);
    assert.deepEqual([c.ready, c.starting, c.pending], [1, 2, 1]);
    c.advance(500);
    assert.deepEqual([c.ready, c.pending], [2, 1]);
    c.scaleTo(2, 1000); // the pending one goes first (not ready, newest)
    c.scaleTo(3, 2000);
    c.advance(3000);
    assert.deepEqual([c.ready, c.pending], [2, 1], 'still no room');
  });

  it('--restart-at: the restarted autoscaler has new windows, starts in panic at the ready count, and keeps the replicas', async () => {
    // Alternating 9000 and 1000 req/s every 10 s: 8 to 10 replicas.
    const alt = scenarios.alternating!;
    for (const decider of ['demand', 'knative']) {
      const steady = await simulate(alt, { decider });
      const r = await simulate(alt, { restartAtS: [210], decider });
      assert.equal(r.rows.find((row) => row.t === 209)?.restarted, true);
      assert.equal(steady.rows.find((row) => row.t === 209)?.restarted, false);
      const from = (x: typeof r, t0: number, t1: number) => x.rows.filter((row) => row.t >= t0 && row.t < t1).map((row) => row.desired);
      assert.ok(from(r, 205, 209).every((d) => d === 10), decider);
      // A restarted autoscaler that decided on its first seconds of data went 10 -> 6 -> 4 -> 3 here.
      const least = Math.min(...from(steady, 100, 400));
      assert.ok(from(r, 209, 400).every((d) => d >= least), `${decider}: never below the ${least} it keeps without a restart`);
      assert.ok(r.totals.rejected <= steady.totals.rejected, decider);
    }
  });

  it('--startup-ms with a range: replicas become ready at different times, the same for the same seed', async () => {
    const step = shape('step', 40, (t) => (t >= 10 ? 5000 : 0));
    const run = (seed: number) => simulate(step, { startup: parseStartup('500..3000'), seed });
    const r = await run(1);
    const readyCounts = new Set(r.rows.filter((row) => row.t >= 12 && row.t < 16).map((row) => row.ready));
    assert.ok(readyCounts.size > 1, 'replicas asked for together are ready at different seconds');
    assert.deepEqual((await run(1)).rows, r.rows);
  });

  it('cold bursts start at zero and the first request pokes; never-ready never serves', async () => {
    const fresh = await simulate(scenarios['cold-burst-fresh']!);
    assert.ok(fresh.rows.filter((row) => row.t < 9).every((row) => row.desired === 0 && row.ready === 0));
    assert.ok(fresh.rows.find((row) => row.t === 10)!.desired >= 1);
    assert.ok(fresh.totals.served > 300_000);
    // The other served calls first and went to zero: its service time is known when the burst comes.
    const cold = await simulate(scenarios['cold-burst']!);
    assert.ok(cold.rows.filter((row) => row.t >= 130 && row.t < 149).every((row) => row.desired === 0), 'at zero before the burst');
    assert.ok(cold.rows.find((row) => row.t === 150)!.desired >= 3, 'the poke sizes the scale-up by the queue');

    for (const decider of ['demand', 'knative']) {
      const never = await simulate(scenarios['never-ready']!, { decider });
      assert.equal(never.capacity, 1, 'containerConcurrency 1');
      assert.equal(never.totals.served, 0);
      assert.ok(never.rows.every((row) => row.ready === 0));
      assert.ok(never.totals.rejected > 0, 'the queue fills');
      const peak = Math.max(...never.rows.map((row) => row.desired));
      if (decider === 'knative') {
        assert.equal(peak, 10, 'the queue it cannot drain scales it to max');
        assert.ok(never.rows.every((row) => !row.stalled));
      } else {
        assert.ok(peak <= 2, `the queue is not demand: ${peak}`);
        const stalled = never.rows.filter((row) => row.stalled);
        assert.ok(stalled.length > 0 && stalled[0]!.t <= 15, 'the activation is called stalled after the 10 s default');
      }
    }
  });

  it('the summary table has an overload 503s column', async () => {
    const md = summaryMarkdown([summarize(await simulate(scenarios.steady!, { blackouts: parseBlackouts('100..250'), failedScrape: 'zero', decider: 'knative' }))]);
    const [head, , row] = md.split('\n');
    const cells = (line: string) => line.split('|').map((c) => c.trim());
    const i = cells(head!).indexOf('overload 503s');
    assert.ok(i > 0);
    assert.ok(Number(cells(row!)[i]) > 100_000);
  });

  it('the chart marks failed scrapes and restarts; the CSV has their columns', async () => {
    const r = await simulate(scenarios.steady!, { blackouts: parseBlackouts('100..250'), restartAtS: [300] });
    const svg = chartSvg(r);
    assert.equal((svg.match(/fill="#c9c9e8"/g) ?? []).length, 1, 'one band for the blackout');
    assert.match(svg, /<text[^>]*>failed scrapes<\/text>/);
    assert.match(svg, /<text[^>]*>autoscaler restart<\/text>/);
    assert.doesNotMatch(svg, /NaN|undefined|Infinity/);
    const csv = toCsv(r.rows).split('\n');
    assert.equal(csv[0], 't,offered_rps,served_rps,in_flight,queued,stable,panic,desired,ready,panicking,rejected,starting,expected_rps,pending,failed_scrapes,restarted,stalled');
    assert.match(csv.find((l) => l.startsWith('299,'))!, /,0,1,0$/);
    assert.match(csv.find((l) => l.startsWith('150,'))!, /,1,0,0$/);
  });
});
