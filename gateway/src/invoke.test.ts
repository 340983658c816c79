import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { EventEmitter, once } from 'node:events';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import {
  KubefnError,
  MutableEndpointSet,
  parseFunctionSpec,
  type Driver,
  type FunctionSpec,
  type FunctionStatus,
  type LogLine,
} from '@kubefn/platform';
import Fastify from 'fastify';
import { createGateway, type Gateway } from './app.js';

const execFileP = promisify(execFile);

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const json = (r: Response): Promise<any> => r.json();

/** A driver whose one replica is a plain HTTP server the test controls (the gateway's peer). */
class OneServerDriver implements Driver {
  readonly kind = 'test';
  readonly specs = new Map<string, FunctionSpec>();
  readonly sets = new Map<string, MutableEndpointSet>();
  constructor(private readonly url: string) {}
  async deploy(spec: FunctionSpec): Promise<FunctionStatus> {
    this.specs.set(spec.name, spec);
    this.endpoints(spec.name).set([{ id: `${spec.name}-1`, url: this.url, adminUrl: this.url }]);
    return this.get(spec.name);
  }
  async remove(name: string) {
    if (!this.specs.delete(name)) throw new KubefnError('NOT_FOUND', name);
    this.endpoints(name).set([]);
  }
  async list() {
    return Promise.all([...this.specs.keys()].map((n) => this.get(n)));
  }
  async get(name: string): Promise<FunctionStatus> {
    const spec = this.specs.get(name);
    if (!spec) throw new KubefnError('NOT_FOUND', `no function ${name}`);
    const t = new Date(0).toISOString();
    return { spec, replicas: 1, readyReplicas: 1, createdAt: t, updatedAt: t };
  }
  async scale() {}
  endpoints(name: string): MutableEndpointSet {
    let s = this.sets.get(name);
    if (!s) this.sets.set(name, (s = new MutableEndpointSet()));
    return s;
  }
  async *logs(): AsyncIterable<LogLine> {}
  async close() {}
}

describe('gateway invoke and management API', () => {
  let upstream: http.Server;
  let gateway: Gateway;
  let base: string;
  let driver: OneServerDriver;
  const token = 'secret-token';
  /** Emits 'held' with each request to /hold, which the replica never answers. */
  const holds = new EventEmitter();

  before(async () => {
    upstream = http.createServer((req, res) => {
      if (req.url === '/redirect') {
        res.writeHead(302, { location: '/elsewhere' }).end();
        return;
      }
      if (req.url === '/crash') {
        req.socket.destroy();
        return;
      }
      if (req.url === '/hold') {
        holds.emit('held', req);
        return;
      }
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        res.setHeader('content-type', 'application/json');
        // As kubefn's runtime does: the call id back on the answer.
        if (typeof req.headers['x-call-id'] === 'string') res.setHeader('x-call-id', req.headers['x-call-id']);
        res.end(JSON.stringify({ method: req.method, url: req.url, callId: req.headers['x-call-id'], body: Buffer.concat(chunks).toString() }));
      });
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    driver = new OneServerDriver(`http://127.0.0.1:${(upstream.address() as AddressInfo).port}`);
    await driver.deploy(parseFunctionSpec({ name: 'echo', image: 'x' }));
    gateway = createGateway({ driver, token, maxBodyBytes: 1024 });
    base = await gateway.app.listen({ port: 0, host: '127.0.0.1' });
  });
  after(async () => {
    await gateway.close();
    upstream.close();
  });

  it('passes method, sub-path, query and body through and stamps call headers', async () => {
    const res = await fetch(`${base}/function/echo/a/b%20c?x=1&y=2`, { method: 'PATCH', body: 'hi', headers: { 'x-call-id': 'call-1' } });
    assert.equal(res.status, 200);
    assert.deepEqual(await json(res), { method: 'PATCH', url: '/a/b%20c?x=1&y=2', callId: 'call-1', body: 'hi' });
    assert.equal(res.headers.get('x-call-id'), 'call-1', 'one call id, not the replica\'s and the gateway\'s');
    assert.match(res.headers.get('x-start-time') ?? '', /^\d{19}$/);
    assert.match(res.headers.get('x-duration-seconds') ?? '', /^\d+\.\d+$/);
    const root = await json((await fetch(`${base}/function/echo?q=1`)));
    assert.equal(root.url, '/?q=1');
  });

  it('logs one line per call, whether the fast path or fastify\'s route served it', async () => {
    const lines: string[] = [];
    const logger = Fastify({ logger: { level: 'info', stream: { write: (line: string) => void lines.push(line) } } }).log;
    const logged = createGateway({ driver, token, logger, requestLog: true });
    const url = await logged.app.listen({ port: 0, host: '127.0.0.1' });
    try {
      // A plain name takes the fast path; one with a namespace, fastify's route.
      for (const p of ['/function/echo', '/function/echo.openfaas-fn', '/function/nope']) await (await fetch(url + p)).text();
      const requests = lines.map((l) => JSON.parse(l) as { msg: string; url?: string; status?: number }).filter((l) => l.msg === 'request' && l.url?.startsWith('/function/'));
      assert.deepEqual(requests.map((r) => [r.url, r.status]), [['/function/echo', 200], ['/function/echo.openfaas-fn', 200], ['/function/nope', 404]]);
    } finally {
      await logged.close();
    }
  });

  it('cuts the replica\'s call when the caller leaves before the answer, without calling it a replica failure', async () => {
    const lines: string[] = [];
    const logger = Fastify({ logger: { level: 'info', stream: { write: (line: string) => void lines.push(line) } } }).log;
    const g = createGateway({ driver, token, logger });
    const url = await g.app.listen({ port: 0, host: '127.0.0.1' });
    try {
      const held = once(holds, 'held') as Promise<[http.IncomingMessage]>;
      const caller = new AbortController();
      const call = fetch(`${url}/function/echo/hold`, { signal: caller.signal }).catch((err: unknown) => err);
      const [atReplica] = await held;
      const cut = once(atReplica.socket, 'close');
      assert.equal(g.stats.inFlight('echo'), 1);
      caller.abort();
      assert.equal(((await call) as Error).name, 'AbortError');
      await cut; // the gateway closed its connection to the replica
      assert.equal(g.stats.inFlight('echo'), 0);
      const failures = lines.filter((l) => /REPLICA_FAILED|failed before answering/.test(l));
      assert.deepEqual(failures, []);
    } finally {
      await g.close();
    }
  });

  it('does not follow redirects', async () => {
    const res = await fetch(`${base}/function/echo/redirect`, { redirect: 'manual' });
    assert.equal(res.status, 302);
    assert.equal(res.headers.get('location'), '/elsewhere');
  });

  it('answers 404 for an unknown function and 400 for an invalid name', async () => {
    const missing = await fetch(`${base}/function/nope`);
    assert.equal(missing.status, 404);
    assert.equal((await json(missing)).code, 'NOT_FOUND');
    assert.equal((await fetch(`${base}/function/Bad_Name`)).status, 400);
  });

  it('answers 502 when the replica drops the connection', async () => {
    const res = await fetch(`${base}/function/echo/crash`, { method: 'POST', body: 'x' });
    assert.equal(res.status, 502);
    const body = await json(res);
    assert.equal(body.code, 'REPLICA_FAILED');
    assert.ok(body.callId);
  });

  it('answers `Expect: 100-continue` itself and does not forward it (curl -T sends it)', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'kubefn-expect-'));
    try {
      const file = path.join(dir, 'upload.txt');
      await writeFile(file, 'u'.repeat(1000));
      const { stdout } = await execFileP('curl', ['-sS', '-T', file, '-H', 'Expect: 100-continue', '-w', '\n%{http_code}', `${base}/function/echo/upload`]);
      const [body, status] = stdout.split('\n');
      assert.equal(status, '200', stdout);
      assert.deepEqual(JSON.parse(body ?? ''), { method: 'PUT', url: '/upload', callId: JSON.parse(body ?? '').callId, body: 'u'.repeat(1000) });
      await writeFile(file, 'o'.repeat(2000));
      const over = await execFileP('curl', ['-sS', '-T', file, '-H', 'Expect: 100-continue', '-w', '\n%{http_code}', `${base}/function/echo/upload`]).catch((err: { stdout: string }) => err);
      assert.match(over.stdout, /\n413$/, 'over the body limit: refused by the gateway');
      // 20 MiB with the default body limit (32 MiB): what the replica got is what was sent.
      const roomy = createGateway({ driver: gateway.context.driver, token });
      try {
        const roomyBase = await roomy.app.listen({ port: 0, host: '127.0.0.1' });
        await writeFile(file, Buffer.alloc(20 * 1024 * 1024, 'z'));
        const big = await execFileP('curl', ['-sS', '-T', file, '-w', '\n%{http_code}', `${roomyBase}/function/echo/big`], { maxBuffer: 64 * 1024 * 1024 });
        const [bigBody, bigStatus] = big.stdout.split('\n');
        assert.equal(bigStatus, '200');
        assert.equal((JSON.parse(bigBody ?? '') as { body: string }).body.length, 20 * 1024 * 1024);
      } finally {
        await roomy.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses a body over the limit with 413', async () => {
    const res = await fetch(`${base}/function/echo`, { method: 'POST', body: 'x'.repeat(2048) });
    assert.equal(res.status, 413);
  });

  it('refuses a chunked body over the limit with 413 every time, not sometimes a 502', async () => {
    for (let i = 0; i < 20; i++) {
      const chunks = [Buffer.alloc(700, 'a'), Buffer.alloc(700, 'b')];
      const body = new ReadableStream({
        pull(controller) {
          const next = chunks.shift();
          if (next) controller.enqueue(next);
          else controller.close();
        },
      });
      const res = await fetch(`${base}/function/echo`, { method: 'POST', body, duplex: 'half' } as RequestInit);
      assert.equal(res.status, 413, `attempt ${i}`);
      assert.equal((await json(res)).code, 'BODY_TOO_LARGE');
    }
    const small = await fetch(`${base}/function/echo`, { method: 'POST', body: new Blob(['ok']).stream(), duplex: 'half' } as RequestInit);
    assert.equal((await json(small)).body, 'ok', 'a chunked body under the limit passes whole');
  });

  it('protects /system with the token (Bearer or Basic) but not /healthz', async () => {
    const none = await fetch(`${base}/system/functions`);
    assert.equal(none.status, 401);
    assert.match(none.headers.get('www-authenticate') ?? '', /Basic/);
    assert.equal((await fetch(`${base}/system/functions`, { headers: { authorization: 'Bearer wrong' } })).status, 401);
    const bearer = await fetch(`${base}/system/functions`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(bearer.status, 200);
    const list = await json(bearer);
    assert.equal(list[0].name, 'echo');
    assert.equal(list[0].labels.faas_function, 'echo');
    const basic = Buffer.from(`admin:${token}`).toString('base64');
    assert.equal((await fetch(`${base}/system/info`, { headers: { authorization: `Basic ${basic}` } })).status, 200);
    assert.equal((await fetch(`${base}/healthz`)).status, 200);
  });

  it('rejects a bad spec naming the field', async () => {
    const res = await fetch(`${base}/system/functions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'ok', image: 'x', scale: { min: -1 } }),
    });
    assert.equal(res.status, 400);
    const body = await json(res);
    assert.equal(body.code, 'INVALID_SPEC');
    assert.equal(body.fields[0].field, 'scale.min');
  });

  it('refuses a trigger it does not serve with 501, naming the field', async () => {
    const res = await fetch(`${base}/system/functions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'evented', image: 'x', triggers: [{ type: 'http' }, { type: 'nats', subject: 'orders' }] }),
    });
    assert.equal(res.status, 501);
    const body = await json(res);
    assert.equal(body.code, 'NOT_SUPPORTED');
    assert.equal(body.fields[0].field, 'triggers.1.type');
  });

  it('accepts an OpenFaaS FunctionDeployment, answers 409 on a second create and 404 on updating an unknown one', async () => {
    const post = (method: string, body: unknown) =>
      fetch(`${base}/system/functions`, {
        method,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    const fd = { service: 'of-fn', image: 'img', envVars: { A: '1' }, labels: { 'com.openfaas.scale.max': '3' }, limits: { memory: '128Mi' } };
    assert.equal((await post('POST', fd)).status, 202);
    assert.equal((await post('POST', fd)).status, 409);
    assert.equal((await post('PUT', { ...fd, service: 'unknown-fn' })).status, 404);
    const one = await json((await fetch(`${base}/system/function/of-fn`, { headers: { authorization: `Bearer ${token}` } })));
    assert.deepEqual(one.envVars, { A: '1' });
    assert.equal(one.spec.scale.max, 3);
    assert.equal(one.limits.memory, '128Mi');
  });
});

describe('retries of calls that never reached a replica', () => {
  it('a call with a body, sized or chunked, goes to another replica when one refuses the connection', async () => {
    const live = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => res.end(Buffer.concat(chunks)));
    });
    await new Promise<void>((r) => live.listen(0, '127.0.0.1', r));
    // A port that was just free: nothing listens there, so connecting is refused.
    const dead = http.createServer();
    await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r));
    const deadUrl = `http://127.0.0.1:${(dead.address() as AddressInfo).port}`;
    await new Promise<void>((r) => dead.close(() => r()));

    const driver = new OneServerDriver(`http://127.0.0.1:${(live.address() as AddressInfo).port}`);
    await driver.deploy(parseFunctionSpec({ name: 'upload', image: 'x' }));
    const [liveEndpoint] = driver.endpoints('upload').current();
    driver.endpoints('upload').set([{ id: 'upload-0', url: deadUrl, adminUrl: deadUrl }, liveEndpoint!]);
    const gateway = createGateway({ driver, token: 'secret-token-0123456789', maxBodyBytes: 1 << 20 });
    const base = await gateway.app.listen({ port: 0, host: '127.0.0.1' });
    try {
      const answers: string[] = [];
      for (let i = 0; i < 6; i++) {
        const sized = await fetch(`${base}/function/upload`, { method: 'POST', body: `sized-${i}` });
        answers.push(`${sized.status} ${await sized.text()}`);
        const stream = new ReadableStream({
          start(c) {
            c.enqueue(new TextEncoder().encode(`chunked-${i}`));
            c.close();
          },
        });
        const chunked = await fetch(`${base}/function/upload`, { method: 'PUT', body: stream, duplex: 'half' } as RequestInit);
        answers.push(`${chunked.status} ${await chunked.text()}`);
      }
      assert.deepEqual(answers, Array.from({ length: 6 }, (_, i) => [`200 sized-${i}`, `200 chunked-${i}`]).flat());
    } finally {
      await gateway.close();
      live.close();
    }
  });
});
