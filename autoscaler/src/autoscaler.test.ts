// The autoscaler loop with a hand-moved clock: what it reads from the gateways, which metric each
// function scales on, when it decides, and the scale from zero on a poke.

import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { parseFunctionSpec, type FunctionSpecInput } from '@kubefn/platform';
import { Autoscaler, type FunctionSample, type ScaledFunction, type ScaleTarget } from './autoscaler.js';
import { ManualClock } from './clock.js';
import { defaultAutoscalerConfig } from './config.js';
import { HttpStatsSource } from './http-source.js';

/** A driver stand-in that records scale calls and reports every replica ready at once. */
class RecordingTarget implements ScaleTarget {
  readonly calls: [string, number][] = [];
  readonly functions = new Map<string, ScaledFunction>();

  add(input: FunctionSpecInput, replicas: number): void {
    const spec = parseFunctionSpec(input);
    this.functions.set(spec.name, { spec, replicas, readyReplicas: replicas });
  }

  async list(): Promise<ScaledFunction[]> {
    return [...this.functions.values()];
  }

  async scale(name: string, replicas: number): Promise<void> {
    this.calls.push([name, replicas]);
    const fn = this.functions.get(name)!;
    this.functions.set(name, { ...fn, replicas, readyReplicas: replicas });
  }
}

/** Every function sees the same traffic: `concurrency` in flight, `requests` per second. */
const steadyTraffic = (names: string[], concurrency: number, requests: number) => ({
  collect: (): FunctionSample[] => names.map((name) => ({ name, concurrency, requests })),
});

describe('Autoscaler', () => {
  it('scales each function on its own metric: in-flight requests or requests per second', async () => {
    const clock = new ManualClock(1_000_000);
    const target = new RecordingTarget();
    const scale = { target: 20, targetUtilizationPercent: 100 };
    target.add({ name: 'by-concurrency', scale: { ...scale, metric: 'concurrency' } }, 1);
    target.add({ name: 'by-rps', scale: { ...scale, metric: 'rps' } }, 1);
    const autoscaler = new Autoscaler({ target, sources: [steadyTraffic(['by-concurrency', 'by-rps'], 30, 100)], clock });
    for (let i = 0; i < 4; i++) {
      clock.advance(1000);
      await autoscaler.tick();
    }
    // 30 in flight / 20 -> 2 replicas; 100 req/s / 20 -> 5 replicas.
    assert.equal(target.functions.get('by-concurrency')!.replicas, 2);
    assert.equal(target.functions.get('by-rps')!.replicas, 5);
  });

  it('a passive autoscaler (a standby) decides without scaling, and scales at its first decision once active', async () => {
    const clock = new ManualClock(1_000_000);
    const target = new RecordingTarget();
    target.add({ name: 'f', scale: { target: 10, targetUtilizationPercent: 100 } }, 1);
    const autoscaler = new Autoscaler({ target, sources: [steadyTraffic(['f'], 30, 0)], clock, active: false });
    for (let i = 0; i < 5; i++) {
      clock.advance(1000);
      await autoscaler.tick();
    }
    assert.deepEqual(target.calls, [], 'no scale call while passive');
    assert.equal(autoscaler.lastDecision('f')?.desired, 3, 'but it decided: 30 in flight at target 10');
    autoscaler.setActive(true);
    clock.advance(1000);
    await autoscaler.tick();
    await autoscaler.settled();
    assert.deepEqual(target.calls, [['f', 3]], 'the first decision once active scales, on the windows it kept');
  });

  it('adds the samples of every gateway before deciding', async () => {
    const clock = new ManualClock(1_000_000);
    const target = new RecordingTarget();
    target.add({ name: 'shared', scale: { target: 10, targetUtilizationPercent: 100 } }, 1);
    const gateways = [steadyTraffic(['shared'], 15, 0), steadyTraffic(['shared'], 15, 0)];
    const autoscaler = new Autoscaler({ target, sources: gateways, clock });
    clock.advance(2000);
    await autoscaler.tick();
    assert.equal(target.functions.get('shared')!.replicas, 3, '15 + 15 in flight at target 10');
  });

  it('knative mode decides every 2 s, collecting every second in between', async () => {
    const clock = new ManualClock(1_000_000);
    const target = new RecordingTarget();
    target.add({ name: 'f', scale: { target: 10, targetUtilizationPercent: 100 } }, 1);
    const autoscaler = new Autoscaler({ target, sources: [steadyTraffic(['f'], 25, 0)], clock, mode: 'knative' });
    clock.advance(2000);
    await autoscaler.tick();
    assert.deepEqual(target.calls, [['f', 3]]);
    clock.advance(1000);
    await autoscaler.tick();
    assert.equal(target.calls.length, 1, 'no decision one second later');
    assert.ok(autoscaler.lastDecision('f'));
  });

  it('a poke scales a function at zero to max(1, min) at once, once for concurrent pokes', async () => {
    const target = new RecordingTarget();
    target.add({ name: 'cold', scale: { min: 0 } }, 0);
    target.add({ name: 'floor', scale: { min: 0, max: 5 } }, 0);
    const autoscaler = new Autoscaler({ target, sources: [], clock: new ManualClock(1_000_000) });
    await Promise.all([autoscaler.poke('cold'), autoscaler.poke('cold'), autoscaler.poke('cold')]);
    assert.deepEqual(target.calls, [['cold', 1]]);
    await autoscaler.poke('cold');
    assert.equal(target.calls.length, 1, 'a function already scaled is left alone');
  });

  it('a poke brings a function with a floor back from zero to its floor, not to one', async () => {
    const target = new RecordingTarget();
    // min 2, found at zero: what a driver that lost its replicas (a reset) reports.
    target.add({ name: 'floor', scale: { min: 2, max: 5 } }, 0);
    const autoscaler = new Autoscaler({ target, sources: [], clock: new ManualClock(1_000_000) });
    await Promise.all([autoscaler.poke('floor'), autoscaler.poke('floor')]);
    assert.deepEqual(target.calls, [['floor', 2]]);
  });

  it('a poke leaves a function with replicas starting alone, and the next round raises it to its floor', async () => {
    const clock = new ManualClock(1_000_000);
    const target = new RecordingTarget();
    target.add({ name: 'floor', scale: { min: 2, max: 5 } }, 0);
    // Scaled by hand below its floor, the one replica not ready yet: a request finds none ready.
    target.functions.set('floor', { ...target.functions.get('floor')!, replicas: 1, readyReplicas: 0 });
    // One gateway that answers with no traffic (without any gateway, no second is known).
    const autoscaler = new Autoscaler({ target, sources: [{ collect: () => [] }], clock });
    await autoscaler.poke('floor');
    assert.deepEqual(target.calls, [], 'a poke only scales from zero, and never down');
    clock.advance(2000);
    await autoscaler.tick();
    assert.deepEqual(target.calls, [['floor', 2]]);
    assert.equal(autoscaler.lastDecision('floor')?.desired, 2);
  });

  it('a poke never scales a function down to its floor', async () => {
    const target = new RecordingTarget();
    target.add({ name: 'floor', scale: { min: 2, max: 5 } }, 4);
    target.functions.set('floor', { ...target.functions.get('floor')!, readyReplicas: 0 });
    const autoscaler = new Autoscaler({ target, sources: [], clock: new ManualClock(1_000_000) });
    await autoscaler.poke('floor');
    assert.deepEqual(target.calls, []);
  });

  it('forgets the traffic of a function deleted and created again under its name', async () => {
    const clock = new ManualClock(1_000_000);
    const target = new RecordingTarget();
    // initial 0: a function created at zero is not raised to its initial scale.
    target.add({ name: 'again', scale: { target: 10, targetUtilizationPercent: 100, initial: 0 } }, 1);
    const first = { ...target.functions.get('again')!, createdAt: '2026-01-01T00:00:00.000Z' };
    target.functions.set('again', first);
    let traffic = 25;
    const autoscaler = new Autoscaler({ target, sources: [{ collect: () => [{ name: 'again', concurrency: traffic, requests: traffic }] }], clock });
    clock.advance(2000);
    await autoscaler.tick();
    assert.deepEqual(target.calls, [['again', 3]]);
    // Deleted and created again, at zero and quiet, between two ticks.
    traffic = 0;
    target.functions.set('again', { ...first, replicas: 0, readyReplicas: 0, createdAt: '2026-01-01T00:00:01.500Z' });
    clock.advance(2000);
    await autoscaler.tick();
    assert.equal(target.calls.length, 1, 'the old calls do not scale the new function');
    assert.equal(autoscaler.lastDecision('again')?.desired, 0);
  });

  describe('pending messages (event triggers)', () => {
    const sample = (name: string, pending: number | undefined): FunctionSample =>
      pending === undefined ? { name, concurrency: 0, requests: 0 } : { name, concurrency: 0, requests: 0, pending };

    it('scale a function at zero with no requests to ceil(pending / pendingTarget) at the first decision, clamped by max', async () => {
      const clock = new ManualClock(1_000_000);
      const target = new RecordingTarget();
      target.add({ name: 'orders', scale: { max: 10 } }, 0);
      target.add({ name: 'capped', scale: { max: 3 } }, 0);
      target.add({ name: 'knob', scale: { max: 10, pendingTarget: 20 } }, 0);
      const source = { collect: () => ['orders', 'capped', 'knob'].map((name) => sample(name, 45)) };
      const autoscaler = new Autoscaler({ target, sources: [source], clock });
      clock.advance(1000);
      await autoscaler.tick();
      // Default pendingTarget 10: ceil(45 / 10) = 5; max 3; the spec's pendingTarget 20: 3.
      assert.deepEqual(target.calls.sort(), [['capped', 3], ['knob', 3], ['orders', 5]]);
      assert.equal(autoscaler.lastDecision('orders')?.pendingWant, 5);
      assert.equal(autoscaler.lastDecision('orders')?.panicking, false);
    });

    it('the cluster default pendingTarget comes from the config', async () => {
      const clock = new ManualClock(1_000_000);
      const target = new RecordingTarget();
      target.add({ name: 'orders', scale: { max: 10 } }, 0);
      const autoscaler = new Autoscaler({
        target,
        sources: [{ collect: () => [sample('orders', 45)] }],
        clock,
        config: { ...defaultAutoscalerConfig, pendingTargetDefault: 5 },
      });
      clock.advance(1000);
      await autoscaler.tick();
      assert.deepEqual(target.calls, [['orders', 9]]);
    });

    it('combines the gateways with max, not a sum: two reporting 50 are 50 messages', async () => {
      const clock = new ManualClock(1_000_000);
      const target = new RecordingTarget();
      target.add({ name: 'orders', scale: { max: 100 } }, 0);
      const gateways = [{ collect: () => [sample('orders', 50)] }, { collect: () => [sample('orders', 50)] }, { collect: () => [sample('orders', undefined)] }];
      const autoscaler = new Autoscaler({ target, sources: gateways, clock });
      clock.advance(1000);
      await autoscaler.tick();
      assert.deepEqual(target.calls, [['orders', 5]], 'ceil(50 / 10), not ceil(100 / 10)');
    });

    it('leaves out a pending count that is not a non-negative finite number', async () => {
      const clock = new ManualClock(1_000_000);
      const target = new RecordingTarget();
      target.add({ name: 'orders', scale: { max: 100 } }, 0);
      target.add({ name: 'junk', scale: { max: 100 } }, 0);
      const bad = [NaN, -5, Infinity, '70' as unknown as number];
      const gateways = [
        ...bad.map((p) => ({ collect: () => [sample('orders', p), sample('junk', p)] })),
        { collect: () => [sample('orders', 20)] },
      ];
      const autoscaler = new Autoscaler({ target, sources: gateways, clock });
      clock.advance(1000);
      await autoscaler.tick();
      assert.deepEqual(target.calls, [['orders', 2]], 'orders by its one good reading; junk stays at zero');
      assert.equal(autoscaler.lastDecision('junk')?.desired, 0);
    });

    it('holds a function above zero while messages wait, and lets it go a stable window plus the grace after they read 0', async () => {
      const clock = new ManualClock(1_000_000);
      const target = new RecordingTarget();
      target.add({ name: 'backlog', scale: { initial: 1 } }, 1);
      target.add({ name: 'drained', scale: { initial: 1 } }, 1);
      target.add({ name: 'plain', scale: { initial: 1 } }, 1);
      const autoscaler = new Autoscaler({
        target,
        sources: [{ collect: () => [sample('backlog', 1), sample('drained', 0), sample('plain', undefined)] }],
        clock,
      });
      const zeroAt = new Map<string, number>();
      for (let s = 1; s <= 200; s++) {
        clock.advance(1000);
        await autoscaler.tick();
        for (const [name, fn] of target.functions) if (fn.replicas === 0 && !zeroAt.has(name)) zeroAt.set(name, s);
      }
      assert.equal(target.functions.get('backlog')!.replicas, 1, 'one message waiting keeps one replica');
      // Data from 1 s; a whole stable window (60 s) of it at 61 s, decided then; + 30 s grace.
      assert.equal(zeroAt.get('plain'), 91);
      assert.equal(zeroAt.get('drained'), 91, 'pending read as 0 is idle, as no traffic is');
    });
  });
});

/** A gateway's GET /system/stats on a local port: `answer` says whether it answers, and what. */
async function fakeGateway(samples: () => FunctionSample[] | 'fail'): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    const s = samples();
    if (s === 'fail') return void res.writeHead(503).end('overloaded');
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ samples: s }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe('Autoscaler with stats that go missing', () => {
  // 350 in flight at target 70: 5 replicas.
  const spec = { name: 'steady', scale: { min: 0, max: 50 } };

  it('keeps the replicas through 150 s of failed scrapes at steady load', async () => {
    const clock = new ManualClock(1_000_000);
    const target = new RecordingTarget();
    target.add(spec, 5);
    let failing = false;
    const gateway = await fakeGateway(() => (failing ? 'fail' : [{ name: 'steady', concurrency: 350, requests: 3000 }]));
    try {
      const source = new HttpStatsSource({ peers: () => [{ id: 'gw', url: gateway.url }], token: 't' });
      const warnings: string[] = [];
      const logger = { info: () => {}, warn: (msg: string) => void warnings.push(msg) };
      const autoscaler = new Autoscaler({ target, sources: [source], clock, logger });
      const seen: number[] = [];
      for (let s = 1; s <= 400; s++) {
        failing = s > 100 && s <= 250;
        clock.advance(1000);
        await autoscaler.tick();
        seen.push(target.functions.get('steady')!.replicas);
      }
      assert.ok(seen.every((n) => n === 5), `replicas stayed 5: ${[...new Set(seen)].join(', ')}`);
      assert.equal(warnings.filter((m) => m.startsWith('holding the scale')).length, 1, 'said once why it held');
    } finally {
      await gateway.close();
    }
  });

  it('scales on the gateways that answer when one of two fails: within 1 of the right count', async () => {
    const clock = new ManualClock(1_000_000);
    const target = new RecordingTarget();
    target.add(spec, 5);
    let failing = false;
    // Each gateway carries half of 700 in flight: 10 replicas at target 70.
    const half = () => [{ name: 'steady', concurrency: 350, requests: 1500 }];
    const a = await fakeGateway(half);
    const b = await fakeGateway(() => (failing ? 'fail' : half()));
    try {
      const source = new HttpStatsSource({ peers: () => [{ id: 'a', url: a.url }, { id: 'b', url: b.url }], token: 't' });
      const autoscaler = new Autoscaler({ target, sources: [source], clock });
      const seen: number[] = [];
      for (let s = 1; s <= 400; s++) {
        failing = s > 100;
        clock.advance(1000);
        await autoscaler.tick();
        if (s > 30) seen.push(target.functions.get('steady')!.replicas);
      }
      assert.ok(seen.every((n) => n >= 9 && n <= 11), `replicas stayed in 9..11: ${[...new Set(seen)].join(', ')}`);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('a new Autoscaler does not scale a loaded function below its ready count on its first seconds of data', async () => {
    const clock = new ManualClock(1_000_000);
    const target = new RecordingTarget();
    // 6 replicas ready; the load has just dropped to what 2 need (140 in flight at target 70).
    target.add(spec, 6);
    const autoscaler = new Autoscaler({ target, sources: [steadyTraffic(['steady'], 140, 1000)], clock });
    const seen: number[] = [];
    for (let s = 1; s <= 200; s++) {
      clock.advance(1000);
      await autoscaler.tick();
      seen.push(target.functions.get('steady')!.replicas);
    }
    assert.ok(seen.slice(0, 59).every((n) => n === 6), `held 6 for a stable window: ${seen.slice(0, 59).join(' ')}`);
    // Then the normal rule: out of panic, down to 2 (6 -> 3 -> 2 by the scale-down rate).
    assert.equal(seen.at(-1), 2);
  });

  it('a source that throws is a gateway that did not answer: no data, the scale holds', async () => {
    const clock = new ManualClock(1_000_000);
    const target = new RecordingTarget();
    target.add({ name: 'steady', scale: { min: 0, max: 50 } }, 1);
    let throwing = false;
    const warnings: string[] = [];
    const source = {
      collect: (): FunctionSample[] => {
        if (throwing) throw new Error('gateway gone');
        return [{ name: 'steady', concurrency: 350, requests: 3000 }];
      },
    };
    const autoscaler = new Autoscaler({ target, sources: [source], clock, logger: { info: () => {}, warn: (m) => void warnings.push(m) } });
    for (let s = 1; s <= 200; s++) {
      throwing = s > 20;
      clock.advance(1000);
      await autoscaler.tick();
    }
    assert.equal(target.functions.get('steady')!.replicas, 5);
    assert.equal(autoscaler.lastDecision('steady')?.holding, true);
    assert.equal(warnings.filter((m) => m.startsWith('collecting stats failed')).length, 1);
  });

  it('only the functions running when it starts begin in panic: one deployed later starts as usual', async () => {
    const clock = new ManualClock(1_000_000);
    const target = new RecordingTarget();
    target.add(spec, 6);
    const autoscaler = new Autoscaler({ target, sources: [steadyTraffic(['steady', 'later'], 140, 1000)], clock });
    clock.advance(1000);
    await autoscaler.tick();
    assert.equal(autoscaler.lastDecision('steady')?.panicking, true);
    target.add({ name: 'later', scale: { min: 0, max: 50 } }, 6);
    clock.advance(2000);
    await autoscaler.tick();
    assert.equal(autoscaler.lastDecision('later')?.panicking, false);
    assert.equal(target.functions.get('later')!.replicas, 3, 'down by the rate limit at once');
    assert.equal(target.functions.get('steady')!.replicas, 6);
  });
});

describe('Autoscaler, demand decider', () => {
  /** One gateway's second: `rps` arrivals, `queued` waiting, calls that take `serviceMs`. */
  const busy = (name: string, rps: number, serviceMs: number | undefined, queued = 0, inFlight = (rps * (serviceMs ?? 0)) / 1000): FunctionSample => ({
    name,
    concurrency: inFlight + queued,
    requests: rps,
    queued,
    completed: serviceMs === undefined ? 0 : rps,
    ...(serviceMs === undefined ? {} : { serviceMs }),
  });
  const run = async (autoscaler: Autoscaler, clock: ManualClock, seconds: number) => {
    for (let i = 0; i < seconds; i++) {
      clock.advance(1000);
      await autoscaler.tick();
    }
  };

  it('decides every second, and scales on arrivals x service time: a queue is not demand', async () => {
    const clock = new ManualClock(1_000_000);
    const target = new RecordingTarget();
    target.add({ name: 'f', scale: { target: 10, targetUtilizationPercent: 100, max: 100 } }, 1);
    // 200 req/s x 50 ms = 10 in flight; the gateway's concurrency counts a standing queue of 90 too.
    let sample = busy('f', 200, 50, 0, 100);
    const autoscaler = new Autoscaler({ target, sources: [{ collect: () => [sample] }], clock });
    await run(autoscaler, clock, 1);
    assert.equal(autoscaler.lastDecision('f')?.desired, 1, '10 in flight at target 10: one replica, not ten');
    sample = busy('f', 800, 50);
    await run(autoscaler, clock, 1);
    assert.deepEqual(target.calls, [['f', 4]], 'the next second already decides again: the latest second, 800 x 0.05 = 40 -> 4');
    const knative = new RecordingTarget();
    knative.add({ name: 'f', scale: { target: 10, targetUtilizationPercent: 100, max: 100 } }, 1);
    const old = new Autoscaler({ target: knative, sources: [{ collect: () => [busy('f', 200, 50, 0, 100)] }], clock, mode: 'knative' });
    clock.advance(2000);
    await old.tick();
    assert.deepEqual(knative.calls, [['f', 10]], 'Knative counts the queue as lasting concurrency');
  });

  it('while the service time is young, scales on the requests at replicas, the queue left out', async () => {
    const clock = new ManualClock(1_000_000);
    const target = new RecordingTarget();
    target.add({ name: 'f', scale: { target: 10, targetUtilizationPercent: 100, max: 100 } }, 1);
    // No call has finished: 30 at the replica, 500 queued.
    const autoscaler = new Autoscaler({ target, sources: [{ collect: () => [busy('f', 600, undefined, 500, 30)] }], clock });
    await run(autoscaler, clock, 1);
    assert.deepEqual(target.calls, [['f', 3]]);
    assert.equal(autoscaler.lastDecision('f')?.backlogWant, 0, 'no backlog term without a service time');
  });

  it('the backlog term raises a decision and starts a panic, and panic does not hold it once drained', async () => {
    const clock = new ManualClock(1_000_000);
    const target = new RecordingTarget();
    target.add({ name: 'f', scale: { target: 10, targetUtilizationPercent: 100, max: 100 } }, 1);
    let sample = busy('f', 200, 50);
    const autoscaler = new Autoscaler({ target, sources: [{ collect: () => [sample] }], clock });
    await run(autoscaler, clock, 10);
    assert.deepEqual(target.calls, []);
    // 3000 queued: horizon = p50 start-up (1 s before one is measured) + 1 s decision = 2 s:
    // (200 + 3000 / 2) x 0.05 = 85 -> 9 replicas; the window's demand alone wants 1.
    sample = busy('f', 200, 50, 3000);
    await run(autoscaler, clock, 1);
    const d = autoscaler.lastDecision('f')!;
    assert.deepEqual([d.backlogWant, d.desired, d.panicking], [9, 9, true]);
    // Drained: panic holds what the windows wanted (1), not the backlog; the scale-down rate
    // (2: at most halve) is the only brake. Knative's panic would hold 9 for a stable window.
    sample = busy('f', 200, 50, 0);
    await run(autoscaler, clock, 1);
    assert.deepEqual([autoscaler.lastDecision('f')!.desired, autoscaler.lastDecision('f')!.panicking], [4, true]);
    await run(autoscaler, clock, 2);
    assert.deepEqual((target.calls as [string, number][]).map((c) => c[1]), [9, 4, 2, 1]);
  });

  it('reads counts over a longer interval as per-second rates (a scrape after failed ones)', async () => {
    const clock = new ManualClock(1_000_000);
    const target = new RecordingTarget();
    target.add({ name: 'f', scale: { target: 10, targetUtilizationPercent: 100, max: 100, metric: 'rps' } }, 3);
    const autoscaler = new Autoscaler({ target, sources: [{ collect: () => [{ ...busy('f', 30 * 150, 50), spanMs: 150_000 }] }], clock });
    await run(autoscaler, clock, 1);
    assert.deepEqual(target.calls, [], '4500 requests over 150 s are 30 req/s: 3 replicas, as it has');
  });

  it('a poke at zero sizes the scale-up by the queue once the service time is known, and asks for one without it', async () => {
    const clock = new ManualClock(1_000_000);
    const target = new RecordingTarget();
    target.add({ name: 'known', scale: { target: 10, targetUtilizationPercent: 100, max: 50, min: 0 } }, 1);
    target.add({ name: 'fresh', scale: { target: 10, targetUtilizationPercent: 100, max: 50, min: 0 } }, 0);
    let samples = [busy('known', 20, 100)];
    const autoscaler = new Autoscaler({ target, sources: [{ collect: () => samples }], clock });
    await run(autoscaler, clock, 5);
    // Quiet, then at zero (as after the grace period).
    samples = [];
    target.functions.set('known', { ...target.functions.get('known')!, replicas: 0, readyReplicas: 0 });
    await run(autoscaler, clock, 3);
    target.calls.length = 0;
    // 800 queued, 2 s horizon, 100 ms each: 800 / 2 x 0.1 = 40 in flight -> 4 replicas.
    await Promise.all([autoscaler.poke('known', { queued: 800 }), autoscaler.poke('known', { queued: 800 })]);
    await autoscaler.poke('fresh', { queued: 800 });
    assert.deepEqual(target.calls, [['known', 4], ['fresh', 1]]);
  });

  it('calls an activation stalled when no replica is ready after 10 s, adds none then, and clears it when one is', async () => {
    const clock = new ManualClock(1_000_000);
    const target = new RecordingTarget();
    target.add({ name: 'f', scale: { target: 10, targetUtilizationPercent: 100, max: 50 } }, 1);
    target.functions.set('f', { ...target.functions.get('f')!, readyReplicas: 0 });
    // The replica never comes up; the scale call records but readiness stays 0.
    target.scale = async (name, n) => {
      target.calls.push([name, n]);
      target.functions.set(name, { ...target.functions.get(name)!, replicas: n });
    };
    const seen: [string, string | undefined][] = [];
    const autoscaler = new Autoscaler({
      target,
      sources: [{ collect: () => [busy('f', 20, 100, 200, 0)] }],
      clock,
      onActivation: (name, stall) => seen.push([name, stall?.reason]),
    });
    await run(autoscaler, clock, 9);
    assert.equal(autoscaler.activation('f'), undefined);
    const before = target.functions.get('f')!.replicas;
    await run(autoscaler, clock, 3);
    assert.match(autoscaler.activation('f')?.reason ?? '', /no replica became ready within 10\.0 s \(no start-up measured yet\)/);
    assert.equal(seen.length, 1);
    await run(autoscaler, clock, 20);
    assert.equal(target.functions.get('f')!.replicas, before, 'a stalled activation gets no more replicas');
    target.functions.set('f', { ...target.functions.get('f')!, readyReplicas: 1 });
    await run(autoscaler, clock, 1);
    assert.equal(autoscaler.activation('f'), undefined);
    assert.deepEqual(seen.at(-1), ['f', undefined]);
  });

  it('an activation with unschedulable replicas is stalled at once', async () => {
    const clock = new ManualClock(1_000_000);
    const target = new RecordingTarget();
    target.add({ name: 'gpu', scale: { max: 10 } }, 2);
    target.functions.set('gpu', { ...target.functions.get('gpu')!, readyReplicas: 1, unschedulable: 1 });
    const autoscaler = new Autoscaler({ target, sources: [{ collect: () => [] }], clock });
    await run(autoscaler, clock, 1);
    assert.match(autoscaler.activation('gpu')?.reason ?? '', /1 of 1 replicas asked for have no room on the nodes/);
  });

  it('holds initial until it was reached once', async () => {
    const clock = new ManualClock(1_000_000);
    const target = new RecordingTarget();
    const autoscaler = new Autoscaler({ target, sources: [{ collect: () => [] }], clock });
    await run(autoscaler, clock, 1);
    // Deployed after the autoscaler started, its 10 replicas not ready yet.
    target.add({ name: 'f', scale: { initial: 10, max: 20 } }, 10);
    target.functions.set('f', { ...target.functions.get('f')!, readyReplicas: 0 });
    await run(autoscaler, clock, 5);
    assert.deepEqual(target.calls, [], 'no traffic, none ready yet: the 10 stay');
    target.functions.set('f', { ...target.functions.get('f')!, readyReplicas: 10 });
    await run(autoscaler, clock, 120);
    assert.ok(target.functions.get('f')!.replicas < 10, 'once reached, the load decides');
  });

  it('a request queued at zero with no service time measured yet brings a replica and keeps it, poke or not', async () => {
    const clock = new ManualClock(1_000_000);
    const target = new RecordingTarget();
    target.add({ name: 'f', scale: { initial: 0, scaleToZeroGrace: '0s', stableWindow: '6s' } }, 0);
    let queued = 0;
    const autoscaler = new Autoscaler({ target, sources: [{ collect: () => [busy('f', queued, undefined, queued)] }], clock });
    await run(autoscaler, clock, 30);
    assert.deepEqual(target.calls, [], 'idle at zero stays at zero');
    // The gateway's poke was lost: the tick reads its queue.
    queued = 1;
    await run(autoscaler, clock, 1);
    assert.deepEqual(target.calls, [['f', 1]]);
    // Starting (not ready) for ten seconds: the queued request keeps its replica.
    await run(autoscaler, clock, 10);
    assert.deepEqual(target.calls, [['f', 1]], 'no decision takes the replica a request waits for');
  });

  it('an operator\'s scale below initial before it was reached ends the floor', async () => {
    const clock = new ManualClock(1_000_000);
    const target = new RecordingTarget();
    const autoscaler = new Autoscaler({ target, sources: [{ collect: () => [] }], clock });
    await run(autoscaler, clock, 1);
    target.add({ name: 'f', scale: { initial: 1 } }, 1);
    target.functions.set('f', { ...target.functions.get('f')!, readyReplicas: 0 });
    await run(autoscaler, clock, 1);
    // `fn scale f 0` before the autoscaler saw the replica ready.
    target.functions.set('f', { ...target.functions.get('f')!, replicas: 0 });
    await run(autoscaler, clock, 10);
    assert.deepEqual(target.calls, [], 'the operator\'s zero stands');
    assert.equal(target.functions.get('f')!.replicas, 0);
    // Scaled to zero before this autoscaler's first look: initial does not raise it either.
    target.add({ name: 'g', scale: { initial: 2 } }, 0);
    await run(autoscaler, clock, 10);
    assert.deepEqual(target.calls, [], 'nothing raised g');
  });

  it('a new autoscaler backfills from the gateways\' rings and decides on a full window at once', async () => {
    const clock = new ManualClock(1_000_000);
    const target = new RecordingTarget();
    target.add({ name: 'f', scale: { target: 10, targetUtilizationPercent: 100, max: 100 } }, 6);
    // The last minute: 1000 req/s x 50 ms = 50 in flight for 50 s, 0 for the last 10 s.
    const backfill = Array.from({ length: 60 }, (_, i) => ({ ageMs: (60 - i) * 1000, samples: [busy('f', i < 50 ? 1000 : 0, 50)], answered: 1 }));
    let first = true;
    const source = {
      collect: () => {
        const c = { samples: [busy('f', 0, 50)], answered: 1, expected: 1, ...(first ? { backfill } : {}) };
        first = false;
        return c;
      },
    };
    const autoscaler = new Autoscaler({ target, sources: [source], clock });
    await run(autoscaler, clock, 1);
    // Over the stable window, 50 x 50 / 60 = 41.7 in flight -> 5; without the ring it had one second of 0.
    assert.equal(autoscaler.lastDecision('f')?.stableWant, 5);
  });
});
