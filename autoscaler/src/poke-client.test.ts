// The cold poke's client against real HTTP servers on loopback: one autoscaler replica after
// another until one takes it, and the body the autoscaler's route accepts.

import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { isKubefnError } from '@kubefn/platform';
import { parsePokeBody, pokeAutoscaler, pokeOrStart, type PokePeer } from './poke-client.js';

interface Peer extends PokePeer {
  server: Server;
  /** Bodies of the pokes it received, as sent. */
  got: { path: string; auth: string | undefined; body: string }[];
}

async function peer(id: string, answer: (req: IncomingMessage, res: ServerResponse) => void): Promise<Peer> {
  const got: Peer['got'] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      got.push({ path: req.url ?? '', auth: req.headers.authorization, body });
      answer(req, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { id, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server, got };
}

/** A loopback address nothing listens on: a port that was bound, then closed. */
async function refusingUrl(): Promise<string> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}

describe('pokeAutoscaler', () => {
  let good: Peer;
  let failing: Peer;
  let silent: Peer;
  let refusing: PokePeer;
  let forbidding: Peer;
  const token = 'a-token-of-24-bytes-long';
  const opts = (peers: PokePeer[], first = 0) => ({ peers: () => peers, token, first: () => first, what: 'the kubefn-autoscaler Service' });

  before(async () => {
    good = await peer('good', (_req, res) => res.writeHead(202, { 'content-type': 'application/json' }).end('{"function":"f"}'));
    failing = await peer('failing', (_req, res) => res.writeHead(500).end('broken'));
    // Takes the request and never answers.
    silent = await peer('silent', () => {});
    forbidding = await peer('forbidding', (_req, res) => res.writeHead(401).end('{"code":"UNAUTHORIZED"}'));
    refusing = { id: 'refusing', url: await refusingUrl() };
  });
  after(async () => {
    for (const p of [good, failing, silent, forbidding]) {
      p.server.closeAllConnections();
      await new Promise<void>((resolve) => p.server.close(() => resolve()));
    }
  });

  it('sends the backlog as JSON with the token to the replica it starts at', async () => {
    good.got.length = 0;
    await pokeAutoscaler(opts([good]), 'f', { queued: 7 });
    assert.deepEqual(good.got, [{ path: '/poke/f', auth: `Bearer ${token}`, body: '{"queued":7}' }]);
  });

  for (const [what, bad] of [
    ['refuses the connection', () => refusing],
    ['does not answer in time', () => silent],
    ['answers 500', () => failing],
  ] as const) {
    it(`falls over to the next replica when the first ${what}`, async () => {
      good.got.length = 0;
      await pokeAutoscaler(opts([bad(), good]), 'f', { queued: 3 });
      assert.deepEqual(good.got.map((g) => g.body), ['{"queued":3}']);
    });
  }

  it('starts where `first` says and wraps around', async () => {
    good.got.length = 0;
    failing.got.length = 0;
    await pokeAutoscaler(opts([good, failing], 1), 'f', { queued: 1 });
    assert.equal(failing.got.length, 1);
    assert.equal(good.got.length, 1);
  });

  it('names every replica it tried, and what each did, when none took the poke', async () => {
    await assert.rejects(pokeAutoscaler(opts([refusing, silent, failing]), 'f', { queued: 2 }), (err) => {
      assert.ok(isKubefnError(err, 'UNAVAILABLE'));
      const m = (err as Error).message;
      assert.match(m, /no replica of the kubefn-autoscaler Service took the poke about "f" \(tried 3\)/);
      assert.match(m, /refusing: ECONNREFUSED/);
      assert.match(m, /silent: no answer in time/);
      assert.match(m, /failing: 500 broken/);
      return true;
    });
    await assert.rejects(pokeAutoscaler(opts([]), 'f'), /no ready replica of the kubefn-autoscaler Service to poke about "f"/);
  });

  it('stops at a replica that refuses the poke itself (4xx): another would too', async () => {
    good.got.length = 0;
    await assert.rejects(pokeAutoscaler(opts([forbidding, good]), 'f'), (err) => {
      assert.ok(isKubefnError(err, 'UNAVAILABLE'));
      assert.match((err as Error).message, /autoscaler forbidding refused the poke about "f" with 401/);
      return true;
    });
    assert.equal(good.got.length, 0);
  });
});

describe('parsePokeBody', () => {
  it('takes no body, an empty object and a whole queued count; ignores keys it does not know', () => {
    assert.deepEqual(parsePokeBody(undefined), {});
    assert.deepEqual(parsePokeBody(''), {});
    assert.deepEqual(parsePokeBody({}), {});
    assert.deepEqual(parsePokeBody({ queued: 0 }), { queued: 0 });
    assert.deepEqual(parsePokeBody({ queued: 500, later: 'x' }), { queued: 500 });
  });

  it('refuses anything else with BAD_REQUEST naming the field', () => {
    for (const bad of [{ queued: -1 }, { queued: 1.5 }, { queued: '3' }, { queued: 1e12 }, [1], 'x', 3]) {
      assert.throws(() => parsePokeBody(bad), (err) => {
        assert.ok(isKubefnError(err, 'BAD_REQUEST'), JSON.stringify(bad));
        assert.match((err as Error).message, /a poke's/);
        return true;
      });
    }
  });
});

describe('pokeOrStart', () => {
  const token = 'a-token-of-24-bytes-long';

  it('pokes when an autoscaler takes it, and starts the function itself when none does', async () => {
    const good = await peer('good', (_req, res) => res.writeHead(202).end());
    const started: string[] = [];
    const start = async (name: string) => {
      started.push(name);
      return true;
    };
    try {
      assert.equal(await pokeOrStart({ peers: () => [good], token, start }, 'f', { queued: 3 }), 'poked');
      assert.deepEqual(started, []);
      const gone = { id: 'gone', url: await refusingUrl() };
      assert.equal(await pokeOrStart({ peers: () => [gone], token, start }, 'f'), 'started');
      assert.equal(await pokeOrStart({ peers: () => [], token, start }, 'g'), 'started', 'no autoscaler ready at all');
      assert.deepEqual(started, ['f', 'g']);
    } finally {
      good.server.closeAllConnections();
      await new Promise<void>((resolve) => good.server.close(() => resolve()));
    }
  });

  it('throws the poke\'s error when the function was not at zero, and both errors when the start failed', async () => {
    await assert.rejects(pokeOrStart({ peers: () => [], token, start: async () => false }, 'f'), /no ready replica of the autoscaler/);
    await assert.rejects(
      pokeOrStart({ peers: () => [], token, start: async () => Promise.reject(new Error('forbidden: deployments/scale')) }, 'f'),
      (err: unknown) => isKubefnError(err, 'UNAVAILABLE') && /no ready replica.*starting "f" from the gateway failed too: forbidden/.test((err as Error).message),
    );
  });
});
