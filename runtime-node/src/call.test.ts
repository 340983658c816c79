import assert from 'node:assert/strict';
import http from 'node:http';
import { describe, it } from 'node:test';
import type { Context } from './handler.js';
import { connect, deferred, readUntilClose, startRuntime, withDeadline } from './testkit.js';

describe('handler failures', () => {
  it('a throw is a 500 with the call id and no error text; the stack goes to the log', async () => {
    const { server, base, logs } = await startRuntime({
      default(request: Request) {
        if (request.url.endsWith('/reject')) return Promise.reject(new Error('secret-detail rejected'));
        throw new Error('secret-detail thrown');
      },
    });
    try {
      for (const path of ['/throw', '/reject']) {
        const res = await fetch(`${base}${path}`, { headers: { 'x-call-id': `id${path.replace('/', '-')}` } });
        assert.equal(res.status, 500);
        const text = await res.text();
        assert.doesNotMatch(text, /secret-detail|at |stack/);
        assert.deepEqual(JSON.parse(text), { code: 'HANDLER_ERROR', message: 'function "fn" failed', callId: `id${path.replace('/', '-')}` });
        const line = await logs.waitFor((l) => l.callId === `id${path.replace('/', '-')}` && l.level === 'error', 'the error log');
        const err = line.err as { message: string; stack: string };
        assert.match(err.message, /secret-detail/);
        assert.match(err.stack, /\n\s+at /);
      }
    } finally {
      await server.close();
    }
  });

  it('a streamed body that fails before its first chunk is a 500', async () => {
    const { server, base } = await startRuntime({
      default: () => new Response(new ReadableStream({ pull() { throw new Error('broken stream'); } })),
    });
    try {
      const res = await fetch(base);
      assert.equal(res.status, 500);
      assert.equal(((await res.json()) as { code: string }).code, 'HANDLER_ERROR');
    } finally {
      await server.close();
    }
  });
});

describe('timeout', () => {
  it('answers 504 and fires the handler\'s signal with a TimeoutError', async () => {
    const aborted = deferred<unknown>();
    const { server, base, logs } = await startRuntime(
      {
        default: (_request: Request, context: Context) =>
          new Promise((resolve) => {
            context.signal.addEventListener('abort', () => {
              aborted.resolve(context.signal.reason);
              // Answer late, as a handler that ignores its deadline would.
              setImmediate(() => resolve('too late'));
            });
          }),
      },
      { timeoutMs: 200 },
    );
    try {
      const res = await fetch(base, { headers: { 'x-call-id': 'slow-1' } });
      assert.equal(res.status, 504);
      assert.deepEqual(await res.json(), {
        code: 'TIMEOUT',
        message: 'function "fn" did not answer within 200 ms',
        callId: 'slow-1',
      });
      const reason = await withDeadline(aborted.promise, 'the abort signal');
      assert.equal((reason as Error).name, 'TimeoutError');
      await logs.waitFor((l) => l.msg === 'call timed out' && l.callId === 'slow-1', 'the timeout log');
    } finally {
      await server.close();
    }
  });

  it('frees the slot at the deadline and counts the handler as abandoned until it returns', async () => {
    const release = deferred();
    const { server, base } = await startRuntime({ default: () => release.promise.then(() => 'late') }, { timeoutMs: 100, concurrency: 1 });
    const gauge = async (name: string): Promise<string | undefined> => {
      const text = await (await fetch(`http://127.0.0.1:${server.adminPort}/metrics`)).text();
      return new RegExp(`^${name}\\{[^}]*\\} (\\d+)$`, 'm').exec(text)?.[1];
    };
    try {
      assert.equal((await fetch(base)).status, 504);
      assert.equal(await gauge('kubefn_runtime_in_flight'), '0');
      assert.equal(await gauge('kubefn_runtime_abandoned_calls'), '1');
      release.resolve();
      await release.promise;
      assert.equal(await gauge('kubefn_runtime_abandoned_calls'), '0');
      assert.equal((await fetch(base)).status, 200, 'the cap of 1 admits the next call');
    } finally {
      await server.close();
    }
  });

  it('cuts the connection when a streamed response is still going at the deadline', async () => {
    const { server } = await startRuntime(
      { default: () => new Response(new ReadableStream({ start(c) { c.enqueue(new TextEncoder().encode('first')); } })) },
      { timeoutMs: 200 },
    );
    try {
      const socket = await connect(server.port);
      const text = readUntilClose(socket);
      socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
      const received = await withDeadline(text, 'the connection to be cut');
      assert.match(received, /^HTTP\/1.1 200/);
      assert.match(received, /first/);
      assert.doesNotMatch(received, /\r\n0\r\n\r\n$/, 'the chunked body must not end cleanly');
    } finally {
      await server.close();
    }
  });
});

describe('client disconnect', () => {
  it('aborts the handler\'s signal', async () => {
    const started = deferred();
    const aborted = deferred<unknown>();
    const { server } = await startRuntime({
      default: (_request: Request, context: Context) => {
        context.signal.addEventListener('abort', () => aborted.resolve(context.signal.reason));
        started.resolve();
        return new Promise(() => {});
      },
    });
    try {
      const req = http.request({ host: '127.0.0.1', port: server.port, agent: false });
      req.on('error', () => {});
      req.end();
      await withDeadline(started.promise, 'the handler to start');
      req.destroy();
      const reason = await withDeadline(aborted.promise, 'the abort signal');
      assert.equal((reason as Error).name, 'AbortError');
    } finally {
      await server.close();
    }
  });

  it('fails a body read in progress instead of leaving it hanging', async () => {
    const firstChunk = deferred();
    const outcome = deferred<string>();
    const { server } = await startRuntime({
      async default(request: Request) {
        const reader = request.body!.getReader();
        await reader.read();
        firstChunk.resolve();
        try {
          await reader.read();
          outcome.resolve('read');
        } catch (err) {
          outcome.resolve(`failed: ${(err as Error).name}`);
        }
        return null;
      },
    });
    try {
      const req = http.request({
        host: '127.0.0.1', port: server.port, method: 'POST', agent: false, headers: { 'content-length': '1000' },
      });
      req.on('error', () => {});
      req.write('x'.repeat(100));
      await withDeadline(firstChunk.promise, 'the first chunk to be read');
      req.destroy();
      assert.match(await withDeadline(outcome.promise, 'the read to fail'), /^failed: /);
    } finally {
      await server.close();
    }
  });
});
