// The gateway's own routes and the invoke path's answers when no replica can take a call, through
// fastify's inject() on an in-memory driver: status codes and kubefn error bodies.

import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { KubefnError, parseFunctionSpec } from '@kubefn/platform';
import { waitFor } from '@kubefn/platform/testing';
import { createGateway, type Gateway } from './app.js';
import { MemoryDriver } from './testing/memory-driver.js';

/** The shape of every kubefn error body: code and message, hint and fields only when set. */
function assertErrorBody(body: Record<string, unknown>, code: string): void {
  assert.equal(body.code, code);
  assert.equal(typeof body.message, 'string');
  assert.ok((body.message as string).length > 0);
  for (const key of Object.keys(body)) assert.ok(['code', 'message', 'hint', 'fields', 'callId'].includes(key), `unexpected key ${key}`);
}

describe('gateway routes', () => {
  let driver: MemoryDriver;
  let gateway: Gateway;
  const pokes: string[] = [];

  before(async () => {
    driver = new MemoryDriver();
    gateway = createGateway({ driver, maxBodyBytes: 1024, maxQueuePerFunction: 1, onNoReplica: (name) => pokes.push(name) });
    await driver.deploy(parseFunctionSpec({ name: 'cold', image: 'img', timeout: '150ms' }));
    await driver.deploy(parseFunctionSpec({ name: 'waits', image: 'img' }));
  });
  after(() => gateway.close());

  it('GET /healthz answers OK', async () => {
    const res = await gateway.app.inject({ method: 'GET', url: '/healthz' });
    assert.equal(res.statusCode, 200);
    assert.equal(res.body, 'OK');
  });

  it('GET /metrics answers in the Prometheus text format', async () => {
    const res = await gateway.app.inject({ method: 'GET', url: '/metrics' });
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers['content-type']), /^text\/plain/);
    for (const name of ['kubefn_gateway_requests_total', 'kubefn_gateway_request_duration_seconds', 'kubefn_gateway_cold_start_seconds', 'kubefn_gateway_queued_requests']) {
      assert.match(res.body, new RegExp(`# TYPE ${name} `));
    }
  });

  it('answers 404 NOT_FOUND for a route it does not serve', async () => {
    const res = await gateway.app.inject({ method: 'GET', url: '/nowhere?x=1' });
    assert.equal(res.statusCode, 404);
    assertErrorBody(res.json(), 'NOT_FOUND');
    assert.equal(res.json().message, 'no route GET /nowhere');
  });

  it('answers 404 NOT_FOUND with the call id for an unknown function, on the root and on a sub-path', async () => {
    for (const url of ['/function/nope', '/function/nope/a/b?c=d']) {
      const res = await gateway.app.inject({ method: 'POST', url, headers: { 'x-call-id': 'call-7' }, payload: 'x' });
      assert.equal(res.statusCode, 404, url);
      const body = res.json();
      assertErrorBody(body, 'NOT_FOUND');
      assert.match(body.message, /"nope"/);
      assert.ok(body.hint);
      assert.equal(body.callId, 'call-7');
      assert.equal(res.headers['x-call-id'], 'call-7');
    }
  });

  it('answers 400 BAD_REQUEST in its own shape to a URL the router refuses', async () => {
    for (const url of ['/function/%E0%A4%A', `/function/${'a'.repeat(101)}`, '/system/function/%zz', '/elsewhere/%zz']) {
      const res = await gateway.app.inject({ method: 'GET', url });
      assert.equal(res.statusCode, 400, url);
      assertErrorBody(res.json(), 'BAD_REQUEST');
    }
  });

  it('answers 400 BAD_REQUEST to JSON nested deeper than 64 levels, and to JSON that does not parse, in its own shape', async () => {
    const deep = `{"name":"deep","image":"img","env":${'['.repeat(100_000)}${']'.repeat(100_000)}}`;
    for (const [method, url] of [['POST', '/system/functions'], ['PUT', '/system/functions'], ['DELETE', '/system/functions']] as const) {
      const res = await gateway.app.inject({ method, url, payload: deep, headers: { 'content-type': 'application/json' } });
      assert.equal(res.statusCode, 400, `${method} ${url}: ${res.body}`);
      assertErrorBody(res.json(), 'BAD_REQUEST');
      assert.match(res.json().message, /nested deeper than 64 levels/);
    }
    const nested = (depth: number) => `{"name":"nested","image":"img","labels":{"a":"b"},"x":${'['.repeat(depth - 1)}${']'.repeat(depth - 1)}}`;
    const fine = await gateway.app.inject({ method: 'POST', url: '/system/functions', payload: nested(64), headers: { 'content-type': 'application/json' } });
    assert.doesNotMatch(fine.body, /nested deeper/, '64 levels are parsed (the spec check may still refuse the body)');
    const torn = await gateway.app.inject({ method: 'POST', url: '/system/functions', payload: '{"name":', headers: { 'content-type': 'application/json' } });
    assert.equal(torn.statusCode, 400);
    assertErrorBody(torn.json(), 'BAD_REQUEST');
    const poisoned = await gateway.app.inject({ method: 'POST', url: '/system/functions', payload: '{"name":"p","image":"i","__proto__":{"x":1}}', headers: { 'content-type': 'application/json' } });
    assert.equal(poisoned.statusCode, 400, 'prototype poisoning is still refused');
  });

  it('answers 400 INVALID_NAME for a name that is not a DNS label', async () => {
    const res = await gateway.app.inject({ method: 'GET', url: '/function/Not_A_Name' });
    assert.equal(res.statusCode, 400);
    assertErrorBody(res.json(), 'INVALID_NAME');
    assert.ok(res.json().hint);
  });

  it("takes name.default and name.openfaas-fn (faas-cli's default), and answers 404 for any other namespace", async () => {
    const other = await gateway.app.inject({ method: 'GET', url: '/function/cold.other' });
    assert.equal(other.statusCode, 404);
    assertErrorBody(other.json(), 'NOT_FOUND');
    assert.match(other.json().message, /"other"/);
    // `cold.default` is `cold`: it gets as far as waiting for a replica.
    const res = await gateway.app.inject({ method: 'GET', url: '/function/cold.default' });
    assert.equal(res.statusCode, 504);
    const openfaas = await gateway.app.inject({ method: 'GET', url: '/function/cold.openfaas-fn' });
    assert.equal(openfaas.statusCode, 504);
  });

  it('answers 413 BODY_TOO_LARGE for a call body over the limit, before waiting for a replica', async () => {
    const res = await gateway.app.inject({ method: 'POST', url: '/function/cold', payload: 'x'.repeat(2048) });
    assert.equal(res.statusCode, 413);
    assertErrorBody(res.json(), 'BODY_TOO_LARGE');
    assert.match(res.json().message, /2048 bytes .* 1024 byte limit/);
  });

  it('pokes the autoscaler for a function with no replica, and answers 504 DEADLINE_EXCEEDED at its timeout', async () => {
    pokes.length = 0;
    const res = await gateway.app.inject({ method: 'GET', url: '/function/cold/path' });
    assert.deepEqual(pokes, ['cold']);
    assert.equal(res.statusCode, 504);
    const body = res.json();
    assertErrorBody(body, 'DEADLINE_EXCEEDED');
    assert.match(body.message, /no ready replica within 150 ms/);
    assert.match(body.hint, /fn logs cold/);
    assert.ok(body.callId);
  });

  it('answers 503 QUEUE_FULL at once when the queue is full, and 503 to the waiting call when its function goes', async () => {
    const waiting = gateway.app.inject({ method: 'GET', url: '/function/waits' });
    await waitFor(() => [...gateway.context.routers.queueDepths()].some(([n, depth]) => n === 'waits' && depth === 1), { what: 'one queued call' });
    const metrics = await gateway.app.inject({ method: 'GET', url: '/metrics' });
    assert.match(metrics.body, /kubefn_gateway_queued_requests\{function="waits"\} 1/);

    const full = await gateway.app.inject({ method: 'GET', url: '/function/waits' });
    assert.equal(full.statusCode, 503);
    assertErrorBody(full.json(), 'QUEUE_FULL');
    assert.match(full.json().message, /has 1 requests waiting, its queue limit/);
    assert.ok(full.json().hint);
    assert.equal(full.headers['retry-after'], '2', 'the default start-up, rounded up');

    // Deleting the function answers the call still waiting for it instead of leaving it hanging.
    const removed = await gateway.app.inject({ method: 'DELETE', url: '/system/functions', payload: { functionName: 'waits' } });
    assert.equal(removed.statusCode, 200);
    const res = await waiting;
    assert.equal(res.statusCode, 503);
    assert.equal(typeof res.json().code, 'string');
  });

  it('counts answered calls by function and status code', async () => {
    await gateway.app.inject({ method: 'GET', url: '/function/cold' });
    const metrics = await gateway.app.inject({ method: 'GET', url: '/metrics' });
    assert.match(metrics.body, /kubefn_gateway_requests_total\{function="cold",code="504"\} [1-9]/);
  });
});

describe('gateway error mapping', () => {
  it('maps a kubefn error to its status and body, and anything else to 500 INTERNAL without its message', async () => {
    const driver = new MemoryDriver();
    const gateway = createGateway({ driver });
    try {
      await driver.deploy(parseFunctionSpec({ name: 'f', image: 'img' }));
      const scale = () => gateway.app.inject({ method: 'POST', url: '/system/scale-function/f', payload: { replicas: 1 } });

      driver.failNext('scale', new KubefnError('NOT_SUPPORTED', 'this driver cannot scale', { hint: 'use another driver' }));
      const unsupported = await scale();
      assert.equal(unsupported.statusCode, 501);
      assert.deepEqual(unsupported.json(), { code: 'NOT_SUPPORTED', message: 'this driver cannot scale', hint: 'use another driver' });

      driver.failNext('scale', new KubefnError('UNAVAILABLE', 'the API server answered 503'));
      const unavailable = await scale();
      assert.equal(unavailable.statusCode, 503);
      assert.deepEqual(unavailable.json(), { code: 'UNAVAILABLE', message: 'the API server answered 503' });

      driver.failNext('scale', new Error('secret detail from deep inside'));
      const internal = await scale();
      assert.equal(internal.statusCode, 500);
      assert.deepEqual(internal.json(), { code: 'INTERNAL', message: 'internal server error' });

      const errno = (code: string) => Object.assign(new Error(`${code}: write /home/secret/path/functions/f.json`), { code, path: '/home/secret/path/functions/f.json' });
      driver.failNext('scale', errno('ENOSPC'));
      const full = await scale();
      assert.equal(full.statusCode, 507);
      assert.equal(full.json().code, 'NO_SPACE');
      assert.match(full.json().hint, /free space/);
      assert.doesNotMatch(full.body, /secret\/path/, 'the file is logged, not answered');
      driver.failNext('scale', errno('EIO'));
      const broken = await scale();
      assert.equal(broken.statusCode, 503);
      assert.equal(broken.json().code, 'UNAVAILABLE');

      assert.equal((await scale()).statusCode, 202, 'each failure was for one call only');
    } finally {
      await gateway.close();
    }
  });

  it('close() cuts a connection whose request was answered before its body came, instead of waiting for the body', { timeout: 30_000 }, async () => {
    const gateway = createGateway({ driver: new MemoryDriver(), token: 'a-token-of-16-bytes+' });
    const base = new URL(await gateway.app.listen({ port: 0, host: '127.0.0.1' }));
    const socket = net.connect(Number(base.port), '127.0.0.1');
    const answered = new Promise<string>((resolve) => socket.once('data', (d: Buffer) => resolve(d.toString())));
    const closedByServer = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    // An upload to a function that does not exist: answered 404 at once, the body never sent.
    socket.write('POST /function/nope HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\nfirst bytes');
    assert.match(await answered, /^HTTP\/1\.1 404 /);
    await gateway.close();
    await closedByServer;
    assert.ok(socket.destroyed);
  });

  it('answers requests that arrive while it closes with 503 SHUTTING_DOWN in its own shape and Connection: close', { timeout: 30_000 }, async () => {
    const driver = new MemoryDriver();
    await driver.deploy(parseFunctionSpec({ name: 'waits', image: 'img', timeout: '20s' }));
    const gateway = createGateway({ driver });
    // A call waiting for a replica keeps the close waiting.
    const waiting = gateway.app.inject({ method: 'GET', url: '/function/waits' });
    await waitFor(() => gateway.stats.inFlight('waits') > 0, { what: 'the waiting call in flight', timeoutMs: 5000 });
    const closed = gateway.close();
    const answer = await gateway.app.inject({ method: 'GET', url: '/system/functions' });
    assert.equal(answer.statusCode, 503);
    assert.equal(answer.headers.connection, 'close');
    assertErrorBody(answer.json(), 'SHUTTING_DOWN');
    await closed;
    assert.equal((await waiting).statusCode, 503, 'the waiting call is answered too');
  });

  it('close() is idempotent, and the app takes no calls after it', async () => {
    const driver = new MemoryDriver();
    const gateway = createGateway({ driver });
    await gateway.close();
    await gateway.close(); // idempotent
    await assert.rejects(gateway.app.inject({ method: 'GET', url: '/healthz' }));
  });
});

describe('what the HTTP parser refuses', () => {
  it('a malformed request line and headers over the size limit get 400 / 431 in kubefn\'s error shape, then the connection closes', async () => {
    const gateway = createGateway({ driver: new MemoryDriver() });
    const base = await gateway.app.listen({ port: 0, host: '127.0.0.1' });
    const port = Number(new URL(base).port);
    const raw = (request: string) =>
      new Promise<string>((resolve, reject) => {
        const socket = net.connect(port, '127.0.0.1', () => socket.end(request));
        let text = '';
        socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
        socket.on('close', () => resolve(text));
        socket.on('error', reject);
      });
    try {
      for (const [request, status] of [
        ['GET /healthz HTTP/1.1 extra\r\nHost: x\r\n\r\n', 400],
        [`GET /healthz HTTP/1.1\r\nHost: x\r\nx-big: ${'a'.repeat(64 * 1024)}\r\n\r\n`, 431],
      ] as const) {
        const answer = await raw(request);
        assert.match(answer, new RegExp(`^HTTP/1.1 ${status} `), answer.slice(0, 200));
        const body = answer.slice(answer.indexOf('\r\n\r\n') + 4);
        assertErrorBody(JSON.parse(body) as Record<string, unknown>, 'BAD_REQUEST');
        assert.match(answer, /x-kubefn-error: BAD_REQUEST/i);
      }
    } finally {
      await gateway.close();
    }
  });
});
