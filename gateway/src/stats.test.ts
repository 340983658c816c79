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
    const [sample] = s.collect(1000);
    assert.deepEqual(sample, { name: 'f', concurrency: 1.5, requests: 2 });
    s.end('f');
    s.end('f');
    now = 2000;
    assert.deepEqual(s.collect(2000), [{ name: 'f', concurrency: 0, requests: 0 }]);
    // A quiet function is forgotten.
    assert.deepEqual(s.collect(3000), []);
  });
});
