import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
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
    assert.deepEqual(sample, { name: 'f', concurrency: 1.5, requests: 2 });
    s.end('f');
    s.end('f');
    now = 2000;
    assert.deepEqual(s.collect(2000).samples, [{ name: 'f', concurrency: 0, requests: 0 }]);
    // A quiet function is forgotten; the gateway in process has answered all the same.
    assert.deepEqual(s.collect(3000), { samples: [], answered: 1, expected: 1 });
  });

  it('reports pending messages set from outside as a level: kept across collects, cleared, or dropped when stale', () => {
    let now = 0;
    const s = new ConcurrencyStats(() => now, { pendingMaxAgeMs: 10_000 });
    s.setPending('orders', 12);
    s.begin('web');
    now = 1000;
    assert.deepEqual(s.collect(1000).samples, [
      { name: 'web', concurrency: 1, requests: 1 },
      { name: 'orders', concurrency: 0, requests: 0, pending: 12 },
    ]);
    s.begin('orders');
    s.setPending('orders', 3);
    now = 2000;
    assert.deepEqual(s.collect(2000).samples.find((x) => x.name === 'orders'), { name: 'orders', concurrency: 1, requests: 1, pending: 3 });
    s.end('orders');
    now = 3000;
    assert.deepEqual(s.collect(3000).samples.find((x) => x.name === 'orders'), { name: 'orders', concurrency: 0, requests: 0, pending: 3 });
    // Not read again for longer than pendingMaxAgeMs: unknown, not 0 (set at 1000 ms).
    now = 11_001;
    assert.equal(s.collect(11_001).samples.find((x) => x.name === 'orders'), undefined);
    s.setPending('orders', 0);
    assert.deepEqual(s.collect(11_001).samples.find((x) => x.name === 'orders'), { name: 'orders', concurrency: 0, requests: 0, pending: 0 });
    s.setPending('orders', undefined);
    assert.equal(s.collect(11_001).samples.find((x) => x.name === 'orders'), undefined);
    s.setPending('orders', 5);
    s.forget('orders');
    assert.equal(s.collect(11_001).samples.find((x) => x.name === 'orders'), undefined, 'forget drops it too');
  });

  it('refuses a pending count that is not a non-negative finite number', () => {
    const s = new ConcurrencyStats(() => 0);
    for (const bad of [-1, NaN, Infinity]) assert.throws(() => s.setPending('f', bad), RangeError);
    assert.deepEqual(s.collect(0).samples, []);
  });
});
