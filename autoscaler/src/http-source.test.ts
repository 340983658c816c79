import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { FunctionCounters, StatsReply } from '@kubefn/platform';
import { combineBackfill, HttpStatsSource, parseSamples, parseStatsReply } from './http-source.js';

describe('HttpStatsSource', () => {
  let server: Server;
  let url: string;
  const seen: (string | undefined)[] = [];

  before(async () => {
    server = createServer((req, res) => {
      seen.push(req.headers.authorization);
      if (new URL(req.url ?? '/', 'http://x').pathname !== '/system/stats') return void res.writeHead(404).end();
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ samples: [{ name: 'hello', concurrency: 1.5, requests: 3 }, { name: 'orders', concurrency: 0, requests: 0, pending: 42 }] }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('reads every gateway with the token, skips one that fails and warns about it once', async () => {
    const warnings: string[] = [];
    const source = new HttpStatsSource({
      peers: () => [
        { id: 'a', url },
        { id: 'b', url },
        { id: 'dead', url: 'http://127.0.0.1:1' },
      ],
      token: 's3cret',
      onWarning: (m, f) => warnings.push(`${m} ${String(f?.gateway)}`),
    });
    const first = await source.collect();
    assert.equal(first.answered, 2, 'the dead gateway did not answer');
    assert.equal(first.expected, 3);
    assert.deepEqual(first.samples, [
      { name: 'hello', concurrency: 1.5, requests: 3 },
      { name: 'orders', concurrency: 0, requests: 0, pending: 42 },
      { name: 'hello', concurrency: 1.5, requests: 3 },
      { name: 'orders', concurrency: 0, requests: 0, pending: 42 },
    ]);
    await source.collect();
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /dead$/);
    assert.ok(seen.every((h) => h === 'Bearer s3cret'));
  });

  it('counts a gateway slower than the timeout as not answered', async () => {
    const slow = createServer((_req, res) => void setTimeout(() => res.writeHead(200).end('{"samples":[]}'), 2000).unref());
    await new Promise<void>((resolve) => slow.listen(0, '127.0.0.1', resolve));
    try {
      const source = new HttpStatsSource({
        peers: () => [
          { id: 'a', url },
          { id: 'slow', url: `http://127.0.0.1:${(slow.address() as AddressInfo).port}` },
        ],
        token: 't',
        timeoutMs: 200,
      });
      const c = await source.collect();
      assert.deepEqual([c.answered, c.expected, c.samples.length], [1, 2, 2]);
    } finally {
      slow.closeAllConnections();
      await new Promise<void>((resolve) => slow.close(() => resolve()));
    }
  });

  it('refuses replies that are not samples', () => {
    assert.throws(() => parseSamples({}, 10), /no samples/);
    assert.throws(() => parseSamples({ samples: [{ name: 'x', concurrency: -1, requests: 0 }] }, 10), /sample 0/);
    assert.throws(() => parseSamples({ samples: new Array(11).fill({ name: 'x', concurrency: 0, requests: 0 }) }, 10), /more than 10/);
  });

  it('reads pending when it is a count and drops it, keeping the sample, when it is not', () => {
    const samples = [0, 7.5, -1, 'lots', null, 1e400, undefined].map((pending, i) => ({ name: `f${i}`, concurrency: 1, requests: 2, pending }));
    // 1e400 is Infinity once parsed from JSON: not a count.
    assert.deepEqual(
      parseSamples({ samples }, 10).map((s) => [s.name, s.pending]),
      [['f0', 0], ['f1', 7.5], ['f2', undefined], ['f3', undefined], ['f4', undefined], ['f5', undefined], ['f6', undefined]],
    );
    assert.ok(!('pending' in parseSamples({ samples }, 10)[2]!), 'a bad pending is left out, not set to undefined');
  });

  it('reads the optional levels of a sample and drops a bad one, keeping the sample', () => {
    const [s] = parseSamples({ samples: [{ name: 'f', concurrency: 1, requests: 2, completed: 3, queued: -1, serviceMs: 'slow' }] }, 10);
    assert.deepEqual(s, { name: 'f', concurrency: 1, requests: 2, completed: 3 });
  });
});

/** A gateway's GET /system/stats whose replies the test sets; records the URLs asked. */
async function counterGateway(): Promise<{ url: string; asked: string[]; answer: (r: unknown | 'fail') => void; close(): Promise<void> }> {
  let reply: unknown = 'fail';
  const asked: string[] = [];
  const server = createServer((req, res) => {
    asked.push(req.url ?? '');
    if (reply === 'fail') return void res.writeHead(503).end('overloaded');
    res.writeHead(200, { 'content-type': 'application/json' }).end(typeof reply === 'string' ? reply : JSON.stringify(reply));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    asked,
    answer: (r) => void (reply = r),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const fn = (name: string, requests: number, inFlightMs: number, more: Partial<FunctionCounters> = {}): FunctionCounters => ({
  name, gen: 1, requests, inFlightMs, completed: requests, inFlight: 0, ...more,
});

describe('HttpStatsSource reading counters', () => {
  it('reports each interval from the difference to its own last reading: two sources see the same traffic', async () => {
    const gw = await counterGateway();
    try {
      const peers = () => [{ id: 'gw', url: gw.url }];
      const a = new HttpStatsSource({ peers, token: 't' });
      const b = new HttpStatsSource({ peers, token: 't' });
      gw.answer({ instance: 'i1', seq: 1, now: 10_000, functions: [fn('f', 100, 50_000)] });
      for (const s of [a, b]) assert.deepEqual((await s.collect()).answered, 0, 'a first reading without history is a baseline only');
      gw.answer({ instance: 'i1', seq: 2, now: 11_000, functions: [fn('f', 130, 53_000, { queued: 4, serviceMs: 80, inFlight: 3 })] });
      const fromA = await a.collect();
      gw.answer({ instance: 'i1', seq: 3, now: 11_000, functions: [fn('f', 130, 53_000, { queued: 4, serviceMs: 80, inFlight: 3 })] });
      const fromB = await b.collect();
      const expected = [{ name: 'f', concurrency: 3, requests: 30, completed: 30, queued: 4, serviceMs: 80 }];
      assert.deepEqual(fromA.samples, expected);
      assert.deepEqual(fromB.samples, expected, 'the other source took nothing');
      assert.deepEqual([fromA.answered, fromA.expected], [1, 1]);
    } finally {
      await gw.close();
    }
  });

  it('loses nothing to a lost reply: the next interval has all the requests and the mean over the real elapsed time', async () => {
    const gw = await counterGateway();
    try {
      const source = new HttpStatsSource({ peers: () => [{ id: 'gw', url: gw.url }], token: 't' });
      gw.answer({ instance: 'i1', seq: 1, now: 1000, functions: [fn('f', 10, 1000)] });
      await source.collect();
      gw.answer('fail');
      const lost = await source.collect();
      assert.equal(lost.answered, 0);
      // 20 requests and 2 in flight in each of the two seconds.
      gw.answer({ instance: 'i1', seq: 3, now: 3000, functions: [fn('f', 50, 5000)] });
      const next = await source.collect();
      assert.equal(next.answered, 1);
      assert.deepEqual(next.samples.map((x) => [x.requests, x.concurrency]), [[40, 2]]);
    } finally {
      await gw.close();
    }
  });

  it('reads a restarted gateway (new instance, counters from zero) as a new baseline: no negative count, no spike', async () => {
    const gw = await counterGateway();
    const warnings: string[] = [];
    try {
      const source = new HttpStatsSource({ peers: () => [{ id: 'gw', url: gw.url }], token: 't', onWarning: (m) => warnings.push(m) });
      gw.answer({ instance: 'old', seq: 900, now: 1000, functions: [fn('f', 100_000, 9_000_000)] });
      await source.collect();
      gw.answer({ instance: 'new', seq: 1, now: 5000, functions: [fn('f', 5, 300)] });
      const restarted = await source.collect();
      assert.deepEqual([restarted.answered, restarted.samples], [0, []], 'not answered this once');
      assert.ok(warnings.some((m) => m.startsWith('gateway restarted')));
      gw.answer({ instance: 'new', seq: 2, now: 6000, functions: [fn('f', 12, 1300)] });
      assert.deepEqual((await source.collect()).samples.map((x) => [x.requests, x.concurrency]), [[7, 1]]);
      // A reply not newer than the last one read is not answered, and changes nothing.
      gw.answer({ instance: 'new', seq: 2, now: 6000, functions: [fn('f', 12, 1300)] });
      assert.equal((await source.collect()).answered, 0);
      // A function's counters that started again (gen) count from zero.
      gw.answer({ instance: 'new', seq: 3, now: 7000, functions: [fn('f', 2, 500, { gen: 2 })] });
      assert.deepEqual((await source.collect()).samples.map((x) => [x.requests, x.concurrency]), [[2, 0.5]]);
    } finally {
      await gw.close();
    }
  });

  it('asks a gateway read for the first time for its ring, combines the rings of two by age, and asks no more', async () => {
    const a = await counterGateway();
    const b = await counterGateway();
    try {
      const source = new HttpStatsSource({ peers: () => [{ id: 'a', url: a.url }, { id: 'b', url: b.url }], token: 't' });
      const second = (ageMs: number, requests: number) => ({ ageMs, samples: [{ name: 'f', concurrency: 1, requests }], answered: 1 });
      const history = (seconds: unknown[], base: StatsReply['functions'], baseNow: number) => ({ base: { now: baseNow, functions: base }, seconds });
      a.answer({ instance: 'a1', seq: 1, now: 3400, functions: [fn('f', 14, 1000)], history: history([second(2400, 1), second(1400, 2), second(400, 3)], [fn('f', 6, 600)], 3000) });
      // b's seconds end 100 ms earlier than a's; it has only two.
      b.answer({ instance: 'b1', seq: 7, now: 3400, functions: [fn('f', 3, 0)], history: history([second(1500, 20), second(500, 30)], [fn('f', 3, 0)], 2900) });
      const first = await source.collect();
      assert.ok(a.asked[0]!.endsWith('?history=1') && b.asked[0]!.endsWith('?history=1'));
      assert.deepEqual([first.answered, first.expected], [2, 2], 'the ring base makes the first reading an interval');
      assert.deepEqual(first.samples.map((x) => [x.requests, x.concurrency]), [[8, 1]], 'a: from the base at 3000 to 3400; b had nothing');
      assert.deepEqual(
        first.backfill!.map((s) => [s.ageMs, s.answered, s.samples.map((x) => x.requests)]),
        [[2000, 1, [1]], [1000, 2, [2, 20]], [0, 2, [3, 30]]],
        'oldest first, by whole seconds of age: b\'s seconds meet a\'s',
      );
      a.answer({ instance: 'a1', seq: 2, now: 4400, functions: [fn('f', 14, 1000)] });
      b.answer({ instance: 'b1', seq: 8, now: 4400, functions: [fn('f', 3, 0)] });
      const later = await source.collect();
      assert.equal(later.backfill, undefined);
      assert.ok(!a.asked[1]!.includes('history'));
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('counts a malformed or oversized reply as not answered, the other gateways still read', async () => {
    const good = await counterGateway();
    const bad = await counterGateway();
    try {
      const source = new HttpStatsSource({ peers: () => [{ id: 'good', url: good.url }, { id: 'bad', url: bad.url }], token: 't', maxSamples: 3, maxReplyBytes: 4096 });
      const ok = (seq: number) => ({ instance: 'g', seq, now: seq * 1000, functions: [fn('f', seq, 0)] });
      const replies: unknown[] = [
        '{"instance": "x", "seq": 1, "now": 5, "functions": [',
        { instance: 'x', seq: 1, now: 5, functions: [fn('f', 1, 0), fn('g', 1, 0), fn('h', 1, 0), fn('i', 1, 0)] },
        { instance: 'x', seq: 1, now: 5, functions: [{ ...fn('f', 1, 0), requests: -3 }] },
        { instance: 'x', seq: 1.5, now: 5, functions: [] },
        { instance: 'x', seq: 1, now: 5, functions: [{ ...fn('f', 1, 0), name: 'x'.repeat(5000) }] },
      ];
      good.answer(ok(1));
      await source.collect();
      for (const [i, r] of replies.entries()) {
        bad.answer(r);
        good.answer(ok(i + 2));
        const c = await source.collect();
        assert.deepEqual([c.answered, c.expected], [1, 2], `reply ${i} is not answered`);
        assert.deepEqual(c.samples.map((x) => x.requests), [1], 'the good gateway still counts');
      }
    } finally {
      await good.close();
      await bad.close();
    }
  });

  it('keeps a reading whose history or optional levels are bad, dropping only those', () => {
    const reply = parseStatsReply({ instance: 'x', seq: 1, now: 5, functions: [{ ...fn('f', 1, 0), queued: -1, serviceMs: 20, pending: 'x' }], history: { base: {}, seconds: [] } }, 10);
    assert.deepEqual(reply, { instance: 'x', seq: 1, now: 5, functions: [{ ...fn('f', 1, 0), serviceMs: 20 }] });
    assert.throws(() => parseStatsReply({ instance: '', seq: 1, now: 5, functions: [] }, 10), /instance/);
    const long = { base: { now: 0, functions: [] }, seconds: new Array(4).fill({ ageMs: 0, samples: [] }) };
    assert.equal(parseStatsReply({ instance: 'x', seq: 1, now: 5, functions: [], history: long }, 10, 3).history, undefined, 'over maxHistorySeconds');
  });

  it('combines seconds by age in whole seconds, rounded down', () => {
    const s = (ageMs: number, name: string) => ({ ageMs, samples: [{ name, concurrency: 0, requests: 1 }], answered: 1 });
    assert.deepEqual(
      combineBackfill([[s(2040, 'a'), s(1040, 'a')], [s(1980, 'b')]]).map((x) => [x.ageMs, x.answered, x.samples.map((y) => y.name).join()]),
      [[2000, 1, 'a'], [1000, 2, 'a,b']],
    );
  });
});
