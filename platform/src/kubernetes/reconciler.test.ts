import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ReconcileSlots } from './reconciler.js';

describe('ReconcileSlots', () => {
  it('runs at most `workers` at once, and every waiting one in turn', async () => {
    const slots = new ReconcileSlots(2, 1000, 1000);
    let running = 0;
    let most = 0;
    const done: number[] = [];
    const work = async (i: number) => {
      const release = await slots.acquire();
      running++;
      most = Math.max(most, running);
      await new Promise((r) => setImmediate(r));
      running--;
      done.push(i);
      release();
      release(); // twice changes nothing
    };
    await Promise.all(Array.from({ length: 10 }, (_, i) => work(i)));
    assert.equal(most, 2);
    assert.deepEqual([...done].sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });
});
