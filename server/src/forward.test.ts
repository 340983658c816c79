import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, describe, it } from 'node:test';
import { Forwarder } from './forward.js';

function listen(server: Server): Promise<string> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)));
}

describe('Forwarder', () => {
  const servers: Server[] = [];
  after(() => servers.forEach((s) => s.close()));

  async function front(forwarder: Forwarder): Promise<string> {
    const s = createServer((req, res) => forwarder.forward(req, res));
    servers.push(s);
    return listen(s);
  }

  it('passes method, path, headers and body on, and the answer back', async () => {
    const target = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () =>
        res
          .writeHead(201, { 'content-type': 'application/json', 'x-seen-auth': req.headers.authorization ?? '' })
          .end(JSON.stringify({ method: req.method, url: req.url, body: Buffer.concat(chunks).toString() })),
      );
    });
    servers.push(target);
    const forwarder = new Forwarder({ target: await listen(target) });
    const url = await front(forwarder);
    const res = await fetch(`${url}/system/functions?x=1`, { method: 'PUT', headers: { authorization: 'Bearer t' }, body: 'hello' });
    assert.equal(res.status, 201);
    assert.equal(res.headers.get('x-seen-auth'), 'Bearer t');
    assert.deepEqual(await res.json(), { method: 'PUT', url: '/system/functions?x=1', body: 'hello' });
    await forwarder.close(100);
  });

  it('answers 503 UNAVAILABLE when the target does not answer', async () => {
    const gone = createServer();
    const target = await listen(gone);
    await new Promise((r) => gone.close(r));
    const forwarder = new Forwarder({ target });
    const res = await fetch(`${await front(forwarder)}/system/info`);
    assert.equal(res.status, 503);
    assert.equal(((await res.json()) as { code: string }).code, 'UNAVAILABLE');
    await forwarder.close(100);
  });

  it('refuses past maxInFlight at once, and close cuts a stream that never ends', async () => {
    const target = createServer((_req, res) => res.writeHead(200).write('first line\n'));
    servers.push(target);
    const forwarder = new Forwarder({ target: await listen(target), maxInFlight: 1 });
    const url = await front(forwarder);
    const open = await fetch(`${url}/system/logs?follow=true`);
    assert.equal(open.status, 200);
    const reader = open.body!.getReader();
    await reader.read();
    assert.equal(forwarder.inFlight, 1);
    const refused = await fetch(`${url}/system/info`);
    assert.equal(refused.status, 503);
    await refused.text();
    await forwarder.close(50);
    assert.equal(forwarder.inFlight, 0);
    await assert.rejects(async () => {
      for (;;) if ((await reader.read()).done) throw new Error('ended');
    });
  });
});
