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

  it('counts missing seconds inside the span as zero and drops old buckets', () => {
    const w = new MetricWindow(10_000);
    w.add(0, 10, 0);
    w.add(3000, 10, 0);
    assert.equal(w.average(3500, 60_000, 'concurrency'), 5); // 20 over 4 seconds
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
