// Scale from zero through the whole gateway (inject, an in-memory driver): one cold poke in
// flight per function carrying the backlog, and the queue's gateway-wide budgets answering 503
// QUEUE_FULL with Retry-After.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseFunctionSpec, type PokeBody } from '@kubefn/platform';
import { waitFor } from '@kubefn/platform/testing';
import { createGateway } from './app.js';
import { MemoryDriver } from './testing/memory-driver.js';

describe('scale from zero at the gateway', () => {
  it('100 concurrent cold requests send exactly one poke while it is in flight, and one more with the backlog once it settled', async () => {
    const driver = new MemoryDriver();
    await driver.deploy(parseFunctionSpec({ name: 'cold', image: 'img', timeout: '60s' }));
    const pokes: { name: string; body: PokeBody; settle: () => void }[] = [];
    const gateway = createGateway({
      driver,
      onNoReplica: (name, body) => new Promise<void>((settle) => pokes.push({ name, body, settle })),
      poke: { minIntervalMs: 0 },
    });
    try {
      const calls = Array.from({ length: 100 }, () => gateway.app.inject({ method: 'GET', url: '/function/cold' }));
      await waitFor(() => gateway.context.routers.state('cold')?.queued === 100, { what: '100 queued calls', timeoutMs: 10_000 });
      assert.deepEqual(pokes.map((p) => [p.name, p.body]), [['cold', { queued: 1 }]]);

      pokes[0]!.settle();
      await waitFor(() => pokes.length === 2, { what: 'the second poke', timeoutMs: 5000 });
      assert.deepEqual(pokes[1]!.body, { queued: 100 }, 'still cold and the queue grew 100-fold: one more poke with the count');
      pokes[1]!.settle();
      const metrics = await gateway.app.inject({ method: 'GET', url: '/metrics' });
      assert.match(metrics.body, /kubefn_autoscaler_pokes_total\{function="cold"\} 2\n/);

      await driver.remove('cold');
      gateway.context.routers.remove('cold');
      const answers = await Promise.all(calls);
      assert.ok(answers.every((a) => a.statusCode === 503));
      assert.equal(pokes.length, 2, 'the queue did not double again: no third poke');
    } finally {
      await gateway.close();
    }
  });

  it('the gateway-wide budgets of requests and body bytes answer 503 QUEUE_FULL at once with Retry-After, naming the bound', async () => {
    const driver = new MemoryDriver();
    await driver.deploy(parseFunctionSpec({ name: 'a', image: 'img', timeout: '60s' }));
    await driver.deploy(parseFunctionSpec({ name: 'b', image: 'img', timeout: '60s' }));
    const gateway = createGateway({ driver, queue: { maxRequests: 2, maxBodyBytes: 100 } });
    const held: Promise<{ statusCode: number }>[] = [];
    try {
      held.push(gateway.app.inject({ method: 'POST', url: '/function/a', payload: 'x'.repeat(60) }));
      await waitFor(() => gateway.context.routers.budget.requests === 1, { what: 'one queued call', timeoutMs: 5000 });

      const bytes = await gateway.app.inject({ method: 'POST', url: '/function/b', payload: 'y'.repeat(60) });
      assert.equal(bytes.statusCode, 503);
      assert.equal(bytes.json().code, 'QUEUE_FULL');
      assert.match(bytes.json().message, /queued request bodies would pass the gateway's limit of 100 bytes across all functions \(queue.maxBodyBytes\)/);
      assert.equal(bytes.headers['retry-after'], '2', 'the default 2 s start-up, nothing measured yet');

      held.push(gateway.app.inject({ method: 'GET', url: '/function/b' }));
      await waitFor(() => gateway.context.routers.budget.requests === 2, { what: 'two queued calls', timeoutMs: 5000 });
      const count = await gateway.app.inject({ method: 'GET', url: '/function/a' });
      assert.equal(count.statusCode, 503);
      assert.equal(count.json().code, 'QUEUE_FULL');
      assert.match(count.json().message, /the gateway holds 2 queued requests across all functions, its limit \(queue.maxRequests\)/);
      assert.equal(count.headers['retry-after'], '2');
      assert.ok(count.json().hint);
    } finally {
      await gateway.close();
    }
    assert.ok((await Promise.all(held)).every((a) => a.statusCode === 503), 'the held calls are answered as the gateway closes');
  });

  it('refuses a queue setting that is not a positive integer, naming it', () => {
    assert.throws(() => createGateway({ driver: new MemoryDriver(), queue: { maxRequests: 0 } }), /gateway queue setting maxRequests must be a positive integer, not 0/);
  });
});
