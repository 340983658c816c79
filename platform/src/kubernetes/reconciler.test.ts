import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ReconcileSlots, sameStatus } from './reconciler.js';

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

describe('sameStatus', () => {
  it('reads a status the API server sent back, keys in its order and times in its form, as the one written', () => {
    const written = {
      observedGeneration: 1,
      replicas: 0,
      readyReplicas: 0,
      url: 'http://kubefn-gateway.kubefn.svc:8080/function/f',
      conditions: [{ type: 'Ready', status: 'True' as const, reason: 'ScaledToZero', message: 'no replicas', lastTransitionTime: '2026-12-06T21:00:00.000Z' }],
    };
    const read = JSON.parse(
      '{"conditions":[{"lastTransitionTime":"2026-12-06T21:00:00Z","message":"no replicas","reason":"ScaledToZero","status":"True","type":"Ready"}],"observedGeneration":1,"readyReplicas":0,"replicas":0,"url":"http://kubefn-gateway.kubefn.svc:8080/function/f"}',
    );
    assert.equal(sameStatus(read, written), true);
    assert.equal(sameStatus(read, { ...written, readyReplicas: 1 }), false);
    assert.equal(sameStatus(read, { ...written, conditions: [{ ...written.conditions[0]!, reason: 'Ready' }] }), false);
  });
});
