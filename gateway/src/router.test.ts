import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MutableEndpointSet, isKubefnError } from '@kubefn/platform';
import { QueueBudget } from './queue-budget.js';
import { FunctionRouter, retryAfterSeconds, slotsFor } from './router.js';

const ep = (id: string) => ({ id, url: `http://127.0.0.1/${id}`, adminUrl: '' });

function router(opts: { cc?: number; maxQueue?: number } = {}) {
  const endpoints = new MutableEndpointSet();
  const pokes: string[] = [];
  const r = new FunctionRouter({
    name: 'f',
    endpoints,
    containerConcurrency: opts.cc ?? 0,
    queue: { minPerFunction: opts.maxQueue ?? 10, maxPerFunction: opts.maxQueue ?? 10 },
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

  it('sizes the queue in seconds of traffic: a peak of 3000 req/s and a measured 2 s start-up hold 9000, not 1000', async () => {
    let now = 0;
    const endpoints = new MutableEndpointSet();
    const r = new FunctionRouter({ name: 'f', endpoints, containerConcurrency: 0, onNoReplica: () => {}, now: () => now });
    const signal = new AbortController().signal;
    // A cold spell: the first request at 0 s, a replica ready at 2 s -> a start-up of 2 s.
    const first = r.acquire(signal, 600_000);
    now = 2000;
    endpoints.set([ep('a')]);
    (await first).release();
    assert.equal(r.startupMs, 2000);
    // 3000 requests in the second from 2 s, served at once.
    now = 2500;
    for (let i = 0; i < 3000; i++) (await r.acquire(signal, 600_000)).release();
    // Scaled to zero: in the next second, 9000 = 3000 x (1 s + 2 s) wait and the 9001st is refused.
    now = 3500;
    endpoints.set([]);
    assert.equal(r.peakArrivalsPerSecond(), 3000);
    assert.equal(r.depth(), 9000);
    const held: Promise<unknown>[] = [];
    for (let i = 0; i < 9000; i++) held.push(r.acquire(signal, 600_000).catch(() => {}));
    assert.equal(r.queued, 9000);
    await assert.rejects(r.acquire(signal, 600_000), (e) => {
      assert.ok(isKubefnError(e, 'QUEUE_FULL'));
      assert.match((e as Error).message, /9000 requests waiting, its queue limit \(3000 req\/s at peak x \(1 s decision \+ 2\.0 s start-up\), at least 1000/);
      assert.equal(retryAfterSeconds(e), 2);
      return true;
    });
    r.close();
    await Promise.all(held);
    // Without that traffic the floor holds: the 1001st is refused.
    const quiet = new FunctionRouter({ name: 'g', endpoints: new MutableEndpointSet(), containerConcurrency: 0, onNoReplica: () => {}, now: () => now });
    for (let i = 0; i < 1000; i++) held.push(quiet.acquire(signal, 600_000).catch(() => {}));
    await assert.rejects(quiet.acquire(signal, 600_000), (e) => isKubefnError(e, 'QUEUE_FULL'));
    quiet.close();
  });

  it('the peak is of whole seconds within the last 60: a burst a minute ago no longer counts', async () => {
    let now = 10_000;
    const endpoints = new MutableEndpointSet();
    endpoints.set([ep('a')]);
    const r = new FunctionRouter({ name: 'f', endpoints, containerConcurrency: 0, onNoReplica: () => {}, now: () => now });
    const signal = new AbortController().signal;
    for (let i = 0; i < 50; i++) (await r.acquire(signal, 1000)).release();
    assert.equal(r.peakArrivalsPerSecond(), 0, 'the current second is not whole yet');
    now = 11_000;
    (await r.acquire(signal, 1000)).release();
    assert.equal(r.peakArrivalsPerSecond(), 50);
    now = 69_500;
    assert.equal(r.peakArrivalsPerSecond(), 50);
    now = 70_000;
    assert.equal(r.peakArrivalsPerSecond(), 1);
    now = 71_000;
    assert.equal(r.peakArrivalsPerSecond(), 0);
  });

  it('shares the gateway-wide budgets of queued requests and of declared body bytes, and gives them back', async () => {
    const budget = new QueueBudget({ maxRequests: 3, maxBodyBytes: 100 });
    const make = (name: string) => new FunctionRouter({ name, endpoints: new MutableEndpointSet(), containerConcurrency: 0, budget, onNoReplica: () => {} });
    const f = make('f');
    const g = make('g');
    const ac = new AbortController();
    const signal = new AbortController().signal;
    const held = [f.acquire(ac.signal, 60_000, 60).catch(() => {}), f.acquire(signal, 60_000).catch(() => {})];
    await assert.rejects(g.acquire(signal, 60_000, 50), (e) => {
      assert.ok(isKubefnError(e, 'QUEUE_FULL'));
      assert.match((e as Error).message, /queued request bodies would pass the gateway's limit of 100 bytes across all functions \(queue.maxBodyBytes\): 60 held, this one declares 50/);
      return true;
    });
    held.push(g.acquire(signal, 60_000, 40).catch(() => {}));
    assert.deepEqual([budget.requests, budget.bytes], [3, 100]);
    await assert.rejects(g.acquire(signal, 60_000), (e) => {
      assert.ok(isKubefnError(e, 'QUEUE_FULL'));
      assert.match((e as Error).message, /the gateway holds 3 queued requests across all functions, its limit \(queue.maxRequests\)/);
      return true;
    });
    // The 60-byte call leaves: its request and bytes are free again.
    ac.abort(new Error('gone'));
    await held[0];
    assert.deepEqual([budget.requests, budget.bytes], [2, 40]);
    held.push(g.acquire(signal, 60_000, 50).catch(() => {}));
    assert.deepEqual([budget.requests, budget.bytes], [3, 90]);
    f.close();
    g.close();
    await Promise.all(held);
    assert.deepEqual([budget.requests, budget.bytes], [0, 0]);
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

describe('containerConcurrency split across gateways (slotsFor)', () => {
  it('deals every replica exactly its CC across the gateways when there are enough slots, fairly', () => {
    for (let cc = 1; cc <= 6; cc++) {
      for (let replicas = 1; replicas <= 5; replicas++) {
        for (let count = 1; count <= 5; count++) {
          if (replicas * cc < count) continue;
          const totals = new Array<number>(count).fill(0);
          for (let j = 0; j < replicas; j++) {
            let sum = 0;
            for (let index = 0; index < count; index++) {
              const n = slotsFor(cc, j, replicas, { index, count });
              sum += n;
              totals[index]! += n;
            }
            assert.equal(sum, cc, `cc ${cc}, ${replicas} replicas, ${count} gateways: replica ${j} gets exactly cc`);
          }
          assert.ok(Math.max(...totals) - Math.min(...totals) <= 1, `fair: ${totals.join(',')} (cc ${cc}, ${replicas} replicas, ${count} gateways)`);
        }
      }
    }
  });

  it('with fewer slots than gateways every gateway still gets one slot', () => {
    // One replica of CC 1 behind three gateways: gateway 0 owns it, the others borrow one slot.
    assert.deepEqual([0, 1, 2].map((index) => slotsFor(1, 0, 1, { index, count: 3 })), [1, 1, 1]);
    // Two replicas of CC 1 behind three gateways: 0 -> replica 0, 1 -> replica 1, 2 borrows on replica 0.
    assert.deepEqual([0, 1, 2].map((index) => [slotsFor(1, 0, 2, { index, count: 3 }), slotsFor(1, 1, 2, { index, count: 3 })]), [[1, 0], [0, 1], [1, 0]]);
  });

  it('a router of gateway 1 of 2 sends a CC=1 function only to the replicas it was dealt, and queues the rest', async () => {
    const endpoints = new MutableEndpointSet();
    const r = new FunctionRouter({ name: 'f', endpoints, containerConcurrency: 1, share: { index: 1, count: 2 }, queue: { minPerFunction: 10, maxPerFunction: 10 }, onNoReplica: () => {} });
    endpoints.set([ep('a'), ep('b'), ep('c'), ep('d')]);
    assert.deepEqual(['a', 'b', 'c', 'd'].map((id) => r.slotsOf(id)), [0, 1, 0, 1]);
    const signal = new AbortController().signal;
    const leases = [await r.acquire(signal, 1000), await r.acquire(signal, 1000)];
    assert.deepEqual(leases.map((l) => l.endpoint.id).sort(), ['b', 'd']);
    const third = r.acquire(signal, 1000);
    assert.equal(r.queued, 1, 'b and d are full for this gateway; a and c are the other gateway\'s');
    // The other gateway goes away: this one owns every slot.
    r.share = { index: 0, count: 1 };
    assert.ok(['a', 'c'].includes((await third).endpoint.id));
  });
});
