import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { afterEach, describe, it, mock } from 'node:test';
import { ReplicaClient, ReplicaHopError, type ReplicaCall, type ReplicaClientOptions, type ReplicaHandler } from './replica-client.js';

const OK = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok';
const CHUNKED = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n';

const cleanups: (() => Promise<void>)[] = [];
// In order: servers first (their sockets destroyed), then the clients, whose close() waits for busy connections.
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resolves once `cond` holds (timed with performance.now, as one case mocks Date). */
async function until(cond: () => boolean, what = 'the condition'): Promise<void> {
  const deadline = performance.now() + 3000;
  while (!cond()) {
    if (performance.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await delay(2);
  }
}

/** Listens on 127.0.0.1 and counts, as the server sees them, the connections accepted and those still open. */
async function serve(server: net.Server) {
  const sockets = new Set<net.Socket>();
  const s = { origin: '', port: 0, accepted: 0, open: 0 };
  server.on('connection', (socket: net.Socket) => {
    s.accepted++;
    s.open++;
    sockets.add(socket);
    socket.on('error', () => {}).on('close', () => (s.open--, sockets.delete(socket)));
  });
  await once(server.listen(0, '127.0.0.1'), 'listening');
  s.port = (server.address() as AddressInfo).port;
  s.origin = `http://127.0.0.1:${s.port}`;
  cleanups.push(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((r) => server.close(r));
  });
  return s;
}

const httpServer = (listener: http.RequestListener) => serve(http.createServer(listener));

/** A server that writes hand-made bytes: `answer` is called for each request head, `n` counting them over all connections. */
async function rawServer(answer: (socket: net.Socket, n: number, head: string) => void) {
  const heads: string[] = [];
  const server = net.createServer((socket) => {
    let buf = '';
    socket.on('data', (d) => {
      buf += d.toString('latin1');
      for (let end = buf.indexOf('\r\n\r\n'); end >= 0; end = buf.indexOf('\r\n\r\n')) {
        heads.push(buf.slice(0, end + 4));
        buf = buf.slice(end + 4);
        answer(socket, heads.length - 1, heads.at(-1)!);
      }
    });
  });
  return Object.assign(await serve(server), { heads });
}

function client(origin: string, options?: ReplicaClientOptions): ReplicaClient {
  const c = new ReplicaClient(origin, options);
  cleanups.push(() => c.close());
  return c;
}

interface Hooks {
  onConnect?: (abort: (err: Error) => void) => void;
  onHeaders?: (rec: Recorder) => boolean;
  onData?: (chunk: Buffer, rec: Recorder) => boolean;
}

/** A handler that records what it hears; `settled` resolves at onComplete or onError. */
class Recorder implements ReplicaHandler {
  readonly events: string[] = [];
  readonly chunks: Buffer[] = [];
  status = 0;
  headers: string[] = [];
  error: Error | undefined;
  abort: (err: Error) => void = () => assert.fail('onConnect was not called');
  resume: () => void = () => assert.fail('onHeaders was not called');
  #settle!: () => void;
  readonly settled = new Promise<void>((r) => (this.#settle = r));

  constructor(private readonly hooks: Hooks = {}) {}
  onConnect(abort: (err: Error) => void): void {
    this.#event('connect');
    this.abort = abort;
    this.hooks.onConnect?.(abort);
  }
  onHeaders(status: number, headers: string[], resume: () => void): boolean {
    this.#event('headers');
    [this.status, this.headers, this.resume] = [status, headers, resume];
    return this.hooks.onHeaders?.(this) ?? true;
  }
  onData(chunk: Buffer): boolean {
    this.#event('data');
    this.chunks.push(chunk);
    return this.hooks.onData?.(chunk, this) ?? true;
  }
  onComplete(): void {
    this.#event('complete');
  }
  onError(err: Error): void {
    this.error = err;
    this.#event('error');
  }
  #event(e: string): void {
    this.events.push(e);
    if (e === 'complete' || e === 'error') this.#settle();
  }
  get body(): string {
    return Buffer.concat(this.chunks).toString('latin1');
  }
  header(name: string): string | undefined {
    const i = this.headers.findIndex((h, i) => i % 2 === 0 && h === name);
    return i < 0 ? undefined : this.headers[i + 1];
  }
  /** The events with each run of onData as one (how many pieces a body comes in is up to TCP). */
  get steps(): string[] {
    return this.events.filter((e, i) => e !== 'data' || this.events[i - 1] !== 'data');
  }
}

/** A call; its timeoutMs, unless given, outlasts until()'s 3 s, so that no idle connection is closed by its timeout mid-test. */
function call(c: ReplicaClient, over: Partial<ReplicaCall> = {}, hooks?: Hooks): Recorder {
  const rec = new Recorder(hooks);
  c.dispatch({ method: 'GET', path: '/', headers: [], timeoutMs: 10_000, ...over }, rec);
  return rec;
}

async function ok(rec: Recorder): Promise<Recorder> {
  await rec.settled;
  assert.equal(rec.error, undefined, rec.error?.message);
  assert.equal(rec.events.at(-1), 'complete');
  return rec;
}

async function failed(rec: Recorder, code: string): Promise<void> {
  await rec.settled;
  assert.equal(rec.events.filter((e) => e === 'error').length, 1);
  assert.ok(!rec.events.includes('complete'), rec.events.join());
  if (code.startsWith('REPLICA_')) assert.ok(rec.error instanceof ReplicaHopError, String(rec.error));
  assert.equal((rec.error as NodeJS.ErrnoException).code, code, rec.error?.message);
}

describe('ReplicaClient', () => {
  it('answers with the status, the headers as a flat lower-case list and the body; a second call reuses the connection', async () => {
    const srv = await httpServer((req, res) => res.setHeader('X-Answer', req.url!).end(`hello ${req.url}`));
    const c = client(srv.origin);
    const a = await ok(call(c, { path: '/one' }));
    assert.deepEqual(a.steps, ['connect', 'headers', 'data', 'complete']);
    assert.deepEqual([a.status, a.body, a.header('x-answer'), a.header('content-length')], [200, 'hello /one', '/one', '10']);
    assert.equal(a.headers.length % 2, 0);
    assert.ok(a.headers.every((h, i) => i % 2 === 1 || h === h.toLowerCase()), a.headers.join());
    assert.equal(c.connections, 1);
    assert.equal((await ok(call(c, { path: '/two' }))).body, 'hello /two');
    assert.equal(c.connections, 1);
    assert.equal(srv.accepted, 1);
  });

  it('writes the request head: method, path with query, host, the given headers, and content-length: 0 for POST, PUT and PATCH', async () => {
    const srv = await rawServer((s) => s.write(OK));
    const c = client(srv.origin);
    await ok(call(c, { path: '/a/b?x=1&y=%20', headers: ['x-one', '1', 'accept', 'text/plain'] }));
    for (const method of ['POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']) await ok(call(c, { method, path: '/m' }));
    const host = `host: 127.0.0.1:${srv.port}\r\n`;
    assert.deepEqual(srv.heads, [
      `GET /a/b?x=1&y=%20 HTTP/1.1\r\n${host}x-one: 1\r\naccept: text/plain\r\n\r\n`,
      `POST /m HTTP/1.1\r\n${host}content-length: 0\r\n\r\n`,
      `PUT /m HTTP/1.1\r\n${host}content-length: 0\r\n\r\n`,
      `PATCH /m HTTP/1.1\r\n${host}content-length: 0\r\n\r\n`,
      `DELETE /m HTTP/1.1\r\n${host}\r\n`,
      `OPTIONS /m HTTP/1.1\r\n${host}\r\n`,
    ]);
    assert.equal(srv.accepted, 1);
  });

  it('refuses a header value with CR, LF or NUL, a bad header name, method or path, and sends nothing', async () => {
    const srv = await rawServer((s) => s.write(OK));
    const c = client(srv.origin);
    const bad: Partial<ReplicaCall>[] = [
      { headers: ['x-a', 'v\r\nx-smuggled: 1'] }, { headers: ['x-a', 'v\nx-smuggled: 1'] }, { headers: ['x-a', 'v\rx'] }, { headers: ['x-a', 'v\0'] },
      { headers: ['x a', 'v'] }, { headers: ['x-a:', 'v'] },
      { method: 'GET / HTTP/1.1\r\nx: 1\r\n\r\nGET' }, { method: 'get' }, { method: '' },
      { path: '/a b' }, { path: '/a\r\nx-smuggled: 1' }, { path: '' },
    ];
    const refuse = () => {
      for (const over of bad) {
        const rec = call(c, over);
        assert.deepEqual(rec.events, ['error'], JSON.stringify(over));
        assert.equal(rec.error instanceof ReplicaHopError && rec.error.code, 'REPLICA_PROTOCOL');
      }
    };
    refuse();
    assert.equal(c.connections, 0);
    await ok(call(c, { path: '/fine' }));
    refuse(); // with an open, idle connection too
    await ok(call(c, { path: '/fine-again' }));
    assert.deepEqual(srv.heads.map((h) => h.split('\r\n')[0]), ['GET /fine HTTP/1.1', 'GET /fine-again HTTP/1.1']);
    assert.equal(srv.accepted, 1);
  });

  it('takes a chunked answer written in several pieces, its bytes intact, and reuses the connection', async () => {
    const pieces = [Buffer.from('first,'), Buffer.from(Array.from({ length: 256 }, (_, i) => i)), Buffer.from('\r\n0\r\n\r\n'), Buffer.from('last')];
    let seen = () => {};
    const srv = await httpServer(async (req, res) => {
      if (req.url === '/again') return void res.end('again');
      for (const piece of pieces) {
        const got = new Promise<void>((r) => (seen = r));
        res.write(piece);
        await got; // the next piece only once the client has this one
      }
      res.end();
    });
    const c = client(srv.origin);
    const rec = await ok(call(c, { path: '/pieces' }, { onData: () => (seen(), true) }));
    assert.deepEqual([rec.header('transfer-encoding'), rec.header('content-length')], ['chunked', undefined]);
    assert.ok(rec.chunks.length >= pieces.length, `${rec.chunks.length} pieces`);
    assert.deepEqual(Buffer.concat(rec.chunks), Buffer.concat(pieces));
    assert.equal((await ok(call(c, { path: '/again' }))).body, 'again');
    assert.equal(srv.accepted, 1);
  });

  it('takes a chunked answer whose size lines, data and CRLFs come in separate writes, with extensions and trailers', async () => {
    const fragments = [
      CHUNKED.slice(0, 20), CHUNKED.slice(20), '5', ';name="v"; x=1\r', '\nhel', 'lo', '\r', '\n',
      '1', 'A ;ext\r\n0123456789', 'abcdefghijklmnop\r\n', '0', '\r\nx-trailer: 1\r', '\nx-other: 2\r\n', '\r', '\n',
    ];
    const srv = await rawServer(async (s, n) => {
      if (n > 0) return void s.write(OK);
      for (const f of fragments) {
        s.write(f, 'latin1');
        // A pause so that each fragment tends to reach the client as a read of its own; the
        // result must be the same when TCP joins them, so nothing below depends on it.
        await delay(3);
      }
    });
    const c = client(srv.origin);
    const rec = await ok(call(c));
    assert.equal(rec.body, 'hello0123456789abcdefghijklmnop');
    assert.equal(rec.header('x-trailer'), undefined, 'trailers are not headers');
    // The trailers' blank line was taken in full: the connection carries the next answer.
    assert.equal((await ok(call(c))).body, 'ok');
    assert.equal(srv.accepted, 1);
  });

  it('takes an answer without framing until the replica closes, and does not reuse that connection', async () => {
    let more = () => {};
    const srv = await rawServer((s, n) => {
      if (n > 0) return void s.write(OK);
      s.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nfirst part, ');
      more = () => s.end('second part');
    });
    const c = client(srv.origin);
    const rec = await ok(call(c, {}, { onData: () => (more(), true) })); // the rest only once the first part is in
    assert.equal(rec.body, 'first part, second part');
    await until(() => c.connections === 0, 'the connection to go');
    assert.equal((await ok(call(c))).body, 'ok');
    assert.equal(srv.accepted, 2);
  });

  it('completes HEAD, 204 and 304 answers without a body despite a Content-Length, and carries on', async () => {
    const answers = new Map([
      ['HEAD /', 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n'],
      ['GET /204', 'HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n'],
      ['GET /304', 'HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n'],
    ]);
    const srv = await rawServer((s, _n, head) => s.write(answers.get(head.slice(0, head.indexOf(' HTTP/'))) ?? OK));
    const c = client(srv.origin);
    for (const [over, status] of [[{ method: 'HEAD' }, 200], [{ path: '/204' }, 204], [{ path: '/304' }, 304]] as const) {
      const rec = await ok(call(c, { ...over, timeoutMs: 500 }));
      assert.deepEqual(rec.events, ['connect', 'headers', 'complete']);
      assert.deepEqual([rec.status, rec.header('content-length')], [status, '5']);
    }
    assert.equal((await ok(call(c))).body, 'ok');
    assert.equal(srv.accepted, 1);
  });

  it('skips 100 Continue and 103 Early Hints before the answer', async () => {
    const srv = await rawServer((s) => {
      s.write('HTTP/1.1 100 Continue\r\n\r\n');
      s.write(`HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n${OK}`);
    });
    const rec = await ok(call(client(srv.origin)));
    assert.deepEqual(rec.steps, ['connect', 'headers', 'data', 'complete']);
    assert.deepEqual([rec.status, rec.header('link'), rec.body], [200, undefined, 'ok']);
  });

  describe('refuses a hostile answer with REPLICA_PROTOCOL and closes the connection', () => {
    const cases: { what: string; answer: string; afterHead?: boolean; maxHeadBytes?: number }[] = [
      { what: 'a status line of another protocol', answer: 'HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n' },
      { what: 'a four-digit status', answer: 'HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n' },
      { what: 'no status line', answer: 'Content-Length: 0\r\n\r\n' },
      { what: 'an obs-fold header line', answer: 'HTTP/1.1 200 OK\r\nX-A: a\r\n folded\r\nContent-Length: 0\r\n\r\n' },
      { what: 'a header line without a colon', answer: 'HTTP/1.1 200 OK\r\nX-A\r\nContent-Length: 0\r\n\r\n' },
      { what: 'a space before a colon', answer: 'HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n' },
      { what: 'a bare LF in the head', answer: 'HTTP/1.1 200 OK\r\nX-A: a\nContent-Length: 0\r\n\r\n' },
      { what: 'Content-Length and Transfer-Encoding', answer: 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n' },
      { what: 'two different Content-Lengths', answer: 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd' },
      { what: 'a negative Content-Length', answer: 'HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n' },
      { what: 'a Transfer-Encoding that is not chunked', answer: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc' },
      { what: 'chunked not the last coding', answer: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n' },
      { what: 'a 101 not asked for', answer: 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n' },
      { what: 'a head over maxHeadBytes', maxHeadBytes: 256, answer: `HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(400)}\r\nContent-Length: 0\r\n\r\n` },
      { what: 'an unfinished head already over maxHeadBytes', maxHeadBytes: 256, answer: `HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(400)}` },
      { what: 'a chunk size that is not hex', afterHead: true, answer: `${CHUNKED}zz\r\nabc\r\n0\r\n\r\n` },
      { what: 'a negative chunk size', afterHead: true, answer: `${CHUNKED}-1\r\nabc\r\n0\r\n\r\n` },
      { what: 'an empty chunk-size line', afterHead: true, answer: `${CHUNKED}\r\n0\r\n\r\n` },
      { what: 'a chunk-size line too long', afterHead: true, answer: `${CHUNKED}1;${'x'.repeat(5000)}` },
      { what: 'chunk data not followed by CRLF', afterHead: true, answer: `${CHUNKED}3\r\nabcd\r\n0\r\n\r\n` },
      { what: 'trailers over maxHeadBytes', afterHead: true, maxHeadBytes: 256, answer: `${CHUNKED}0\r\nx-t: ${'a'.repeat(400)}` },
    ];
    for (const { what, answer, afterHead, maxHeadBytes } of cases) {
      it(what, async () => {
        const srv = await rawServer((s) => s.write(answer, 'latin1'));
        const c = client(srv.origin, maxHeadBytes ? { maxHeadBytes } : {});
        const rec = call(c);
        await failed(rec, 'REPLICA_PROTOCOL');
        assert.deepEqual(rec.events.filter((e) => e !== 'data'), afterHead ? ['connect', 'headers', 'error'] : ['connect', 'error']);
        await until(() => c.connections === 0 && srv.open === 0, 'the connection to close');
      });
    }
  });

  it('does not reuse a connection that sent bytes after a complete answer', async () => {
    const answers = [
      (s: net.Socket) => s.write(OK + OK.replace('ok', 'no')), // in the same write
      (s: net.Socket) => s.write(`${CHUNKED}2\r\nok\r\n0\r\n\r\nHTTP/1.1 200`),
      (s: net.Socket) => (s.write(OK), setImmediate(() => s.write(OK.replace('ok', 'no')))), // later, while idle
    ];
    const srv = await rawServer((s, n) => (n % 2 === 0 ? answers[n / 2]!(s) : s.write(OK)));
    const c = client(srv.origin);
    for (let i = 0; i < answers.length; i++) {
      assert.equal((await ok(call(c))).body, 'ok');
      await until(() => c.connections === 0, `connection ${i} to close`);
      assert.equal((await ok(call(c))).body, 'ok');
      assert.equal(srv.accepted, i + 2); // each first call takes the connection the last one left idle
    }
  });

  it('pauses the body while onData says so, without a silence timeout, until resume', async () => {
    let written = false;
    const srv = await rawServer((s) => s.write(`${CHUNKED}3\r\nabc\r\n3\r\ndef\r\n3\r\nghi\r\n0\r\n\r\n`, () => (written = true)));
    const c = client(srv.origin);
    const rec = call(c, { timeoutMs: 100 }, { onData: () => false });
    await until(() => rec.chunks.length === 1 && written);
    // Nothing can be awaited for nothing to happen: wait past timeoutMs (100) for a stray piece or a timeout.
    await delay(250);
    assert.deepEqual(rec.events, ['connect', 'headers', 'data']);
    for (const n of [2, 3]) {
      rec.resume();
      await until(() => rec.chunks.length === n);
      await delay(5); // likewise, for a second piece
      assert.equal(rec.chunks.length, n, 'one piece per resume');
      assert.ok(!rec.events.includes('complete'));
    }
    rec.resume();
    assert.equal((await ok(rec)).body, 'abcdefghi');
    rec.resume(); // after the call: nothing happens
    assert.equal((await ok(call(c))).body, 'abcdefghi');
    assert.equal(srv.accepted, 1);
  });

  it('pauses a large body at the socket and delivers every byte after resuming', async () => {
    const big = Buffer.alloc(4 * 1024 * 1024, 'replica');
    const srv = await httpServer((_req, res) => res.end(big));
    const c = client(srv.origin);
    let hold = true;
    const rec = call(c, {}, { onData: (_chunk, r) => (hold || setImmediate(r.resume), false) });
    await until(() => rec.chunks.length === 1);
    await delay(50); // as above: time for stray pieces to show up
    assert.equal(rec.chunks.length, 1);
    hold = false;
    rec.resume();
    await ok(rec);
    assert.ok(rec.chunks.length > 1, `${rec.chunks.length} pieces, each paused`);
    assert.ok(Buffer.concat(rec.chunks).equals(big));
    assert.equal(c.connections, 1);
  });

  it('closes a connection after Connection: close, or when the replica closes it idle, and opens another for the next call', async () => {
    const close = 'HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 2\r\n\r\nok';
    // Connection: close while the replica keeps the connection open (the client closes it); then a replica that closes after answering.
    const srv = await rawServer((s, n) => (n < 2 ? s.write(close) : s.end(OK)));
    const c = client(srv.origin);
    for (let n = 0; n < 4; n++) {
      await ok(call(c));
      await until(() => c.connections === 0 && srv.open === 0, 'the connection to close');
      assert.equal(srv.accepted, n + 1);
    }
  });

  it("keeps a connection a second less than the replica's Keep-Alive timeout", async () => {
    const srv = await rawServer((s, _n, head) => s.write(`HTTP/1.1 200 OK\r\nKeep-Alive: timeout=${head.includes('/one') ? 1 : 3}\r\nContent-Length: 2\r\n\r\nok`));
    const c = client(srv.origin);
    // timeout=1: kept no time at all.
    await ok(call(c, { path: '/one' }));
    await until(() => c.connections === 0 && srv.open === 0, 'the connection to close');
    // timeout=3: kept 2 s. Date alone is mocked (sockets and timers run for real), so no waiting.
    mock.timers.enable({ apis: ['Date'], now: Date.now() });
    try {
      await ok(call(c, { path: '/three' }));
      mock.timers.tick(1999);
      await ok(call(c, { path: '/three' }));
      assert.equal(srv.accepted, 2, 'reused within 2 s');
      mock.timers.tick(2000);
      await ok(call(c, { path: '/three' }));
      assert.equal(srv.accepted, 3, 'not reused after 2 s idle');
    } finally {
      mock.timers.reset();
    }
  });

  it('gives ECONNREFUSED when nobody listens', async () => {
    const server = net.createServer().listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as AddressInfo).port;
    await new Promise((r) => server.close(r));
    const c = client(`http://127.0.0.1:${port}`);
    const rec = call(c);
    await failed(rec, 'ECONNREFUSED');
    assert.deepEqual(rec.events, ['connect', 'error']);
    await until(() => c.connections === 0);
  });

  describe('gives REPLICA_CLOSED when the replica closes before the answer is through', () => {
    const cases = [
      { what: 'without answering', answer: '', steps: ['connect', 'error'] },
      { what: 'in the middle of the head', answer: 'HTTP/1.1 200 OK\r\nContent-', steps: ['connect', 'error'] },
      { what: 'in the middle of a Content-Length body', answer: 'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc', steps: ['connect', 'headers', 'data', 'error'] },
      { what: 'in the middle of a chunked body', answer: `${CHUNKED}5\r\nab`, steps: ['connect', 'headers', 'data', 'error'] },
    ];
    for (const { what, answer, steps } of cases) {
      it(what, async () => {
        const srv = await rawServer((s) => s.end(answer));
        const c = client(srv.origin);
        const rec = call(c);
        await failed(rec, 'REPLICA_CLOSED');
        assert.deepEqual(rec.steps, steps);
        assert.equal(c.connections, 0);
      });
    }
  });

  it('gives REPLICA_TIMEOUT when the replica is silent for timeoutMs, before the head or within the body', async () => {
    const srv = await rawServer((s, n) => n === 1 && s.write('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc'));
    const c = client(srv.origin);
    for (const steps of [['connect', 'error'], ['connect', 'headers', 'data', 'error']]) {
      const start = performance.now();
      const rec = call(c, { timeoutMs: 200 });
      await failed(rec, 'REPLICA_TIMEOUT');
      const took = performance.now() - start;
      assert.ok(took >= 190 && took < 1500, `${took} ms`);
      assert.deepEqual(rec.steps, steps);
      await until(() => c.connections === 0 && srv.open === 0, 'the connection to close');
    }
  });

  it('ends the call with the error given to abort, once, and closes the connection; aborted within onConnect, it sends nothing', async () => {
    const srv = await rawServer((s, _n, head) => head.startsWith('GET /answered') && s.write(OK));
    const c = client(srv.origin);
    const rec = call(c);
    await until(() => srv.heads.length === 1, 'the request');
    const err = new Error('the caller left');
    rec.abort(err);
    assert.deepEqual([rec.events, rec.error], [['connect', 'error'], err]);
    rec.abort(new Error('again'));
    await until(() => c.connections === 0 && srv.open === 0, 'the connection to close');
    assert.deepEqual(rec.events, ['connect', 'error']);

    await ok(call(c, { path: '/answered' })); // an idle connection to take
    const early = call(c, { path: '/aborted' }, { onConnect: (abort) => abort(err) });
    assert.deepEqual([early.events, early.error], [['connect', 'error'], err]);
    await until(() => c.connections === 0 && srv.open === 0, 'the connection to close');
    assert.deepEqual(srv.heads.map((h) => h.split(' ')[1]), ['/', '/answered']);
  });

  it('ends the call with the error given to abort from onHeaders, also for an answer without a body', async () => {
    const srv = await rawServer((s, n) => s.write(['HTTP/1.1 204 No Content\r\n\r\n', 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n', OK][n]!));
    const c = client(srv.origin);
    for (const err of [new Error('cut a 204'), new Error('cut an empty 200'), new Error('cut a body')]) {
      const rec = call(c, {}, { onHeaders: (r) => (r.abort(err), true) });
      await rec.settled;
      assert.deepEqual([rec.events, rec.error], [['connect', 'headers', 'error'], err]);
      await until(() => c.connections === 0 && srv.open === 0, 'the connection to close');
    }
  });

  it('lets a late abort, after the call completed, leave the next call on the same connection alone', async () => {
    let answerSecond: (() => void) | undefined;
    const srv = await rawServer((s, n) => (n === 0 ? s.write(OK) : (answerSecond = () => s.write(OK.replace('ok', 'OK')))));
    const c = client(srv.origin);
    const first = await ok(call(c));
    const second = call(c);
    await until(() => answerSecond !== undefined, 'the second request');
    first.abort(new Error('late'));
    assert.deepEqual(second.events, ['connect']);
    answerSecond!();
    assert.equal((await ok(second)).body, 'OK');
    assert.deepEqual(first.steps, ['connect', 'headers', 'data', 'complete']);
    assert.equal(c.connections, 1);
    assert.equal(srv.accepted, 1);
  });

  it('drops the call when onHeaders returns false: nothing more is heard and the connection is not reused', async () => {
    const heads = ['HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody', 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'];
    const srv = await rawServer((s, n) => s.write(n % 2 === 0 ? heads[n / 2]! : OK));
    const c = client(srv.origin);
    for (let i = 0; i < heads.length; i++) {
      const rec = call(c, {}, { onHeaders: () => false });
      await until(() => rec.events.length === 2 && c.connections === 0 && srv.open === 0, 'the connection to close');
      assert.equal((await ok(call(c))).body, 'ok');
      assert.deepEqual(rec.events, ['connect', 'headers']);
      assert.equal(srv.accepted, i + 2); // the dropped call took the connection the last good one left
    }
  });

  it('close() destroys idle connections, waits for busy ones, and refuses later calls', async () => {
    let answer = () => {};
    const srv = await rawServer((s, n) => (n === 0 ? s.write(OK) : (answer = () => s.write(OK))));
    const idle = client(srv.origin);
    await ok(call(idle));
    assert.equal(idle.connections, 1);
    await idle.close();
    assert.equal(idle.connections, 0);
    await until(() => srv.open === 0, 'the server to see the close');
    const late = call(idle);
    assert.deepEqual(late.events, ['error']);
    assert.equal((late.error as ReplicaHopError).code, 'REPLICA_CLOSED');

    const busy = client(srv.origin);
    const rec = call(busy);
    await until(() => srv.heads.length === 2, 'the request');
    let closed = false;
    const closing = busy.close().then(() => (closed = true));
    await delay(20); // time for close() to resolve early, were it to
    assert.equal(closed, false);
    answer();
    await ok(rec);
    await closing;
    assert.equal(busy.connections, 0);
    assert.equal(srv.accepted, 2);
  });

  describe('pipelining', () => {
    /** A client that pipelines from its first call (steadyAfter 0). */
    const steadyClient = (origin: string, pipelining: number, more: ReplicaClientOptions = {}) => client(origin, { pipelining, steadyAfter: 0, ...more });

    /** A raw server that holds each answer until release(n) (n: the request's number over all connections). */
    async function heldServer() {
      const waiting = new Map<number, net.Socket>();
      const srv = await rawServer((socket, n) => waiting.set(n, socket));
      const release = (n: number, answer = `HTTP/1.1 200 OK\r\nContent-Length: ${String(n).length}\r\n\r\n${n}`) => {
        waiting.get(n)!.write(answer);
        waiting.delete(n);
      };
      return Object.assign(srv, { release });
    }

    it('sends the GET and HEAD calls of one turn on one connection and hands each its own answer in order', async () => {
      const srv = await httpServer((req, res) => res.end(`answer ${req.url}`));
      const c = steadyClient(srv.origin, 8);
      const paths = ['/f?a', '/f?b', '/f', '/f?d'];
      const recs = paths.map((path) => call(c, { path }));
      const head = call(c, { method: 'HEAD', path: '/f?e' });
      for (const [i, rec] of recs.entries()) assert.equal((await ok(rec)).body, `answer ${paths[i]}`);
      await ok(head);
      assert.equal(srv.accepted, 1);
      assert.equal(c.connections, 1);
    });

    it('takes at most `pipelining` calls on one connection, and never a call with a method that may change state', async () => {
      const srv = await httpServer((req, res) => res.end(`${req.method} ${req.url}`));
      const c = steadyClient(srv.origin, 2);
      const recs = [call(c, { path: '/?1' }), call(c, { path: '/?2' }), call(c, { path: '/?3' }), call(c, { method: 'POST', path: '/?4' }), call(c, { method: 'DELETE', path: '/?5' })];
      assert.deepEqual(await Promise.all(recs.map(async (r) => (await ok(r)).body)), ['GET /?1', 'GET /?2', 'GET /?3', 'POST /?4', 'DELETE /?5']);
      // /1 and /2 share one; /3, the POST and the DELETE each have their own.
      assert.equal(srv.accepted, 4);
    });

    it('does not queue a call behind one sent in an earlier turn', async () => {
      const srv = await heldServer();
      const c = steadyClient(srv.origin, 8);
      const slow = call(c, { path: '/slow' });
      await until(() => srv.heads.length === 1, 'the first request');
      const fast = call(c, { path: '/fast' });
      await until(() => srv.heads.length === 2, 'the second request');
      srv.release(1);
      await ok(fast);
      assert.equal(slow.events.at(-1), 'connect');
      srv.release(0);
      await ok(slow);
      assert.equal(srv.accepted, 2);
    });

    it('drops the answer of a pipelined call its caller cut, and answers the others on the same connection', async () => {
      const srv = await heldServer();
      const c = steadyClient(srv.origin, 8);
      const [a, b, d] = [call(c, { path: '/?a' }), call(c, { path: '/?b' }), call(c, { path: '/?c' })];
      await until(() => srv.heads.length === 3, 'three requests');
      const cut = new Error('caller left');
      a.abort(cut);
      assert.deepEqual(a.events, ['connect', 'error']);
      assert.equal(a.error, cut);
      srv.release(0);
      srv.release(1);
      srv.release(2);
      assert.equal((await ok(b)).body, '1');
      assert.equal((await ok(d)).body, '2');
      assert.deepEqual(a.events, ['connect', 'error']);
      assert.equal(srv.accepted, 1);
      // The connection carries on.
      const next = call(c, { path: '/next' });
      await until(() => srv.heads.length === 4, 'the next request');
      srv.release(3);
      await ok(next);
      assert.equal(srv.accepted, 1);
    });

    it('reads past an answer a pipelined call refused in onHeaders, to the next one', async () => {
      const srv = await httpServer((req, res) => res.end(`answer ${req.url}`));
      const c = steadyClient(srv.origin, 8);
      const refused = call(c, { path: '/?a' }, { onHeaders: () => false });
      const b = call(c, { path: '/?b' });
      assert.equal((await ok(b)).body, 'answer /?b');
      assert.deepEqual(refused.events, ['connect', 'headers']);
      assert.equal(srv.accepted, 1);
    });

    it('fails the calls after an answer that closes the connection with REPLICA_CLOSED', async () => {
      const srv = await rawServer((socket, n) => {
        if (n === 0) socket.end('HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok');
      });
      const c = steadyClient(srv.origin, 8);
      const [a, b] = [call(c), call(c)];
      assert.equal((await ok(a)).body, 'ok');
      await failed(b, 'REPLICA_CLOSED');
    });

    /** A server answering each call with the client port of its connection, so a test sees which calls shared one. */
    const portServer = () =>
      httpServer((req, res) => {
        const port = String(req.socket.remotePort);
        if (req.url === '/slow') setTimeout(() => res.end(port), 400);
        else if (req.url === '/stream') (res.write(port), res.end());
        else if (req.url === '/fail') req.socket.destroy();
        else res.end(port);
      });
    /** Sends `paths` in one turn: the connections they went on, in the order of the calls. */
    const turn = async (c: ReplicaClient, paths = ['/?1', '/?2', '/?3']) => Promise.all(paths.map((path) => call(c, { path })).map(async (r) => (await ok(r)).body));
    const connectionsOf = (ports: string[]) => new Set(ports).size;

    it('pipelines only after `steadyAfter` answers in a row, each quick and framed by a Content-Length', async () => {
      const srv = await portServer();
      const c = client(srv.origin, { pipelining: 8, steadyAfter: 4, slowCallMs: 10_000 });
      assert.equal(connectionsOf(await turn(c)), 3, 'not steady yet: a connection each');
      await ok(call(c)); // the fourth answer
      assert.equal(connectionsOf(await turn(c)), 1, 'steady: the calls of one turn share a connection');
    });

    it('a slow answer, a streamed one or a failed call stops pipelining until `steadyAfter` more answers', async () => {
      const srv = await portServer();
      const c = client(srv.origin, { pipelining: 8, steadyAfter: 2, slowCallMs: 300 });
      const two = ['/?1', '/?2'];
      await ok(call(c));
      await ok(call(c));
      assert.equal(connectionsOf(await turn(c, two)), 1);
      assert.equal((await ok(call(c, { path: '/slow' }))).events.at(-1), 'complete');
      assert.equal(connectionsOf(await turn(c, two)), 2, 'after a slow answer');
      assert.equal(connectionsOf(await turn(c, two)), 1, 'steady again after two quick ones');
      await ok(call(c, { path: '/stream' }));
      assert.equal(connectionsOf(await turn(c, two)), 2, 'after a streamed (chunked) answer');
      assert.equal(connectionsOf(await turn(c, two)), 1);
      await failed(call(c, { path: '/fail' }), 'REPLICA_CLOSED');
      assert.equal(connectionsOf(await turn(c, two)), 2, 'after a failed call');
    });

    it('pipelines only calls to the same path: a call to another path has a connection of its own', async () => {
      const srv = await portServer();
      const c = steadyClient(srv.origin, 8);
      const [a1, b, a2, a3] = await turn(c, ['/a?1', '/b', '/a?2', '/a']);
      assert.equal(a1, a2);
      assert.equal(a1, a3);
      assert.notEqual(b, a1);
    });

    it('fails every call on the connection when the replica breaks the framing', async () => {
      const srv = await rawServer((socket, n) => {
        if (n === 1) socket.write(`${OK}HTTP/1.1 2x0 OK\r\n\r\n`);
      });
      const c = steadyClient(srv.origin, 8);
      const [a, b, d] = [call(c), call(c), call(c)];
      assert.equal((await ok(a)).body, 'ok');
      await failed(b, 'REPLICA_PROTOCOL');
      await failed(d, 'REPLICA_PROTOCOL');
    });
  });
});
