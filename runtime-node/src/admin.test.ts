import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { register as globalRegistry } from 'prom-client';
import { serve } from './serve.js';
import { LogCapture, deferred, withDeadline } from './testkit.js';

describe('admin port', () => {
  it('healthz is 200 from the start; readyz is 503 during init, 200 after, 503 while draining', async () => {
    const logs = new LogCapture();
    const initGate = deferred();
    const hold = deferred();
    const holding = deferred();
    const starting = serve(
      { default: () => (holding.resolve(), hold.promise.then(() => 'held')), init: () => initGate.promise },
      { port: 0, adminPort: 0, host: '127.0.0.1', functionName: 'fn', log: logs.sink, logLevel: 'debug' },
    );
    const line = await logs.waitFor((l) => l.msg === 'admin port listening', 'the admin port');
    const admin = `http://127.0.0.1:${line.adminPort as number}`;

    const health = await fetch(`${admin}/healthz`);
    assert.equal(health.status, 200);
    assert.equal(await health.text(), 'ok');
    const early = await fetch(`${admin}/readyz`);
    assert.equal(early.status, 503);
    assert.equal(await early.text(), 'starting');

    initGate.resolve();
    const server = await withDeadline(starting, 'serve() to resolve');
    const ready = await fetch(`${admin}/readyz`);
    assert.equal(ready.status, 200);
    assert.equal(await ready.text(), 'ready');

    // A call in flight keeps the drain (and so the admin port) going while readyz is checked.
    const held = fetch(`http://127.0.0.1:${server.port}/`);
    await withDeadline(holding.promise, 'the call to start');
    const drained = server.drain();
    const draining = await fetch(`${admin}/readyz`);
    assert.equal(draining.status, 503);
    assert.equal(await draining.text(), 'draining');
    hold.resolve();
    assert.equal(await (await held).text(), 'held');
    await withDeadline(drained, 'the drain');
  });

  it('metrics count calls by code on a private registry, with process metrics', async () => {
    const server = await serve(
      { default: (request: Request) => (request.url.endsWith('/boom') ? Promise.reject(new Error('x')) : 'ok') },
      { port: 0, adminPort: 0, host: '127.0.0.1', functionName: 'metered', log: () => {} },
    );
    try {
      const scrape = async (): Promise<string> => {
        const res = await fetch(`http://127.0.0.1:${server.adminPort}/metrics`);
        assert.equal(res.status, 200);
        assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
        return res.text();
      };
      const before = await scrape();
      assert.doesNotMatch(before, /kubefn_runtime_requests_total\{/);
      assert.match(before, /^kubefn_runtime_in_flight\{function="metered"\} 0$/m);
      assert.match(before, /^kubefn_runtime_abandoned_calls\{function="metered"\} 0$/m);
      assert.match(before, /^process_cpu_user_seconds_total/m);
      assert.match(before, /^nodejs_eventloop_lag_seconds/m);

      await (await fetch(`http://127.0.0.1:${server.port}/`)).text();
      await (await fetch(`http://127.0.0.1:${server.port}/boom`)).text();
      const after = await scrape();
      assert.match(after, /^kubefn_runtime_requests_total\{code="200",function="metered"\} 1$/m);
      assert.match(after, /^kubefn_runtime_requests_total\{code="500",function="metered"\} 1$/m);
      assert.match(after, /^kubefn_runtime_request_duration_seconds_count\{function="metered"\} 2$/m);
      assert.match(after, /^kubefn_runtime_request_duration_seconds_bucket\{le="0.001",function="metered"\}/m);
      assert.match(after, /^kubefn_runtime_request_duration_seconds_bucket\{le="60",function="metered"\}/m);
      assert.doesNotMatch(await globalRegistry.metrics(), /kubefn_runtime/);
    } finally {
      await server.close();
    }
  });

  it('answers 404 for other paths and 405 for other methods; user routes never reach it', async () => {
    let calls = 0;
    const server = await serve(
      { default: () => (calls++, 'user') },
      { port: 0, adminPort: 0, host: '127.0.0.1', log: () => {} },
    );
    try {
      const admin = `http://127.0.0.1:${server.adminPort}`;
      assert.equal((await fetch(`${admin}/other`)).status, 404);
      assert.equal((await fetch(`${admin}/healthz`, { method: 'POST' })).status, 405);
      // The function port serves /healthz as an ordinary user route.
      assert.equal(await (await fetch(`http://127.0.0.1:${server.port}/healthz`)).text(), 'user');
      assert.equal(calls, 1);
    } finally {
      await server.close();
    }
  });
});
