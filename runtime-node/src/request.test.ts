import assert from 'node:assert/strict';
import http from 'node:http';
import { describe, it } from 'node:test';
import type { Context } from './handler.js';
import { call, deferred, readResponse, startRuntime, withDeadline, type RawResponse } from './testkit.js';

describe('the Request a handler sees', () => {
  it('has the method, full URL with query, headers and body', async () => {
    const seen = deferred<{ method: string; url: string; header: string | null; body: string; callId: string }>();
    const { server } = await startRuntime({
      async default(request: Request, context: Context) {
        seen.resolve({
          method: request.method,
          url: request.url,
          header: request.headers.get('x-test'),
          body: await request.text(),
          callId: context.callId,
        });
        return 'ok';
      },
    });
    try {
      const res = await call(server.port, {
        method: 'POST',
        path: '/a/b?x=1&y=two',
        headers: { 'x-test': 'value', 'content-type': 'text/plain', 'x-call-id': 'id-1' },
        body: 'payload',
      });
      assert.equal(res.status, 200);
      const got = await seen.promise;
      assert.equal(got.method, 'POST');
      const url = new URL(got.url);
      assert.equal(url.pathname, '/a/b');
      assert.equal(url.searchParams.get('x'), '1');
      assert.equal(url.searchParams.get('y'), 'two');
      assert.equal(got.header, 'value');
      assert.equal(got.body, 'payload');
      assert.equal(got.callId, 'id-1');
    } finally {
      await server.close();
    }
  });

  it('has no body for GET', async () => {
    const seen = deferred<ReadableStream | null>();
    const { server, base } = await startRuntime({ default: (request: Request) => (seen.resolve(request.body), '') });
    try {
      await (await fetch(base)).text();
      assert.equal(await seen.promise, null);
    } finally {
      await server.close();
    }
  });

  it('keeps a keep-alive connection usable when the handler ignores the body', async () => {
    const { server } = await startRuntime({ default: () => 'ignored' });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      for (let i = 0; i < 3; i++) {
        const res = await call(server.port, { method: 'POST', path: '/', agent, body: 'x'.repeat(100_000) });
        assert.equal(res.body, 'ignored');
      }
    } finally {
      agent.destroy();
      await server.close();
    }
  });

  it('answers 400 when the request cannot be a Fetch Request, without running the handler', async () => {
    let calls = 0;
    const { server } = await startRuntime({ default: () => (calls++, 'ran') });
    try {
      const res = await call(server.port, { method: 'TRACE', path: '/' });
      assert.equal(res.status, 400);
      assert.equal((JSON.parse(res.body) as { code: string }).code, 'BAD_REQUEST');
      assert.equal(calls, 0);
    } finally {
      await server.close();
    }
  });

  it('a Workers-style module gets fetch(request, context)', async () => {
    const { server, base } = await startRuntime({
      default: { fetch: (request: Request, context: Context) => `${request.method} ${context.functionName}` },
    });
    try {
      assert.equal(await (await fetch(base)).text(), 'GET fn');
    } finally {
      await server.close();
    }
  });
});

describe('body limit', () => {
  it('Content-Length over the limit -> 413 at once, handler not run', async () => {
    let calls = 0;
    const { server } = await startRuntime({ default: () => (calls++, 'ran') }, { maxBodyBytes: 1024 });
    try {
      const res = await withDeadline(
        new Promise<RawResponse>((resolve, reject) => {
          // Send the headers only: the 413 must come before any body is read.
          const req = http.request(
            { host: '127.0.0.1', port: server.port, method: 'POST', agent: false, headers: { 'content-length': '5000' } },
            (r) => readResponse(r).then(resolve, reject),
          );
          req.on('error', reject);
          req.flushHeaders();
        }),
        'the 413',
      );
      assert.equal(res.status, 413);
      assert.equal((JSON.parse(res.body) as { code: string }).code, 'BODY_TOO_LARGE');
      assert.equal(calls, 0);
    } finally {
      await server.close();
    }
  });

  it('with Expect: 100-continue, a body that fits is asked for and one that does not is refused', async () => {
    const { server } = await startRuntime({ default: async (request: Request) => `got ${(await request.text()).length}` }, { maxBodyBytes: 1024 });
    try {
      const expect = (length: number): Promise<{ continued: boolean; res: RawResponse }> =>
        withDeadline(
          new Promise((resolve, reject) => {
            let continued = false;
            const req = http.request({
              host: '127.0.0.1', port: server.port, method: 'POST', agent: false,
              headers: { expect: '100-continue', 'content-length': String(length) },
            });
            req.on('continue', () => {
              continued = true;
              req.end('y'.repeat(length));
            });
            req.on('response', (r) => readResponse(r).then((res) => resolve({ continued, res }), reject));
            req.on('error', reject);
            req.flushHeaders();
          }),
          'an Expect: 100-continue call',
        );
      const small = await expect(10);
      assert.equal(small.continued, true);
      assert.equal(small.res.body, 'got 10');
      const large = await expect(4096);
      assert.equal(large.continued, false);
      assert.equal(large.res.status, 413);
    } finally {
      await server.close();
    }
  });

  it('a chunked body growing past the limit errors the body stream and answers 413', async () => {
    const bodyError = deferred<unknown>();
    const { server } = await startRuntime(
      {
        async default(request: Request) {
          try {
            await request.arrayBuffer();
          } catch (err) {
            bodyError.resolve(err);
            throw err;
          }
          return 'read it all';
        },
      },
      { maxBodyBytes: 1024 },
    );
    try {
      const res = await withDeadline(
        new Promise<RawResponse>((resolve, reject) => {
          const req = http.request(
            { host: '127.0.0.1', port: server.port, method: 'POST', agent: false, headers: { 'transfer-encoding': 'chunked' } },
            (r) => readResponse(r).then(resolve, reject).finally(() => req.destroy()),
          );
          req.on('error', () => {});
          // 3 x 600 bytes: past the 1024-byte limit; the request is never ended.
          for (let i = 0; i < 3; i++) req.write('x'.repeat(600));
        }),
        'the 413',
      );
      assert.equal(res.status, 413);
      assert.equal((JSON.parse(res.body) as { code: string }).code, 'BODY_TOO_LARGE');
      const err = await withDeadline(bodyError.promise, 'the handler to see the body fail');
      assert.ok(err instanceof Error);
    } finally {
      await server.close();
    }
  });
});
