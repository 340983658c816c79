// An event's call through the gateway's FunctionCaller, against a replica that is a plain HTTP
// server: what the replica receives, what the trigger gets back, and the gateway's own answers
// (status, error body and code) where no replica can take the call — the same as over HTTP.

import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { parseFunctionSpec, runtimeHeaders } from '@kubefn/platform';
import { waitFor } from '@kubefn/platform/testing';
import { createGateway, type Gateway } from '../app.js';
import { MemoryDriver } from '../testing/memory-driver.js';
import { callerInvoke, type Invoke } from './call.js';

describe('event calls through the function caller', () => {
  let replica: http.Server;
  let driver: MemoryDriver;
  let gateway: Gateway;
  let invoke: Invoke;
  const seen: { method: string; url: string; headers: http.IncomingHttpHeaders; body: string }[] = [];

  before(async () => {
    replica = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString();
        seen.push({ method: req.method!, url: req.url!, headers: req.headers, body });
        if (body === 'busy') return void res.writeHead(503, { [runtimeHeaders.overloaded]: '1' }).end('busy');
        res.writeHead(body === 'fail' ? 500 : 200, { 'content-type': 'text/plain' }).end(`got ${body}`);
      });
    });
    await new Promise<void>((resolve) => replica.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(replica.address() as AddressInfo).port}`;
    driver = new MemoryDriver();
    gateway = createGateway({ driver, maxBodyBytes: 16, maxQueuePerFunction: 1 });
    await driver.deploy(parseFunctionSpec({ name: 'echo', image: 'img' }));
    driver.endpoints('echo').set([{ id: 'echo-1', url, adminUrl: url }]);
    await driver.deploy(parseFunctionSpec({ name: 'waits', image: 'img' }));
    invoke = callerInvoke(gateway.context.caller);
  });
  after(async () => {
    await gateway.close();
    await new Promise((resolve) => replica.close(resolve));
  });

  it("keeps the runtime's own headers from the event caller and the HTTP caller alike", async () => {
    const event = await invoke({ name: 'echo', headers: {}, body: Buffer.from('busy') });
    assert.equal(event.status, 503);
    assert.equal(event.headers[runtimeHeaders.overloaded], undefined);
    const http = await gateway.app.inject({ method: 'POST', url: '/function/echo', payload: 'busy' });
    assert.equal(http.statusCode, 503);
    assert.equal(http.headers[runtimeHeaders.overloaded], undefined);
  });

  it('sends the event to a replica as POST with its headers and the call id, and hands back the answer', async () => {
    const before = gateway.context.invocations.get('echo') ?? 0;
    const res = await invoke({ name: 'echo', path: '/sub?x=1', headers: { 'ce-id': 'e1', 'x-call-id': 'call-1' }, body: Buffer.from('hello') });
    assert.equal(res.status, 200);
    assert.equal(res.body.toString(), 'got hello');
    assert.equal(res.headers['content-type'], 'text/plain');
    assert.equal(res.code, undefined);
    const got = seen.at(-1)!;
    assert.equal(got.method, 'POST');
    assert.equal(got.url, '/sub?x=1');
    assert.equal(got.headers['ce-id'], 'e1');
    assert.equal(got.headers['x-call-id'], 'call-1');
    assert.ok(got.headers['x-start-time']);
    assert.equal(gateway.context.invocations.get('echo'), before + 1);
    assert.equal(gateway.context.stats.inFlight('echo'), 0);
    const metrics = await gateway.app.inject({ method: 'GET', url: '/metrics' });
    assert.match(metrics.body, /kubefn_gateway_requests_total\{function="echo",code="200"\} \d+/);
  });

  it("passes a function's own failure on as its status, with no gateway code", async () => {
    const res = await invoke({ name: 'echo', headers: {}, body: Buffer.from('fail') });
    assert.equal(res.status, 500);
    assert.equal(res.code, undefined);
    assert.equal(res.body.toString(), 'got fail');
  });

  it('answers for the gateway as over HTTP: NOT_FOUND, BODY_TOO_LARGE, QUEUE_FULL', async () => {
    const missing = await invoke({ name: 'nope', headers: { 'x-call-id': 'c2' }, body: Buffer.from('x') });
    assert.equal(missing.status, 404);
    assert.equal(missing.code, 'NOT_FOUND');
    assert.deepEqual(Object.keys(JSON.parse(missing.body.toString())).sort(), ['callId', 'code', 'hint', 'message']);
    assert.equal(JSON.parse(missing.body.toString()).callId, 'c2');

    const large = await invoke({ name: 'echo', headers: {}, body: Buffer.alloc(17) });
    assert.equal(large.status, 413);
    assert.equal(large.code, 'BODY_TOO_LARGE');

    // One call waits for a replica of `waits` (the queue holds one); the next is refused at once.
    const waiting = invoke({ name: 'waits', headers: {}, body: Buffer.from('x') });
    await waitFor(() => [...gateway.context.routers.queueDepths()].some(([n, depth]) => n === 'waits' && depth === 1), { what: 'one queued call' });
    const full = await invoke({ name: 'waits', headers: {}, body: Buffer.from('x') });
    assert.equal(full.status, 503);
    assert.equal(full.code, 'QUEUE_FULL');
    // Deleting the function answers the waiting call.
    await gateway.app.inject({ method: 'DELETE', url: '/system/functions', payload: { functionName: 'waits' } });
    assert.equal((await waiting).status, 503);
  });
});
