import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { intervalSamples, type FunctionCounters } from './stats-counters.js';

const f = (requests: number, inFlightMs: number, more: Partial<FunctionCounters> = {}): FunctionCounters => ({
  name: 'f', gen: 1, requests, inFlightMs, completed: 0, inFlight: 0, ...more,
});

describe('intervalSamples', () => {
  it('takes the counters\' differences over the real elapsed time (a lost reply in between)', () => {
    const { samples, active } = intervalSamples({ now: 1000, functions: [f(10, 4000)] }, { now: 3000, functions: [f(16, 9000, { completed: 5, queued: 2, serviceMs: 30 })] });
    assert.deepEqual(samples, [{ name: 'f', concurrency: 2.5, requests: 6, completed: 5, spanMs: 2000, queued: 2, serviceMs: 30 }]);
    assert.deepEqual([...active], ['f']);
  });

  it('says how long every interval was, a late tick\'s too', () => {
    const { samples } = intervalSamples({ now: 1000, functions: [f(10, 0)] }, { now: 2200, functions: [f(22, 0)] });
    assert.deepEqual([samples[0]?.requests, samples[0]?.spanMs], [12, 1200]);
  });

  it('counts from zero when the counters started again (gen), went backwards or are new', () => {
    const prev = { now: 0, functions: [f(100, 50_000)] };
    for (const cur of [f(3, 1000, { gen: 2 }), f(3, 1000)]) {
      assert.deepEqual(intervalSamples(prev, { now: 1000, functions: [cur] }).samples.map((s) => [s.requests, s.concurrency]), [[3, 1]]);
    }
    assert.equal(intervalSamples({ now: 0, functions: [] }, { now: 1000, functions: [f(3, 1000)] }).samples[0]?.requests, 3);
  });

  it('reports a function that went quiet once, then leaves it out', () => {
    const quiet = { now: 2000, functions: [f(5, 1000)] };
    assert.equal(intervalSamples({ now: 1000, functions: [f(5, 1000)] }, quiet, new Set(['f'])).samples.length, 1);
    assert.equal(intervalSamples({ now: 1000, functions: [f(5, 1000)] }, quiet, new Set()).samples.length, 0);
  });
});
