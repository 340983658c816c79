import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MutableEndpointSet } from '@kubefn/platform';
import { FunctionRouter } from './router.js';
import { ConcurrencyStats } from './stats.js';

describe('ConcurrencyStats', () => {
  it('averages in-flight requests over time and counts requests', () => {
    let now = 0;
    const s = new ConcurrencyStats(() => now);
    s.begin('f'); // 1 in flight from 0 ms
    now = 500;
    s.begin('f'); // 2 in flight from 500 ms
    now = 1000;
    const [sample] = s.collect(1000).samples;
    assert.deepEqual(sample, { name: 'f', concurrency: 1.5, requests: 2, completed: 0 });
    s.end('f');
    s.end('f');
    now = 2000;
    assert.deepEqual(s.collect(2000).samples, [{ name: 'f', concurrency: 0, requests: 0, completed: 0 }]);
    // A quiet function is left out; the gateway in process has answered all the same.
    assert.deepEqual(s.collect(3000), { samples: [], answered: 1, expected: 1 });
  });

  it('reports pending messages set from outside as a level: kept across collects, cleared, or dropped when stale', () => {
    let now = 0;
    const s = new ConcurrencyStats(() => now, { pendingMaxAgeMs: 10_000 });
    s.setPending('orders', 12);
    s.begin('web');
    now = 1000;
    assert.deepEqual(s.collect(1000).samples, [
      { name: 'web', concurrency: 1, requests: 1, completed: 0 },
      { name: 'orders', concurrency: 0, requests: 0, completed: 0, pending: 12 },
    ]);
    s.begin('orders');
    s.setPending('orders', 3);
    now = 2000;
    assert.deepEqual(s.collect(2000).samples.find((x) => x.name === 'orders'), { name: 'orders', concurrency: 1, requests: 1, completed: 0, pending: 3 });
    s.end('orders');
    now = 3000;
    assert.deepEqual(s.collect(3000).samples.find((x) => x.name === 'orders'), { name: 'orders', concurrency: 0, requests: 0, completed: 0, pending: 3 });
    // Not read again for longer than pendingMaxAgeMs: unknown, not 0 (set at 1000 ms).
    now = 11_001;
    assert.equal(s.collect(11_001).samples.find((x) => x.name === 'orders')?.pending, undefined);
    s.setPending('orders', 0);
    assert.equal(s.collect(11_001).samples.find((x) => x.name === 'orders')?.pending, 0);
    s.setPending('orders', undefined);
    assert.equal(s.collect(11_001).samples.find((x) => x.name === 'orders')?.pending, undefined, 'cleared');
    assert.equal(s.collect(11_001).samples.find((x) => x.name === 'orders'), undefined, 'and quiet: left out after one zero sample');
    s.setPending('orders', 5);
    s.forget('orders');
    assert.equal(s.collect(11_001).samples.find((x) => x.name === 'orders'), undefined, 'forget drops it too');
  });

  it('refuses a pending count that is not a non-negative finite number', () => {
    const s = new ConcurrencyStats(() => 0);
    for (const bad of [-1, NaN, Infinity]) assert.throws(() => s.setPending('f', bad), RangeError);
    assert.deepEqual(s.collect(0).samples, []);
  });

  it('gives two readers the same traffic: reading takes nothing from the other', () => {
    let now = 0;
    const s = new ConcurrencyStats(() => now);
    const a = s.reader();
    const b = s.reader();
    for (let i = 0; i < 4; i++) s.begin('f');
    now = 1000;
    const fromA = a.collect(1000).samples;
    const fromDefault = s.collect(1000).samples;
    const fromB = b.collect(1000).samples;
    assert.deepEqual(fromA, [{ name: 'f', concurrency: 4, requests: 4, completed: 0 }]);
    assert.deepEqual(fromB, fromA);
    assert.deepEqual(fromDefault, fromA);
  });

  it('a reader that missed a collection gets it all in the next: counts summed, concurrency over the real elapsed time', () => {
    let now = 0;
    const s = new ConcurrencyStats(() => now);
    const every = s.reader();
    const skipping = s.reader();
    s.begin('f'); // 1 in flight over 0..1000
    now = 1000;
    const first = every.collect(1000).samples[0]!;
    s.begin('f');
    s.begin('f'); // 3 in flight over 1000..2000
    now = 2000;
    const second = every.collect(2000).samples[0]!;
    const both = skipping.collect(2000).samples[0]!;
    assert.deepEqual([first.requests, second.requests], [1, 2]);
    assert.equal(both.requests, 3, 'the requests of both seconds');
    assert.equal(both.concurrency, 2, 'mean of 1 and 3 over the 2 s');
  });

  it('counts a function forgotten and seen again from zero, never negative', () => {
    let now = 0;
    const s = new ConcurrencyStats(() => now);
    const r = s.reader();
    for (let i = 0; i < 5; i++) {
      s.begin('f');
      s.end('f');
    }
    now = 1000;
    assert.equal(r.collect(1000).samples[0]?.requests, 5);
    s.forget('f');
    s.begin('f');
    now = 2000;
    assert.deepEqual(r.collect(2000).samples, [{ name: 'f', concurrency: 1, requests: 1, completed: 0 }]);
  });

  it('drops the counters of a function quiet for idleForgetMs, and starts it again from zero', () => {
    let now = 0;
    const s = new ConcurrencyStats(() => now, { idleForgetMs: 10_000 });
    const r = s.reader();
    s.begin('f');
    s.end('f');
    now = 10_000;
    assert.deepEqual(s.read(now).functions, [], 'dropped');
    s.begin('f');
    now = 11_000;
    assert.equal(r.collect(now).samples[0]?.requests, 1);
  });

  it('measures service time from the lease to its release: a call that queued 200 ms and held its replica 50 ms is ~50 ms', async () => {
    let now = 0;
    const endpoints = new MutableEndpointSet();
    const router = new FunctionRouter({ name: 'f', endpoints, containerConcurrency: 1, queue: { maxPerFunction: 10 }, onNoReplica: () => {} });
    const s = new ConcurrencyStats(() => now, { queueDepths: () => [['f', router.queued]] });
    try {
      s.begin('f');
      const acquiring = router.acquire(new AbortController().signal, 5000);
      now = 100;
      assert.equal(s.collect(100).samples[0]?.queued, 1, 'the call waits in the queue');
      now = 200;
      endpoints.set([{ id: 'a', url: 'http://127.0.0.1:1', adminUrl: '' }]);
      const lease = s.track('f', await acquiring);
      now = 250;
      lease.release();
      lease.release(); // counts once
      s.end('f');
      const [sample] = s.collect(250).samples;
      assert.equal(sample?.completed, 1);
      assert.equal(sample?.queued, 0);
      assert.ok(sample?.serviceMs !== undefined && sample.serviceMs >= 45 && sample.serviceMs <= 55, `service ${sample?.serviceMs} ms, without the 200 ms queued`);
      assert.equal(sample?.concurrency, 1, 'in flight counts the queued time as before: 1 over 100..250');
    } finally {
      router.close();
    }
  });

  it('moves the service-time average with a half-life of 5 s: steady, yet most of the way to a lasting change within seconds', () => {
    let now = 0;
    const s = new ConcurrencyStats(() => now);
    const serve = (ms: number) => {
      s.begin('f');
      s.served('f', ms);
      s.end('f');
    };
    // 100 calls a second of 20 ms for a minute, then 60 ms.
    for (; now < 60_000; now += 10) serve(20);
    const service = () => s.read(now).functions[0]!.serviceMs!;
    assert.ok(Math.abs(service() - 20) < 0.01);
    serve(2000); // one odd call barely moves it
    assert.ok(service() < 24, `one slow call: ${service()}`);
    const until = (t: number) => {
      for (; now < t; now += 10) serve(60);
    };
    until(65_000);
    assert.ok(service() > 38 && service() < 43, `after 5 s: ${service()}, about half way`);
    until(70_000);
    assert.ok(service() > 48 && service() < 53, `after 10 s: ${service()}`);
  });

  it('keeps a ring of closed seconds: a reader\'s first collect carries those before it, oldest first, bounded; later ones none', () => {
    let now = 0;
    const s = new ConcurrencyStats(() => now, { historySeconds: 5 });
    // Second k (k = 0..7) has k + 1 requests, each in flight for its first half.
    for (let k = 0; k < 8; k++) {
      now = k * 1000;
      for (let i = 0; i <= k; i++) s.begin('f');
      if (k === 5) s.begin('once');
      now = k * 1000 + 500;
      for (let i = 0; i <= k; i++) s.end('f');
      if (k === 5) s.end('once');
    }
    now = 8000;
    const r = s.reader();
    now = 8500;
    const first = r.collect(8500);
    const backfill = first.backfill!;
    assert.deepEqual(backfill.map((b) => b.ageMs), [4500, 3500, 2500, 1500, 500], 'the last 5 seconds that ended by the reader\'s start, oldest first');
    assert.ok(backfill.every((b) => b.answered === 1));
    assert.deepEqual(
      backfill.map((b) => b.samples.find((x) => x.name === 'f')).map((x) => [x?.requests, x?.concurrency]),
      [[4, 2], [5, 2.5], [6, 3], [7, 3.5], [8, 4]],
    );
    assert.deepEqual(backfill.map((b) => b.samples.some((x) => x.name === 'once')), [false, false, true, false, false], 'a quiet function drops out');
    assert.equal(first.samples.length, 0, 'no traffic since the reader started');
    now = 9000;
    assert.equal(r.collect(9000).backfill, undefined, 'only the first collect has it');
  });

  it('closes seconds in which nothing happened from the counters as they stood, and skips what a long quiet left behind', () => {
    let now = 0;
    const s = new ConcurrencyStats(() => now, { historySeconds: 3 });
    s.begin('f'); // held, no event until 3500
    now = 3500;
    const seconds = s.history(3500);
    assert.deepEqual(seconds.map((b) => [b.ageMs, b.samples[0]?.concurrency, b.samples[0]?.requests]), [[2500, 1, 1], [1500, 1, 0], [500, 1, 0]]);
    s.end('f');
    now = 1_000_000;
    const later = s.history(now);
    assert.deepEqual(later.map((b) => [b.ageMs, b.samples.length]), [[2000, 0], [1000, 0], [0, 0]], 'quiet seconds are there, with nothing in them');
  });

  it('keeps the busiest maxFunctions in a ring second', () => {
    let now = 0;
    const s = new ConcurrencyStats(() => now, { maxFunctions: 2 });
    for (const [name, n] of [['a', 1], ['b', 3], ['c', 2]] as const) for (let i = 0; i < n; i++) s.begin(name);
    now = 1000;
    assert.deepEqual(s.history(1000)[0]!.samples.map((x) => x.name), ['b', 'c']);
  });

  it('replies with the counters, its instance and a rising seq, and the ring with its base only when asked', () => {
    let now = 1500;
    const s = new ConcurrencyStats(() => now, { instance: 'gw-1' });
    s.begin('f');
    now = 3200;
    const plain = s.reply(3200);
    assert.equal(plain.instance, 'gw-1');
    assert.equal(plain.history, undefined);
    assert.deepEqual(plain.functions, [{ name: 'f', gen: 1, requests: 1, inFlightMs: 1700, completed: 0, inFlight: 1 }]);
    const withHistory = s.reply(3200, true);
    assert.equal(withHistory.seq, plain.seq + 1);
    assert.equal(withHistory.history!.base.now, 3000, 'the end of the last closed second');
    assert.equal(withHistory.history!.base.functions[0]!.inFlightMs, 1500);
    assert.deepEqual(withHistory.history!.seconds.map((b) => [b.ageMs, b.samples[0]!.concurrency]), [[1200, 1], [200, 1]]);
    assert.notEqual(new ConcurrencyStats(() => 0).instance, new ConcurrencyStats(() => 0).instance, 'random per start');
  });

  it('refuses a ring size or function bound that is not a whole number above 0', () => {
    assert.throws(() => new ConcurrencyStats(() => 0, { historySeconds: 0 }), RangeError);
    assert.throws(() => new ConcurrencyStats(() => 0, { maxFunctions: 1.5 }), RangeError);
  });
});
