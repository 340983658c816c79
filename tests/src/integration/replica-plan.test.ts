// Pure replica decisions: scaling, rolling updates that never drop to zero, crash backoff.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { nextBackoff, planReplicas, type ReplicaView } from '@kubefn/platform';

/** "c1+" = current, seq 1, ready; "o2-" = old, seq 2, not ready. */
function views(...specs: string[]): ReplicaView[] {
  return specs.map((s) => ({ id: s.slice(0, -1), seq: Number(s.slice(1, -1)), current: s[0] === 'c', ready: s.endsWith('+') }));
}

describe('planReplicas', () => {
  const cases: { name: string; desired: number; replicas: string[]; start: number; stop: string[] }[] = [
    { name: 'create', desired: 2, replicas: [], start: 2, stop: [] },
    { name: 'steady', desired: 2, replicas: ['c1+', 'c2-'], start: 0, stop: [] },
    { name: 'scale up', desired: 3, replicas: ['c1+'], start: 2, stop: [] },
    { name: 'scale down stops not-ready first', desired: 1, replicas: ['c1+', 'c2-', 'c3+'], start: 0, stop: ['c2', 'c3'] },
    { name: 'scale down stops the newest ready', desired: 2, replicas: ['c1+', 'c2+', 'c3+'], start: 0, stop: ['c3'] },
    { name: 'scale to zero', desired: 0, replicas: ['c1+', 'o2+'], start: 0, stop: ['c1', 'o2'] },
    { name: 'update starts new, keeps old', desired: 2, replicas: ['o1+', 'o2+'], start: 2, stop: [] },
    { name: 'update: one new ready retires one old', desired: 2, replicas: ['o1+', 'o2+', 'c3+', 'c4-'], start: 0, stop: ['o2'] },
    { name: 'update done', desired: 2, replicas: ['o1+', 'c3+', 'c4+'], start: 0, stop: ['o1'] },
    { name: 'old replicas that are not ready go at once', desired: 1, replicas: ['o1-', 'o2+'], start: 1, stop: ['o1'] },
  ];
  for (const c of cases) {
    it(c.name, () => {
      assert.deepEqual(planReplicas(c.desired, views(...c.replicas)), { start: c.start, stop: c.stop });
    });
  }
});

describe('nextBackoff', () => {
  it('doubles from 100 ms up to 10 s', () => {
    let state = { failures: 0, nextStartAtMs: 0 };
    const delays: number[] = [];
    for (let i = 0; i < 10; i++) {
      const next = nextBackoff(state, undefined, 1000);
      delays.push(next.delayMs);
      assert.equal(next.nextStartAtMs, 1000 + next.delayMs);
      state = next;
    }
    assert.deepEqual(delays, [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000]);
  });

  it('starts over after a replica stayed up 10 s', () => {
    const streak = { failures: 6, nextStartAtMs: 0 };
    assert.equal(nextBackoff(streak, 9_999, 0).delayMs, 6400);
    assert.equal(nextBackoff(streak, 10_000, 0).delayMs, 100);
  });
});
