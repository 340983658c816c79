import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MetricWindow } from './window.js';

describe('MetricWindow', () => {
  it('averages over a partial window by the seconds it has', () => {
    const w = new MetricWindow(60_000);
    for (let t = 0; t < 3000; t += 1000) w.add(t, 10, 5);
    assert.equal(w.average(2500, 60_000, 'concurrency'), 10);
    assert.equal(w.average(2500, 60_000, 'rps'), 5);
  });

  it('drops the seconds older than its capacity', () => {
    const w = new MetricWindow(10_000);
    w.add(0, 10, 0);
    w.add(3000, 10, 0);
    assert.equal(w.size, 2);
    assert.equal(w.average(3500, 60_000, 'concurrency'), 10, '20 over the 2 known seconds');
    w.add(20_000, 0, 0);
    assert.equal(w.size, 1);
    assert.equal(w.average(20_500, 6000, 'concurrency'), 0);
  });

  it('sums samples from several gateways in one second', () => {
    const w = new MetricWindow(60_000);
    w.add(1000, 2, 1);
    w.add(1400, 3, 1);
    assert.equal(w.average(1500, 6000, 'concurrency'), 5);
  });

  it('has no average without data in the window', () => {
    const w = new MetricWindow(60_000);
    assert.equal(w.average(1000, 6000, 'concurrency'), undefined);
    w.add(0, 1, 1);
    assert.equal(w.average(100_000, 6000, 'concurrency'), undefined);
  });
});

describe('MetricWindow with samples filed at collection time', () => {
  it('a 1-second window holds the newest sample', () => {
    const w = new MetricWindow(60_000);
    w.add(5_321, 4, 2);
    assert.equal(w.average(5_321, 1000, 'concurrency'), 4);
  });
});

describe('MetricWindow pending readings', () => {
  it('takes the max of several gateways in one second, as they read the same consumer', () => {
    const w = new MetricWindow(60_000);
    w.add(1000, 2, 1, 50);
    w.add(1400, 3, 1, 50);
    w.add(1600, 0, 0);
    assert.equal(w.pendingLatest(1500, 6000), 50);
    assert.equal(w.pendingAverage(1500, 6000), 50);
    assert.equal(w.average(1500, 6000, 'concurrency'), 5, 'concurrency still sums');
    w.add(1700, 0, 0, 70);
    assert.equal(w.pendingLatest(1700, 6000), 70);
  });

  it('averages the readings it has, leaving out seconds without one (a level, not a count)', () => {
    const w = new MetricWindow(60_000);
    w.add(1000, 0, 0, 40);
    w.add(2000, 0, 0);
    w.add(3000, 0, 0, 20);
    assert.equal(w.pendingAverage(3000, 60_000), 30);
    assert.equal(w.pendingAverage(3000, 1000), 20);
  });

  it('the latest reading is the newest within the given time, else none', () => {
    const w = new MetricWindow(60_000);
    assert.equal(w.pendingLatest(1000, 6000), undefined);
    w.add(1000, 0, 0, 12);
    w.add(2000, 0, 0);
    w.add(3000, 0, 0);
    assert.equal(w.pendingLatest(3000, 6000), 12, 'a missed reading or two keeps the last one');
    assert.equal(w.pendingLatest(6999, 6000), 12);
    assert.equal(w.pendingLatest(7000, 6000), undefined, 'as old as the given time: (now - withinMs, now] leaves it out');
    assert.equal(w.pendingAverage(3000, 60_000), 12);
    const none = new MetricWindow(60_000);
    none.add(1000, 1, 1);
    assert.equal(none.pendingAverage(1000, 60_000), undefined, 'no reading at all: no pending demand');
  });
});

describe('MetricWindow known and unknown seconds', () => {
  it('leaves a second without a sample out of the average: unknown is not zero', () => {
    const w = new MetricWindow(60_000);
    w.add(1000, 10, 4);
    // 2..4 s: no sample (a failed scrape); 5 s: a known zero.
    w.add(5000, 0, 0);
    assert.equal(w.average(5000, 60_000, 'concurrency'), 5, '10 and 0 over the two known seconds');
    assert.equal(w.average(5000, 60_000, 'rps'), 2);
    assert.equal(w.average(4000, 3000, 'concurrency'), undefined, 'only unknown seconds in (1 s, 4 s]');
  });
});

describe('MetricWindow ring and running sums', () => {
  /** The mean over known seconds, the slow way, for comparison. */
  const naive = (samples: Map<number, number>, now: number, windowMs: number) => {
    let sum = 0;
    let n = 0;
    for (const [t, v] of samples) if (t > now - windowMs && t <= now) (sum += v), n++;
    return n === 0 ? undefined : sum / n;
  };

  it('matches the mean over the known seconds for a day of samples with gaps, with a fixed footprint', () => {
    const w = new MetricWindow(60_000);
    const bytes = w.bytes;
    const kept = new Map<number, number>();
    let x = 7;
    for (let s = 1; s <= 86_400; s++) {
      x = (x * 48271) % 2147483647;
      // About one second in five unknown; values with three decimals (what the window keeps).
      if (x % 5 === 0) continue;
      const v = (x % 100_000) / 1000;
      w.add(s * 1000, v, 0);
      kept.set(s * 1000, v);
      if (kept.size > 70) kept.delete(kept.keys().next().value!);
      if (s % 997 === 0) {
        for (const windowMs of [1000, 6000, 60_000]) {
          const want = naive(kept, s * 1000, windowMs);
          const got = w.average(s * 1000, windowMs, 'concurrency');
          assert.ok(want === undefined ? got === undefined : Math.abs(got! - want) < 1e-9, `at ${s} s over ${windowMs} ms: ${got} vs ${want}`);
        }
      }
    }
    assert.equal(w.bytes, bytes, 'no growth with time');
    assert.ok(w.bytes <= 1100, `${w.bytes} bytes for a 60 s window`);
  });

  it('averages exactly 0 once the traffic has left the window', () => {
    const w = new MetricWindow(6000);
    for (let s = 1; s <= 100; s++) w.add(s * 1000, 0.1 + s / 3, 0.7);
    for (let s = 101; s <= 110; s++) w.add(s * 1000, 0, 0);
    assert.equal(w.average(110_000, 6000, 'concurrency'), 0);
    assert.equal(w.average(110_000, 6000, 'rps'), 0);
  });

  it('tells known seconds from unknown ones: coverage of a window', () => {
    const w = new MetricWindow(60_000);
    assert.equal(w.coverage(1000, 6000), 0, 'no data yet');
    w.add(1000, 1, 1);
    assert.equal(w.coverage(1000, 6000), 1, 'the seconds before the first are not missing');
    for (const s of [2, 3, 7, 8, 10]) w.add(s * 1000, 1, 1);
    assert.equal(w.knownSeconds(10_000, 6000), 3, '7, 8 and 10 of 5..10');
    assert.equal(w.coverage(10_000, 6000), 0.5);
    assert.equal(w.coverage(20_000, 6000), 0, 'nothing since 10 s');
    assert.equal(w.observedMs(20_000), 19_000, 'from the first known second');
  });

  it('folds a late sample into its second, and drops one older than the ring', () => {
    const w = new MetricWindow(5000);
    for (let s = 1; s <= 10; s++) if (s !== 8) w.add(s * 1000, 10, 1);
    w.add(8000, 40, 1); // late, for an unknown second
    w.add(9500, 5, 1); // late, a second gateway's share of a known second
    assert.equal(w.average(10_000, 5000, 'concurrency'), (10 + 10 + 40 + 15 + 10) / 5);
    w.add(2000, 1000, 0);
    assert.equal(w.average(10_000, 5000, 'concurrency'), 17, 'a second the ring no longer holds is dropped');
  });

  it('keeps the seconds both sizes hold when resized', () => {
    const w = new MetricWindow(60_000);
    for (let s = 1; s <= 60; s++) w.add(s * 1000, s, 0, s % 2 ? s : undefined);
    w.resize(10_000);
    assert.equal(w.capacityMs, 10_000);
    assert.equal(w.average(60_000, 60_000, 'concurrency'), 55.5, 'the last 10 seconds: 51..60');
    assert.equal(w.pendingAverage(60_000, 60_000), 55, 'readings at 51, 53, .. 59');
    w.resize(120_000);
    assert.equal(w.average(60_000, 60_000, 'concurrency'), 55.5);
    w.add(61_000, 0, 0);
    assert.equal(w.average(61_000, 120_000, 'concurrency'), 555 / 11);
  });

  it('rebases its sums without changing the averages', () => {
    const w = new MetricWindow(3000);
    // 4e11 per second in thousandths passes 2^50 after a few seconds.
    for (let s = 1; s <= 20; s++) w.add(s * 1000, 4e11 + s, 0);
    assert.equal(w.average(20_000, 3000, 'concurrency'), 4e11 + 19);
  });

  it('refuses a capacity under one second', () => {
    assert.throws(() => new MetricWindow(0), RangeError);
    assert.throws(() => new MetricWindow(Number.NaN), RangeError);
  });
});
