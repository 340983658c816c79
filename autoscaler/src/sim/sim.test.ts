import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseArgs } from './cli.js';
import { parseTrace, scenarios, type Scenario } from './scenarios.js';
import { simulate } from './simulate.js';
import { summarize, toCsv } from './summary.js';
import { chartSvg } from './svg.js';

const shape = (name: string, durationS: number, rate: (t: number) => number): Scenario => ({
  name,
  description: name,
  durationS,
  rate,
  capacity: 100,
});

describe('simulator model', () => {
  it('conserves requests: arrived = served + queued + rejected + in flight at the end', async () => {
    // Capacity 10 per replica cannot keep up with 5000 req/s: queueing, rejections and requests
    // in flight at the end all happen, with exponential service times.
    const r = await simulate(shape('overload', 20, (t) => (t >= 2 ? 5000 : 0)), { capacity: 10, serviceDist: 'exp' });
    const t = r.totals;
    assert.ok(t.rejected > 0 && t.queuedAtEnd > 0 && t.inFlightAtEnd > 0, JSON.stringify(t));
    assert.equal(t.arrived, t.served + t.queuedAtEnd + t.rejected + t.inFlightAtEnd);
    const perSecond = r.rows.reduce((a, row) => a + row.arrived, 0);
    assert.equal(perSecond, t.arrived, 'the per-second rows add up to the totals');
  });

  it('converges to ceil(load / target) replicas after a step, within the derived bound', async () => {
    // 5000 req/s x 0.1 s = 500 in flight; target 100 x 70 % = 70 -> ceil(500 / 70) = 8 replicas.
    const stepAt = 30;
    const r = await simulate(shape('step', 200, (t) => (t >= stepAt ? 5000 : 0)));
    const s = r.settings;
    // Bound: capacity arrives within a decision interval plus start-up; the backlog drains in a
    // few seconds (allow 5); the panic window then stops seeing it, so the last over-threshold
    // decision is by then + the panic window; panic ends a stable window later, when the stable
    // window no longer holds the backlog either; one more decision interval to act.
    const bound = (2 * (r.options.decideEveryMs ?? 2000) + 500 + 5000 + s.panicWindowMs + s.stableWindowMs) / 1000;
    const settled = r.rows.filter((row) => row.t >= stepAt + Math.ceil(bound));
    assert.ok(settled.length > 30, 'the run covers the settled period');
    for (const row of settled) assert.deepEqual([row.t, row.desired, row.ready], [row.t, 8, 8]);
    assert.ok(r.rows.some((row) => row.t > stepAt && row.desired > 8), 'panic over-provisions first');
  });

  it('gives byte-identical CSV for the same seed, and different traffic for another', async () => {
    const run = async (seed: number) => toCsv((await simulate(scenarios.spike!, { seed, serviceDist: 'exp' })).rows);
    const a = await run(7);
    assert.equal(a, await run(7));
    assert.notEqual(a, await run(8));
  });

  it('goes to zero a stable window plus the grace period after the load stops', async () => {
    // 1000 req/s (2 replicas) from 5 s to 65 s. The last requests end at 65.1 s, in the sample
    // filed at 66 s; the stable window is all zero from 126 s, decided at once (126 is even);
    // the grace period then keeps one replica 30 s more: zero at 156 s, 91 s after the stop.
    const r = await simulate(shape('stop', 200, (t) => (t >= 5 && t < 65 ? 1000 : 0)));
    const { stableWindowMs, scaleToZeroGraceMs } = r.settings;
    assert.deepEqual([stableWindowMs, scaleToZeroGraceMs], [60_000, 30_000]);
    const toZero = summarize(r).toZeroS;
    assert.ok(toZero !== null, 'reaches zero');
    const min = (stableWindowMs + scaleToZeroGraceMs) / 1000;
    assert.ok(toZero >= min && toZero <= min + 5, `zero ${toZero} s after the stop`);
    for (const row of r.rows.filter((x) => x.t >= 65 + toZero)) assert.equal(row.ready + row.starting, 0);
  });

  it('scales from zero on the first request (the poke): it waits for one start-up', async () => {
    // Idle from the start: zero once a stable window of data and the grace period have passed.
    const r = await simulate(shape('cold', 130, (t) => (t >= 110 && t < 110.01 ? 100 : 0)), { startup: { kind: 'fixed', ms: 500 } });
    assert.equal(r.rows.find((row) => row.t === 105)?.desired, 0, 'at zero before the request');
    assert.ok(r.totals.arrived >= 1 && r.totals.rejected === 0);
    assert.equal(r.totals.maxWaitMs, 500);
    assert.equal(r.rows.find((row) => row.t === 110)?.ready, 1);
  });
});

describe('chart', () => {
  it('is a well-formed SVG with the plotted lines', async () => {
    const svg = chartSvg(await simulate(scenarios.spike!));
    assert.ok(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"'));
    assert.ok(svg.trimEnd().endsWith('</svg>'));
    assert.equal((svg.match(/<polyline /g) ?? []).length, 4, 'offered, queued, desired, ready');
    assert.match(svg, /fill="#f4c7c7"/, 'a panic band');
    // Tags balance: every opened element is closed, in order.
    const stack: string[] = [];
    for (const [, close, name, selfClose] of svg.matchAll(/<(\/?)([a-z]+)\b[^>]*?(\/?)>/g)) {
      if (selfClose) continue;
      if (close) assert.equal(stack.pop(), name);
      else stack.push(name!);
    }
    assert.deepEqual(stack, []);
    assert.doesNotMatch(svg, /NaN|undefined/);
  });
});

describe('trace reader', () => {
  it('reads second,rps rows with an optional header; gaps keep the previous rate', () => {
    const s = parseTrace('second,rps\n0,100\n\n# quiet\n3,0\n5,250.5\n', 'demo');
    assert.equal(s.durationS, 6);
    assert.deepEqual([0, 1, 2, 3, 4, 5].map((t) => s.rate(t + 0.5)), [100, 100, 100, 0, 0, 250.5]);
    assert.equal(parseTrace('2,10', 'bare').rate(0), 0, 'no load before the first row');
  });

  it('refuses a bad row with a message naming its line', () => {
    const bad: [string, RegExp][] = [
      ['second,rps\n0,100\nabc\n', /demo line 3: expected 2 columns/],
      ['0,100\n1,-5\n', /demo line 2: rps must be a number >= 0/],
      ['0,100\n1.5,5\n', /demo line 2: second must be a whole number/],
      ['0,100\n4,1\n4,2\n', /demo line 3: second must be after the previous row's 4/],
      ['0,100\n1,2,3\n', /demo line 2: expected 2 columns/],
      ['0,\n', /demo line 1: rps must be a number/],
      ['second,rps\n', /demo has no rows/],
    ];
    for (const [text, message] of bad) assert.throws(() => parseTrace(text, 'demo'), { code: 'BAD_REQUEST', message });
  });
});

describe('command line', () => {
  it('passes scale overrides to the spec, numbers as numbers', async () => {
    const a = await parseArgs(['--scenario', 'spike,idle', '--target', '50', '--stable-window', '30s', '--metric=rps', '--seed', '3']);
    assert.deepEqual(a.scenarios.map((s) => s.name), ['spike', 'idle']);
    assert.deepEqual(a.options.scale, { target: 50, stableWindow: '30s', metric: 'rps' });
    assert.equal(a.options.seed, 3);
    await assert.rejects(parseArgs(['--scenario', 'nope']), { code: 'BAD_REQUEST', message: /no scenario "nope"/ });
    // An unknown scale field fails in parseFunctionSpec, naming it.
    const b = await parseArgs(['--scenario', 'idle', '--no-such-knob', '1']);
    await assert.rejects(simulate(b.scenarios[0]!, b.options), { code: 'INVALID_SPEC', message: /scale\.noSuchKnob/ });
  });
});
