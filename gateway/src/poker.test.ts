import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { PokeBody } from '@kubefn/platform';
import { ColdPoker } from './poker.js';

/** A poker over a hand-set queue, whose pokes stay in flight until the test settles them. */
function poker(options: { minIntervalMs?: number } = {}) {
  const fn = { queued: 0, ready: 0 };
  let now = 0;
  const sent: { name: string; body: PokeBody; settle: () => void }[] = [];
  const counted: string[] = [];
  const p = new ColdPoker({
    send: (name, body) => new Promise<void>((resolve) => sent.push({ name, body, settle: resolve })),
    state: () => ({ ...fn }),
    onSent: (name) => counted.push(name),
    now: () => now,
    ...options,
  });
  /** `n` more requests arrive cold, each queued before it is told. */
  const arrive = (n: number) => {
    for (let i = 0; i < n; i++) {
      fn.queued++;
      p.cold('f');
    }
  };
  const settle = async (i: number) => {
    sent[i]!.settle();
    // The poker reacts on the promise's settling: let its callbacks run.
    await new Promise((r) => setImmediate(r));
  };
  return { p, fn, sent, counted, arrive, settle, advance: (ms: number) => (now += ms) };
}

describe('ColdPoker', () => {
  it('100 cold requests send one poke while it is in flight, then one more with the new count once it settled and the queue doubled', async () => {
    const { p, sent, counted, arrive, settle, advance } = poker();
    arrive(100);
    assert.deepEqual(sent.map((s) => s.body), [{ queued: 1 }]);
    assert.equal(p.inFlight, 1);
    advance(1000);
    await settle(0);
    assert.deepEqual(sent.map((s) => s.body), [{ queued: 1 }, { queued: 100 }]);
    assert.deepEqual(counted, ['f', 'f']);
    // That one settles with 150 waiting: not doubled since 100, so none.
    arrive(50);
    advance(1000);
    await settle(1);
    assert.equal(sent.length, 2);
    assert.equal(p.inFlight, 0);
    // A cold request once the queue reached 200, a second later: the next poke, with 200.
    arrive(49);
    assert.equal(sent.length, 2);
    arrive(1);
    assert.deepEqual(sent[2]!.body, { queued: 200 });
  });

  it('sends no second poke within minIntervalMs of the first, however fast the queue grows', async () => {
    const { sent, arrive, settle, advance } = poker({ minIntervalMs: 1000 });
    arrive(1);
    await settle(0);
    arrive(500);
    advance(999);
    arrive(500);
    assert.equal(sent.length, 1);
    advance(1);
    arrive(1);
    assert.deepEqual(sent.map((s) => s.body), [{ queued: 1 }, { queued: 1002 }]);
  });

  it('sends nothing more once a replica is ready, and pokes at once for the next cold spell', async () => {
    const { fn, sent, arrive, settle, advance } = poker();
    arrive(10);
    fn.ready = 1;
    advance(5000);
    await settle(0);
    assert.equal(sent.length, 1, 'a replica is ready: no poke');
    // The queue drained; later the function is at zero again and a request arrives.
    fn.queued = 0;
    fn.ready = 0;
    arrive(1);
    assert.deepEqual(sent.map((s) => s.body), [{ queued: 1 }, { queued: 1 }]);
  });

  it('a poke that fails or throws still ends, so the next can go', async () => {
    let calls = 0;
    const fn = { queued: 0, ready: 0 };
    const p = new ColdPoker({
      send: () => {
        calls++;
        if (calls === 1) throw new Error('boom');
        return Promise.reject(new Error('refused'));
      },
      state: () => ({ ...fn }),
      minIntervalMs: 0,
    });
    fn.queued = 1;
    p.cold('f');
    await new Promise((r) => setImmediate(r));
    assert.equal(p.inFlight, 0);
    fn.queued = 2;
    p.cold('f');
    await new Promise((r) => setImmediate(r));
    assert.equal(calls, 2);
    assert.equal(p.inFlight, 0);
  });

  it('refuses settings that would poke without bound', () => {
    assert.throws(() => new ColdPoker({ send: () => {}, state: () => undefined, growth: 0.5 }), /poke.growth must be a number >= 1/);
    assert.throws(() => new ColdPoker({ send: () => {}, state: () => undefined, minIntervalMs: -1 }), /poke.minIntervalMs must be a number >= 0/);
  });
});
