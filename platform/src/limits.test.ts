import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Semaphore, SemaphoreFull, TokenBucket } from './limits.js';

describe('TokenBucket', () => {
  it('gives a burst at once, then the rate', () => {
    let now = 0;
    const bucket = new TokenBucket(2, 3, () => now);
    assert.deepEqual([1, 2, 3, 4].map(() => bucket.tryTake()), [true, true, true, false]);
    now = 499;
    assert.equal(bucket.tryTake(), false);
    now = 500;
    assert.equal(bucket.tryTake(), true);
    now = 100_000;
    assert.deepEqual([1, 2, 3, 4].map(() => bucket.tryTake()), [true, true, true, false], 'refills up to the burst only');
  });

  it('take() waits for the next token', async () => {
    const bucket = new TokenBucket(50, 1);
    await bucket.take();
    const started = performance.now();
    await bucket.take();
    assert.ok(performance.now() - started >= 10, 'the second token came after about 1/50 s');
  });
});

describe('Semaphore', () => {
  it('runs at most max, hands slots over in order, and refuses past maxWaiting', async () => {
    const semaphore = new Semaphore(1, 1);
    const first = await semaphore.acquire();
    const order: string[] = [];
    const second = semaphore.acquire().then((release) => {
      order.push('second');
      return release;
    });
    await assert.rejects(semaphore.acquire(), SemaphoreFull);
    assert.equal(semaphore.waiting, 1);
    first();
    first(); // idempotent: must not free a second slot
    const release = await second;
    assert.deepEqual(order, ['second']);
    assert.equal(semaphore.running, 1);
    release();
    assert.equal(semaphore.running, 0);
  });

  it('an aborted waiter leaves the queue', async () => {
    const semaphore = new Semaphore(1);
    const held = await semaphore.acquire();
    const controller = new AbortController();
    const waiting = semaphore.acquire(controller.signal);
    controller.abort(new Error('gone'));
    await assert.rejects(waiting, /gone/);
    assert.equal(semaphore.waiting, 0);
    held();
    assert.equal(semaphore.running, 0);
  });
});
