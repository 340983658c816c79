import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { HttpStatsSource, parseSamples } from './http-source.js';

describe('HttpStatsSource', () => {
  let server: Server;
  let url: string;
  const seen: (string | undefined)[] = [];

  before(async () => {
    server = createServer((req, res) => {
      seen.push(req.headers.authorization);
      if (req.url !== '/system/stats') return void res.writeHead(404).end();
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
});
