import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RuntimeServer } from './serve.js';
import { startRuntime } from './testkit.js';

describe('result mapping over HTTP', () => {
  let server: RuntimeServer;
  let base: string;
  before(async () => {
    ({ server, base } = await startRuntime({
      default(request: Request) {
        const path = new URL(request.url).pathname;
        switch (path) {
          case '/string': return 'hello';
          case '/json': return { ok: true, list: [1, 2] };
          case '/bytes': return new Uint8Array([0, 1, 255]);
          case '/arraybuffer': return new Uint8Array([7, 8]).buffer;
          case '/null': return null;
          case '/undefined': return undefined;
          case '/async': return Promise.resolve('later');
          case '/response': {
            const headers = new Headers({ 'content-type': 'text/csv', 'x-custom': 'yes' });
            headers.append('set-cookie', 'a=1; Expires=Wed, 21 Oct 2099 07:28:00 GMT');
            headers.append('set-cookie', 'b=2');
            return new Response('a,b\n', { status: 201, headers });
          }
          case '/stream': {
            const encoder = new TextEncoder();
            let n = 0;
            return new Response(new ReadableStream({
              pull(controller) {
                if (n === 3) controller.close();
                else controller.enqueue(encoder.encode(`chunk${n++};`));
              },
            }));
          }
          case '/unserialisable': return { n: 1n };
          default: return new Response('no route', { status: 404 });
        }
      },
    }));
  });
  after(() => server.close());

  it('string -> 200 text/plain', async () => {
    const res = await fetch(`${base}/string`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/plain; charset=utf-8');
    assert.equal(await res.text(), 'hello');
  });

  it('object -> 200 application/json', async () => {
    const res = await fetch(`${base}/json`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'application/json');
    assert.deepEqual(await res.json(), { ok: true, list: [1, 2] });
  });

  it('Uint8Array and ArrayBuffer -> application/octet-stream', async () => {
    const bytes = await fetch(`${base}/bytes`);
    assert.equal(bytes.headers.get('content-type'), 'application/octet-stream');
    assert.deepEqual([...new Uint8Array(await bytes.arrayBuffer())], [0, 1, 255]);
    const buffer = await fetch(`${base}/arraybuffer`);
    assert.equal(buffer.headers.get('content-type'), 'application/octet-stream');
    assert.deepEqual([...new Uint8Array(await buffer.arrayBuffer())], [7, 8]);
  });

  it('null and undefined -> 204', async () => {
    for (const path of ['/null', '/undefined']) {
      const res = await fetch(`${base}${path}`);
      assert.equal(res.status, 204, path);
      assert.equal(await res.text(), '');
    }
  });

  it('a promise is awaited', async () => {
    assert.equal(await (await fetch(`${base}/async`)).text(), 'later');
  });

  it('Response keeps its status and headers, including repeated set-cookie', async () => {
    const res = await fetch(`${base}/response`);
    assert.equal(res.status, 201);
    assert.equal(res.headers.get('content-type'), 'text/csv');
    assert.equal(res.headers.get('x-custom'), 'yes');
    assert.deepEqual(res.headers.getSetCookie(), ['a=1; Expires=Wed, 21 Oct 2099 07:28:00 GMT', 'b=2']);
    assert.equal(await res.text(), 'a,b\n');
  });

  it('a streamed Response body arrives whole', async () => {
    const res = await fetch(`${base}/stream`);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'chunk0;chunk1;chunk2;');
  });

  it('a result that cannot be serialised is a handler error', async () => {
    const res = await fetch(`${base}/unserialisable`);
    assert.equal(res.status, 500);
    assert.equal(((await res.json()) as { code: string }).code, 'HANDLER_ERROR');
  });

  it('sets x-call-id: echoes the caller\'s, or generates one', async () => {
    const given = await fetch(`${base}/string`, { headers: { 'x-call-id': 'call-123' } });
    assert.equal(given.headers.get('x-call-id'), 'call-123');
    const generated = await fetch(`${base}/string`);
    assert.match(generated.headers.get('x-call-id') ?? '', /^[0-9a-f-]{36}$/);
  });
});
