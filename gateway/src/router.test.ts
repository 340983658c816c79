import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MutableEndpointSet, isKubefnError } from '@kubefn/platform';
import { FunctionRouter } from './router.js';

const ep = (id: string) => ({ id, url: `http://127.0.0.1/${id}`, adminUrl: '' });

function router(opts: { cc?: number; maxQueue?: number } = {}) {
  const endpoints = new MutableEndpointSet();
  const pokes: string[] = [];
  const r = new FunctionRouter({
    name: 'f',
    endpoints,
    containerConcurrency: opts.cc ?? 0,
    maxQueue: opts.maxQueue ?? 10,
    onNoReplica: (n) => pokes.push(n),
  });
  return { r, endpoints, pokes };
}

describe('FunctionRouter', () => {
  it('spreads requests to the least-loaded replica', async () => {
    const { r, endpoints } = router();
    endpoints.set([ep('a'), ep('b')]);
    const signal = new AbortController().signal;
    const l1 = await r.acquire(signal, 1000);
    const l2 = await r.acquire(signal, 1000);
    assert.notEqual(l1.endpoint.id, l2.endpoint.id);
    l1.release();
    const l3 = await r.acquire(signal, 1000);
    assert.equal(l3.endpoint.id, l1.endpoint.id);
  });

  it('holds requests while there is no replica, pokes once per cold request, serves them when one is ready', async () => {
    const { r, endpoints, pokes } = router();
    const signal = new AbortController().signal;
    const waiting = Promise.all([r.acquire(signal, 5000), r.acquire(signal, 5000), r.acquire(signal, 5000)]);
    assert.equal(r.queued, 3);
    assert.deepEqual(pokes, ['f', 'f', 'f']);
    endpoints.set([ep('a')]);
    const leases = await waiting;
    assert.ok(leases.every((l) => l.endpoint.id === 'a' && l.waitedForReplica));
    assert.equal(r.queued, 0);
  });

  it('never exceeds container concurrency; a release lets the next waiter in', async () => {
    const { r, endpoints } = router({ cc: 1 });
    endpoints.set([ep('a')]);
    const signal = new AbortController().signal;
    const first = await r.acquire(signal, 1000);
    let second: string | undefined;
    const p = r.acquire(signal, 5000).then((l) => (second = l.endpoint.id));
    await new Promise((res) => setImmediate(res));
    assert.equal(second, undefined);
    assert.equal(r.queued, 1);
    first.release();
    await p;
    assert.equal(second, 'a');
  });

  it('answers QUEUE_FULL at once when the queue is full', async () => {
    const { r } = router({ maxQueue: 2 });
    const signal = new AbortController().signal;
    const held = [r.acquire(signal, 60_000), r.acquire(signal, 60_000)];
    await assert.rejects(r.acquire(signal, 60_000), (e) => isKubefnError(e, 'QUEUE_FULL'));
    r.close();
    for (const h of held) await assert.rejects(h, (e) => isKubefnError(e, 'SHUTTING_DOWN'));
  });

  it('answers DEADLINE_EXCEEDED at the deadline and forgets the waiter', async () => {
    const { r } = router();
    await assert.rejects(r.acquire(new AbortController().signal, 20), (e) => isKubefnError(e, 'DEADLINE_EXCEEDED'));
    assert.equal(r.queued, 0);
  });

  it('drops a waiter whose caller went away', async () => {
    const { r } = router();
    const ac = new AbortController();
    const p = r.acquire(ac.signal, 60_000);
    ac.abort(new Error('gone'));
    await assert.rejects(p, /gone/);
    assert.equal(r.queued, 0);
  });
});
