// GatewayClient against a local node:http server answering the documented management API shapes.

import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { after, before, beforeEach, describe, it } from 'node:test';
import { parseFunctionSpec } from '@kubefn/platform';
import { GatewayClient, ndjsonLines, type FunctionInfo } from './client.js';

const token = 'test-token';
const digest = `sha256:${'0f'.repeat(32)}`;

interface Seen {
  method: string;
  url: string;
  authorization: string | undefined;
  contentType: string | undefined;
  body: Buffer;
}

let server: Server;
let base: string;
let seen: Seen[] = [];
const known = new Set(['hello']);
const bundles = new Set<string>();

function info(name: string): FunctionInfo {
  return {
    name,
    image: `bundle:${digest}`,
    namespace: 'kubefn',
    envVars: {},
    labels: {},
    annotations: {},
    replicas: 1,
    availableReplicas: 1,
    invocationCount: 3,
    createdAt: '2026-01-02T12:00:00Z',
    spec: parseFunctionSpec({ name }),
  };
}

function send(res: ServerResponse, status: number, body?: unknown): void {
  if (body === undefined) {
    res.writeHead(status).end();
    return;
  }
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

const notFound = (name: string) => ({ code: 'NOT_FOUND', message: `function "${name}" not found` });

async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const body = Buffer.concat(chunks);
  const url = new URL(req.url ?? '/', 'http://x');
  seen.push({ method: req.method ?? '', url: req.url ?? '', authorization: req.headers.authorization, contentType: req.headers['content-type'], body });

  if (url.pathname.startsWith('/function/')) {
    // The function itself: echo what arrived, streamed in two chunks.
    res.writeHead(url.pathname.endsWith('/fail') ? 503 : 200, { 'content-type': 'text/plain', 'x-echo': 'yes' });
    res.write(`${req.method} ${url.pathname}${url.search}\n`);
    setTimeout(() => res.end(`auth=${req.headers.authorization ?? 'none'} body=${body.toString()}`), 20);
    return;
  }
  if (url.pathname === '/system/info' && req.headers.authorization === undefined) {
    res.writeHead(500, { 'content-type': 'text/plain' }).end('boom');
    return;
  }
  if (req.headers.authorization !== `Bearer ${token}`) return send(res, 401, { code: 'UNAUTHORIZED', message: 'missing or invalid token' });

  const name = decodeURIComponent(url.pathname.split('/').pop() ?? '');
  const json = () => JSON.parse(body.toString() || 'null') as Record<string, unknown>;
  const route = `${req.method} ${url.pathname}`;
  if (route === 'GET /system/functions') return send(res, 200, [...known].map(info));
  if (route === 'GET /system/info') {
    return send(res, 200, { provider: { provider: 'kubefn', orchestration: 'process', version: { release: '0.1.0', sha: 'abc' } }, arch: 'x64' });
  }
  if (route === 'GET /system/logs') return logs(url, res);
  if (route.startsWith('GET /system/function/')) return known.has(name) ? send(res, 200, info(name)) : send(res, 404, notFound(name));
  if (route === 'PUT /system/functions') {
    const spec = json();
    return known.has(String(spec.name)) ? send(res, 200, spec) : send(res, 404, notFound(String(spec.name)));
  }
  if (route === 'POST /system/functions') {
    const spec = json();
    if (spec.name === 'invalid') {
      return send(res, 400, {
        code: 'INVALID_SPEC',
        message: 'invalid spec for function "invalid": scale.max: must be >= 1',
        hint: 'fix fn.yaml',
        fields: [{ field: 'scale.max', message: 'must be >= 1' }],
      });
    }
    known.add(String(spec.name));
    return send(res, 202, spec);
  }
  if (route === 'DELETE /system/functions') {
    const fnName = String(json().functionName);
    return known.delete(fnName) ? send(res, 200) : send(res, 404, notFound(fnName));
  }
  if (route.startsWith('POST /system/scale-function/')) return known.has(name) ? send(res, 202) : send(res, 404, notFound(name));
  if (route.startsWith('HEAD /system/bundles/')) return send(res, bundles.has(name) ? 200 : 404);
  if (route.startsWith('PUT /system/bundles/')) {
    bundles.add(name);
    return send(res, 201, { image: `bundle:${name}` });
  }
  send(res, 404, { code: 'NOT_FOUND', message: `no route ${req.method} ${url.pathname}` });
}

/** Three NDJSON lines, the second split across writes; with follow=true one more every 20ms until the client leaves. */
function logs(url: URL, res: ServerResponse): void {
  const line = (i: number) => JSON.stringify({ name: url.searchParams.get('name'), namespace: 'kubefn', instance: 'hello-1', timestamp: `2026-01-02T12:00:0${i}Z`, text: `line ${i}` });
  res.writeHead(200, { 'content-type': 'application/x-ndjson' });
  const second = line(2);
  res.write(`${line(1)}\n${second.slice(0, 10)}`);
  res.write(`${second.slice(10)}\n${line(3)}\n`);
  if (url.searchParams.get('follow') !== 'true') {
    res.end();
    return;
  }
  let i = 4;
  const timer = setInterval(() => res.write(`${line(i++ % 10)}\n`), 20);
  res.on('close', () => clearInterval(timer));
}

before(async () => {
  server = createServer((req, res) => void handle(req, res).catch((err: Error) => send(res, 500, { code: 'INTERNAL', message: err.message })));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});
after(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});
beforeEach(() => {
  seen = [];
});

const client = () => new GatewayClient({ gateway: `${base}/`, token });

describe('GatewayClient management calls', () => {
  it('lists and gets functions with the bearer token', async () => {
    const list = await client().listFunctions();
    assert.deepEqual(list.map((f) => f.name), ['hello']);
    const one = await client().getFunction('hello');
    assert.equal(one.availableReplicas, 1);
    assert.equal(one.spec.scale.max, 10);
    assert.ok(seen.every((s) => s.authorization === `Bearer ${token}`));
  });

  it('reads /system/info', async () => {
    const i = await client().info();
    assert.equal(i.provider.provider, 'kubefn');
  });

  it('updates with PUT and falls back to POST when the function is new', async () => {
    assert.deepEqual(await client().deployFunction(parseFunctionSpec({ name: 'hello' })), { created: false });
    assert.deepEqual(seen.map((s) => s.method), ['PUT']);
    seen = [];
    assert.deepEqual(await client().deployFunction(parseFunctionSpec({ name: 'fresh', image: `bundle:${digest}` })), { created: true });
    assert.deepEqual(seen.map((s) => `${s.method} ${s.url}`), ['PUT /system/functions', 'POST /system/functions']);
    assert.equal(seen[1]?.contentType, 'application/json');
    assert.equal((JSON.parse(seen[1]?.body.toString() ?? '') as { image: string }).image, `bundle:${digest}`);
  });

  it('deletes with {functionName} and scales with {serviceName, replicas}', async () => {
    await client().deployFunction(parseFunctionSpec({ name: 'temp' }));
    await client().scaleFunction('temp', 3);
    await client().deleteFunction('temp');
    const scale = seen.find((s) => s.url === '/system/scale-function/temp');
    assert.deepEqual(JSON.parse(scale?.body.toString() ?? ''), { serviceName: 'temp', replicas: 3 });
    const del = seen.find((s) => s.method === 'DELETE');
    assert.deepEqual(JSON.parse(del?.body.toString() ?? ''), { functionName: 'temp' });
  });

  it('checks for a bundle with HEAD and uploads raw bytes with PUT', async () => {
    assert.equal(await client().hasBundle(digest), false);
    const bytes = new TextEncoder().encode('export default () => "hi";\n');
    assert.deepEqual(await client().uploadBundle(digest, bytes), { image: `bundle:${digest}` });
    assert.equal(await client().hasBundle(digest), true);
    const put = seen.find((s) => s.method === 'PUT');
    assert.equal(put?.url, `/system/bundles/${digest}`);
    assert.equal(put?.contentType, 'application/octet-stream');
    assert.deepEqual(new Uint8Array(put?.body ?? []), bytes);
  });
});

describe('GatewayClient error mapping', () => {
  it('maps 404 bodies to NOT_FOUND with a hint to list functions', async () => {
    await assert.rejects(client().getFunction('nope'), (err: { code: string; status: number; message: string; hint?: string }) => {
      assert.equal(err.code, 'NOT_FOUND');
      assert.equal(err.status, 404);
      assert.equal(err.message, 'function "nope" not found');
      assert.match(err.hint ?? '', /fn list/);
      return true;
    });
    await assert.rejects(client().deleteFunction('nope'), { code: 'NOT_FOUND' });
    await assert.rejects(client().scaleFunction('nope', 1), { code: 'NOT_FOUND' });
  });

  it('keeps field errors from a 400', async () => {
    await assert.rejects(client().deployFunction(parseFunctionSpec({ name: 'invalid' })), (err: { code: string; hint?: string; fields?: unknown }) => {
      assert.equal(err.code, 'INVALID_SPEC');
      assert.equal(err.hint, 'fix fn.yaml');
      assert.deepEqual(err.fields, [{ field: 'scale.max', message: 'must be >= 1' }]);
      return true;
    });
  });

  it('turns 401 into UNAUTHORIZED telling the user to run fn up or pass --token', async () => {
    for (const c of [new GatewayClient({ gateway: base }), new GatewayClient({ gateway: base, token: 'wrong' })]) {
      await assert.rejects(c.listFunctions(), (err: { code: string; message: string; hint?: string }) => {
        assert.equal(err.code, 'UNAUTHORIZED');
        assert.match(err.message, /requires a token|rejected the token/);
        assert.match(err.hint ?? '', /fn up.*--token.*KUBEFN_TOKEN/);
        return true;
      });
    }
  });

  it('names the token file of KUBEFN_HOME in the hint of a 401', async () => {
    const c = new GatewayClient({ gateway: base, tokenFile: '/srv/kubefn-dev/token' });
    await assert.rejects(c.listFunctions(), (err: { hint?: string }) => {
      assert.match(err.hint ?? '', /writes the token to \/srv\/kubefn-dev\/token\)/);
      return true;
    });
  });

  it('keeps the text of a non-JSON error', async () => {
    await assert.rejects(new GatewayClient({ gateway: base }).info(), { code: 'INTERNAL', message: 'HTTP 500: boom' });
  });

  it('reports a refused connection as GATEWAY_UNREACHABLE with a hint', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(closed.address() as { port: number }).port}`;
    await new Promise((resolve) => closed.close(resolve));
    await assert.rejects(new GatewayClient({ gateway: url, token }).listFunctions(), (err: { code: string; message: string; hint?: string; exitCode?: number }) => {
      assert.equal(err.code, 'GATEWAY_UNREACHABLE');
      assert.equal(err.exitCode, 1);
      assert.equal(err.message, `cannot reach the kubefn gateway at ${url} (ECONNREFUSED): is \`fn up\` running?`);
      assert.match(err.hint ?? '', /fn up/);
      return true;
    });
  });

  it('passes an abort through unchanged', async () => {
    const controller = new AbortController();
    controller.abort();
    await assert.rejects(client().listFunctions(controller.signal), { name: 'AbortError' });
  });
});

describe('GatewayClient logs and invoke', () => {
  it('streams NDJSON log lines, rejoining lines split across chunks', async () => {
    const entries = [];
    for await (const e of client().logs('hello', { tail: 5, since: new Date('2026-01-02T11:00:00Z') })) entries.push(e);
    assert.deepEqual(entries.map((e) => e.text), ['line 1', 'line 2', 'line 3']);
    assert.equal(entries[0]?.instance, 'hello-1');
    const q = new URL(seen[0]?.url ?? '', 'http://x').searchParams;
    assert.equal(q.get('name'), 'hello');
    assert.equal(q.get('tail'), '5');
    assert.equal(q.get('since'), '2026-01-02T11:00:00.000Z');
    assert.equal(q.get('follow'), null);
  });

  it('follows until the signal aborts', async () => {
    const controller = new AbortController();
    const texts: string[] = [];
    await assert.rejects(
      (async () => {
        for await (const e of client().logs('hello', { follow: true }, controller.signal)) {
          texts.push(e.text);
          if (texts.length === 5) controller.abort();
        }
      })(),
      { name: 'AbortError' },
    );
    assert.equal(texts.length, 5);
    assert.equal(new URL(seen[0]?.url ?? '', 'http://x').searchParams.get('follow'), 'true');
  });

  it('invokes /function/<name><path>?<query> without sending the token, streaming the body', async () => {
    const res = await client().invoke('hello', { path: 'sub/path', query: [['a', '1'], ['b', 'x y']], body: 'hi' });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('x-echo'), 'yes');
    assert.equal(await res.text(), 'POST /function/hello/sub/path?a=1&b=x+y\nauth=none body=hi');
  });

  it('returns non-2xx responses for the caller to report', async () => {
    const res = await client().invoke('hello', { path: '/fail', method: 'DELETE' });
    assert.equal(res.status, 503);
    assert.match(await res.text(), /^DELETE \/function\/hello\/fail/);
  });
});

describe('ndjsonLines', () => {
  it('splits on newlines across chunk and multi-byte boundaries', async () => {
    const bytes = new TextEncoder().encode('{"a":"é"}\n\n{"b":2}');
    const chunks = [bytes.slice(0, 7), bytes.slice(7, 12), bytes.slice(12)];
    const lines = [];
    for await (const l of ndjsonLines((async function* () { yield* chunks; })())) lines.push(l);
    assert.deepEqual(lines, ['{"a":"é"}', '{"b":2}']);
  });
});
