// OpenFaaS-style async calls end to end with real parts: a real nats-server with JetStream (file
// storage, stopped and started again), two gateways built with createGateway (each with its own
// NATS connection, the async route and an AsyncInvocations worker calling through the gateway's
// own /function route), functions served by the Node runtime in this process, and a callback
// server that records what the workers POST back.

import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { after, afterEach, before, describe, it } from 'node:test';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { request } from 'undici';
import {
  KubefnError,
  MutableEndpointSet,
  parseFunctionSpec,
  type Driver,
  type FunctionSpec,
  type FunctionSpecInput,
  type FunctionStatus,
  type LogLine,
} from '@kubefn/platform';
import { waitFor } from '@kubefn/platform/testing';
import { serve, type Handler, type RuntimeServer } from '@kubefn/runtime-node';
import { asyncPlugin, AsyncInvocations, callerInvoke, createGateway, type AsyncInvocationsOptions, type Gateway, type Invoke } from '@kubefn/gateway';
import { startNatsServer, type NatsServer } from '../support/nats-server.js';

/** Functions whose replicas are the runtime servers this test started. */
class LocalDriver implements Driver {
  readonly kind = 'test';
  readonly #specs = new Map<string, FunctionSpec>();
  readonly #sets = new Map<string, MutableEndpointSet>();
  constructor(private readonly urls: Map<string, string>) {}
  async deploy(input: FunctionSpec): Promise<FunctionStatus> {
    const spec = parseFunctionSpec(input);
    const url = this.urls.get(spec.name)!;
    this.#specs.set(spec.name, spec);
    this.endpoints(spec.name).set([{ id: `${spec.name}-1`, url, adminUrl: url }]);
    return this.get(spec.name);
  }
  async remove(name: string): Promise<void> {
    if (!this.#specs.delete(name)) throw new KubefnError('NOT_FOUND', `no function ${name}`);
  }
  async list(): Promise<FunctionStatus[]> {
    return Promise.all([...this.#specs.keys()].map((n) => this.get(n)));
  }
  async get(name: string): Promise<FunctionStatus> {
    const spec = this.#specs.get(name);
    if (!spec) throw new KubefnError('NOT_FOUND', `no function ${name}`);
    const t = new Date(0).toISOString();
    return { spec, replicas: 1, readyReplicas: 1, createdAt: t, updatedAt: t };
  }
  async scale(): Promise<void> {}
  endpoints(name: string): MutableEndpointSet {
    let s = this.#sets.get(name);
    if (!s) this.#sets.set(name, (s = new MutableEndpointSet()));
    return s;
  }
  async *logs(): AsyncIterable<LogLine> {}
  async close(): Promise<void> {}
}

interface Callback {
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** What one gateway of the test is made of. */
interface TestGateway {
  gateway: Gateway;
  nc: NatsConnection;
  url: string;
  invoke: Invoke;
}

const stream = 'KUBEFN_ASYNC';
/** The stream as every gateway here creates it: small enough in bytes for a test to fill. */
const limits = { maxBytes: 256 * 1024 };

describe('async invocations through JetStream', () => {
  let nats: NatsServer;
  let callbackServer: http.Server;
  let callbackBase: string;
  const callbacks: Callback[] = [];
  const runtimes: RuntimeServer[] = [];
  const gateways: TestGateway[] = [];
  const workers: AsyncInvocations[] = [];
  /** Handler runs per `<function>:<call id>`. */
  const runs = new Map<string, number>();
  const codes: string[] = [];
  const slowWaiters: (() => void)[] = [];
  const slowRelease = () => slowWaiters.splice(0).forEach((release) => release());
  let slowStarted = 0;
  let slowFinished = 0;
  let echoActive = 0;
  let echoPeak = 0;

  const ran = (fn: string, callId: string) => runs.get(`${fn}:${callId}`) ?? 0;
  const callbacksFor = (callId: string) => callbacks.filter((c) => c.headers['x-call-id'] === callId);
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  const handlers: Record<string, { handler: Handler; spec?: Partial<FunctionSpecInput> }> = {
    echo: {
      handler: async (req, ctx) => {
        echoActive++;
        echoPeak = Math.max(echoPeak, echoActive);
        try {
          const body = await req.text();
          if (req.headers.get('x-echo-delay-ms')) await sleep(Number(req.headers.get('x-echo-delay-ms')));
          const url = new URL(req.url);
          return Response.json({ callId: ctx.callId, method: req.method, path: url.pathname, search: url.search, custom: req.headers.get('x-custom'), body });
        } finally {
          echoActive--;
        }
      },
    },
    slow: {
      handler: async () => {
        slowStarted++;
        await new Promise<void>((resolve) => slowWaiters.push(resolve));
        slowFinished++;
        return new Response('slow done', { headers: { 'content-type': 'text/plain' } });
      },
    },
    flaky: { handler: async (_req, ctx) => (ran('flaky', ctx.callId) <= 2 ? new Response('busy', { status: 503 }) : new Response(`ok after ${ran('flaky', ctx.callId)}`)) },
    broken: { handler: async () => new Response('broken on purpose', { status: 500 }) },
    busy: { handler: async () => new Response('always busy', { status: 503 }) },
    // One call at a time and a queue of one in gateway A: a burst meets QUEUE_FULL.
    narrow: { handler: async () => (await sleep(150), new Response('narrow done')), spec: { scale: { containerConcurrency: 1, min: 1, initial: 1 } } },
  };

  async function startGateway(driver: Driver, names: string[], options: { maxQueuePerFunction?: number; maxBodyBytes?: number }): Promise<TestGateway> {
    const nc = await connect({ servers: nats.url, maxReconnectAttempts: -1, reconnectTimeWait: 200 });
    const gateway = createGateway({ driver, maxQueuePerFunction: options.maxQueuePerFunction, serveAsync: false });
    gateway.app.register(asyncPlugin, {
      connection: nc,
      limits,
      exists: async (name: string) => (await gateway.context.catalog.get(name)) !== undefined,
      ...(options.maxBodyBytes ? { maxBodyBytes: options.maxBodyBytes } : {}),
    });
    const address = await gateway.app.listen({ port: 0, host: '127.0.0.1' });
    for (const name of names) await driver.get(name);
    const inject = callerInvoke(gateway.context.caller);
    const invoke: Invoke = async (call) => {
      const res = await inject(call);
      if (res.code) codes.push(res.code);
      return res;
    };
    return { gateway, nc, url: address, invoke };
  }

  function startWorker(g: TestGateway, options: Partial<AsyncInvocationsOptions> = {}): AsyncInvocations {
    const w = new AsyncInvocations({ connection: g.nc, invoke: g.invoke, limits, retryDelayMs: 100, pullExpiresMs: 1000, closeTimeoutMs: 300, ...options });
    workers.push(w);
    return w;
  }

  async function post(g: TestGateway, path: string, options: { body?: string | Buffer; headers?: Record<string, string>; callback?: string | false } = {}) {
    const headers: Record<string, string> = { ...options.headers };
    if (options.callback !== false) headers['x-callback-url'] = options.callback ?? `${callbackBase}/done`;
    const res = await request(`${g.url}${path}`, { method: 'POST', headers, body: options.body ?? '' });
    const text = await res.body.text();
    return { status: res.statusCode, headers: res.headers, text, callId: res.headers['x-call-id'] as string | undefined };
  }

  /** Messages in the stream now (work-queue retention: acked calls are gone). */
  async function storedCalls(nc: NatsConnection): Promise<number> {
    const reply = await nc.request(`$JS.API.STREAM.INFO.${stream}`, undefined, { timeout: 5000 });
    return (JSON.parse(new TextDecoder().decode(reply.data)) as { state: { messages: number } }).state.messages;
  }

  async function closeWorkers(): Promise<void> {
    await Promise.all(workers.splice(0).map((w) => w.close()));
  }

  before(async () => {
    nats = await startNatsServer();
    callbackServer = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        callbacks.push({ path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString() });
        res.statusCode = req.url === '/fail' ? 500 : 200;
        res.end();
      });
    });
    await new Promise<void>((resolve) => callbackServer.listen(0, '127.0.0.1', resolve));
    callbackBase = `http://127.0.0.1:${(callbackServer.address() as AddressInfo).port}`;

    const urls = new Map<string, string>();
    for (const [name, { handler }] of Object.entries(handlers)) {
      const counted: Handler = (req, ctx) => {
        runs.set(`${name}:${ctx.callId}`, ran(name, ctx.callId) + 1);
        return handler(req, ctx);
      };
      const rt = await serve({ default: counted }, { port: 0, adminPort: 0, host: '127.0.0.1', functionName: name, log: () => {} });
      runtimes.push(rt);
      urls.set(name, `http://127.0.0.1:${rt.port}`);
    }
    // Two gateways over one set of functions, like two replicas of the gateway in a cluster.
    const names = Object.keys(handlers);
    for (const options of [{ maxQueuePerFunction: 1, maxBodyBytes: 64 * 1024 }, {}]) {
      const driver = new LocalDriver(urls);
      for (const name of names) await driver.deploy(parseFunctionSpec({ name, image: 'local', ...handlers[name]!.spec }));
      gateways.push(await startGateway(driver, names, options));
    }
  });

  // A failed test leaves no worker behind to take the next test's calls.
  afterEach(closeWorkers);

  after(async () => {
    slowRelease();
    await closeWorkers();
    for (const g of gateways) {
      await g.gateway.close();
      await g.nc.close();
    }
    for (const rt of runtimes) await rt.close();
    await new Promise<void>((resolve) => callbackServer?.close(() => resolve()));
    await nats?.close();
  });

  it('answers 202 with X-Call-Id before the function runs, then POSTs its response to X-Callback-Url', async () => {
    const [a] = gateways;
    const worker = startWorker(a!);
    await worker.start();
    assert.equal(worker.state().ready, true, worker.state().lastError);

    const accepted = await post(a!, '/async-function/slow/sub/path?x=1', { body: 'hello' });
    assert.equal(accepted.status, 202, accepted.text);
    assert.match(accepted.callId ?? '', /^[0-9a-f-]{36}$/);
    assert.equal(slowFinished, 0, 'the function had not answered when the 202 came');
    assert.equal(callbacksFor(accepted.callId!).length, 0);
    await waitFor(() => slowStarted === 1, { what: 'the worker to start the slow call' });
    slowRelease();
    const [cb] = await waitFor(() => callbacksFor(accepted.callId!).length === 1 && callbacksFor(accepted.callId!), { what: 'the callback' });
    assert.equal(cb!.path, '/done');
    assert.equal(cb!.body, 'slow done');
    assert.equal(cb!.headers['x-function-status'], '200');
    assert.equal(cb!.headers['x-function-name'], 'slow');
    assert.equal(cb!.headers['content-type'], 'text/plain');
    assert.ok(Number(cb!.headers['x-duration-seconds']) > 0, `x-duration-seconds ${cb!.headers['x-duration-seconds']}`);

    // The stored request reaches the function as sent: method, path under it, query, headers, body.
    const echoed = await post(a!, '/async-function/echo/a/b?q=1&r=2', { body: '{"k":1}', headers: { 'content-type': 'application/json', 'x-custom': 'kept', 'x-call-id': 'caller-chosen-1' } });
    assert.equal(echoed.status, 202);
    assert.equal(echoed.callId, 'caller-chosen-1');
    const [ecb] = await waitFor(() => callbacksFor('caller-chosen-1').length === 1 && callbacksFor('caller-chosen-1'), { what: 'the echo callback' });
    assert.deepEqual(JSON.parse(ecb!.body), { callId: 'caller-chosen-1', method: 'POST', path: '/a/b', search: '?q=1&r=2', custom: 'kept', body: '{"k":1}' });
    assert.equal(ecb!.headers['content-type'], 'application/json');
    await waitFor(async () => (await storedCalls(a!.nc)) === 0, { what: 'acked calls to leave the stream' });
  });

  it('retries 503 with backoff until it succeeds, treats 500 as final, and gives up on 503 after the retries', async () => {
    const [a] = gateways;
    const worker = startWorker(a!, { retries: 3 });
    await worker.start();
    const flaky = await post(a!, '/async-function/flaky');
    const broken = await post(a!, '/async-function/broken');
    const busy = await post(a!, '/async-function/busy');
    for (const r of [flaky, broken, busy]) assert.equal(r.status, 202, r.text);
    await waitFor(() => [flaky, broken, busy].every((r) => callbacksFor(r.callId!).length >= 1), { what: 'three callbacks', timeoutMs: 20_000 });
    await waitFor(() => worker.state().inFlight === 0 && worker.state().completed + worker.state().failed === 3, { what: 'the worker to finish' });

    const only = (id: string) => {
      const got = callbacksFor(id);
      assert.equal(got.length, 1, `one callback for ${id}`);
      return got[0]!;
    };
    assert.equal(only(flaky.callId!).headers['x-function-status'], '200');
    assert.equal(only(flaky.callId!).body, 'ok after 3');
    assert.equal(ran('flaky', flaky.callId!), 3, 'flaky: 3 deliveries');
    assert.equal(only(broken.callId!).headers['x-function-status'], '500');
    assert.equal(only(broken.callId!).body, 'broken on purpose');
    assert.equal(ran('broken', broken.callId!), 1, 'broken: 500 is final');
    assert.equal(only(busy.callId!).headers['x-function-status'], '503');
    assert.equal(ran('busy', busy.callId!), 4, 'busy: 1 delivery + 3 retries');
    const s = worker.state();
    assert.deepEqual({ completed: s.completed, failed: s.failed, retried: s.retried }, { completed: 1, failed: 2, retried: 5 });
    await waitFor(async () => (await storedCalls(a!.nc)) === 0, { what: 'finished calls to leave the stream' });
  });

  it('tries a failing callback twice, counts it, and still acks the call', async () => {
    const [a] = gateways;
    const worker = startWorker(a!);
    await worker.start();
    const r = await post(a!, '/async-function/echo', { body: 'x', callback: `${callbackBase}/fail` });
    assert.equal(r.status, 202);
    await waitFor(() => worker.state().callbacksFailed === 1, { what: 'the failed callback to be counted' });
    assert.equal(callbacksFor(r.callId!).length, 2, 'two attempts, no more');
    await waitFor(async () => (await storedCalls(a!.nc)) === 0, { what: 'the call to be acked' });
    assert.equal(ran('echo', r.callId!), 1);
  });

  it('two gateways share one durable consumer: 200 calls, each run and called back, none twice', async (t) => {
    const maxInFlight = 16;
    const send = (i: number) => post(gateways[i % 2]!, '/async-function/echo', { body: `job-${i}`, headers: { 'x-echo-delay-ms': '20' } });
    // Half wait in the stream before the workers start (a backlog: each pulls to its limit),
    // half arrive while they run.
    const accepted = await Promise.all(Array.from({ length: 100 }, (_, i) => send(i)));
    const ws = gateways.map((g) => startWorker(g, { maxInFlight }));
    let peakInFlight = 0;
    let peakBoth = 0;
    const sampler = setInterval(() => {
      peakInFlight = Math.max(peakInFlight, ...ws.map((w) => w.state().inFlight));
      peakBoth = Math.max(peakBoth, ws[0]!.state().inFlight + ws[1]!.state().inFlight);
    }, 2);
    const ids: string[] = [];
    try {
      await Promise.all(ws.map((w) => w.start()));
      accepted.push(...(await Promise.all(Array.from({ length: 100 }, (_, i) => send(100 + i)))));
      for (const r of accepted) {
        assert.equal(r.status, 202, r.text);
        ids.push(r.callId!);
      }
      await waitFor(() => ids.every((id) => callbacksFor(id).length >= 1), { what: '200 callbacks', timeoutMs: 60_000 });
      await waitFor(() => ws.every((w) => w.state().inFlight === 0), { what: 'both workers idle' });
    } finally {
      clearInterval(sampler);
    }
    const invokedTwice = ids.filter((id) => ran('echo', id) > 1).length;
    const calledBackTwice = ids.filter((id) => callbacksFor(id).length > 1).length;
    const perWorker = ws.map((w) => w.state().completed);
    t.diagnostic(`duplicates: ${invokedTwice} invoked twice, ${calledBackTwice} called back twice; per gateway ${perWorker.join(' + ')}; peak in flight per gateway ${peakInFlight}, both ${peakBoth}, at the function ${echoPeak}`);
    assert.ok(ids.every((id) => ran('echo', id) >= 1), 'every call invoked');
    assert.equal(new Set(ids).size, 200);
    assert.equal(invokedTwice, 0, 'no call invoked twice');
    assert.equal(calledBackTwice, 0, 'no call called back twice');
    assert.equal(perWorker[0]! + perWorker[1]!, 200);
    assert.ok(perWorker.every((n) => n > 0), 'both gateways took calls');
    assert.ok(peakInFlight <= maxInFlight, `at most ${maxInFlight} un-acked per gateway, saw ${peakInFlight}`);
    assert.ok(echoPeak <= 2 * maxInFlight, `at most ${2 * maxInFlight} at the function, saw ${echoPeak}`);
  });

  it('keeps accepted calls through a nats-server restart and runs them when a worker comes', async () => {
    const [a] = gateways;
    const ids: string[] = [];
    for (let i = 0; i < 50; i++) {
      const r = await post(a!, '/async-function/echo', { body: `stored-${i}` });
      assert.equal(r.status, 202, r.text);
      ids.push(r.callId!);
    }
    assert.equal(await storedCalls(a!.nc), 50, 'all 50 stored, none run: no worker yet');

    await nats.stop();
    const refused = await waitFor(
      async () => {
        const r = await post(a!, '/async-function/echo', { body: 'while down' });
        return r.status === 503 && r;
      },
      { what: 'a 503 while NATS is down' },
    );
    assert.equal(JSON.parse(refused.text).code, 'UNAVAILABLE');
    assert.match(JSON.parse(refused.text).hint, /JetStream/);

    const worker = startWorker(a!);
    await worker.start();
    assert.equal(worker.state().ready, false);
    assert.ok(worker.state().lastError, 'state() says why it is not ready');

    await nats.start();
    await waitFor(() => ids.every((id) => callbacksFor(id).length >= 1), { what: '50 callbacks after the restart', timeoutMs: 60_000 });
    assert.equal(worker.state().ready, true);
    assert.ok(ids.every((id) => ran('echo', id) === 1), 'each stored call run once');
    assert.equal(ids.filter((id) => callbacksFor(id).length > 1).length, 0, 'no duplicate callbacks');
    for (const id of ids.slice(0, 3)) assert.match(JSON.parse(callbacksFor(id)[0]!.body).body, /^stored-\d+$/);

    // A running worker loses its pull when NATS goes away and pulls again when it is back.
    await nats.stop();
    await waitFor(() => !worker.state().ready, { what: 'the worker to notice NATS went away' });
    await nats.start();
    const later = await waitFor(async () => {
      const r = await post(a!, '/async-function/echo', { body: 'after the second restart' });
      return r.status === 202 && r;
    }, { what: 'NATS to take calls again' });
    await waitFor(() => callbacksFor(later.callId!).length === 1, { what: 'a call accepted after the restart to run', timeoutMs: 30_000 });
    assert.equal(worker.state().ready, true);
  });

  it('refuses an oversized body with 413 naming the limit and an unknown function with 404; a repeated X-Call-Id runs once', async () => {
    const [a, b] = gateways;
    const big = await post(a!, '/async-function/echo', { body: Buffer.alloc(64 * 1024 + 1, 'x') });
    assert.equal(big.status, 413);
    assert.equal(JSON.parse(big.text).code, 'BODY_TOO_LARGE');
    assert.match(JSON.parse(big.text).message, /65536 byte limit \(the gateway's body limit\)/);

    // Chunked, so only reading it finds out.
    const chunked = await request(`${a!.url}/async-function/echo`, {
      method: 'POST',
      body: Readable.from(Array.from({ length: 80 }, () => Buffer.alloc(1024, 'y'))),
    });
    assert.equal(chunked.statusCode, 413);
    assert.match((await chunked.body.json() as { message: string }).message, /65536 byte limit/);

    const overPayload = await post(b!, '/async-function/echo', { body: Buffer.alloc(1024 * 1024 + 1, 'z') });
    assert.equal(overPayload.status, 413);
    assert.match(JSON.parse(overPayload.text).message, /1048576 byte limit \(the NATS server's max_payload\)/);
    const nearPayload = await post(b!, '/async-function/echo', { body: Buffer.alloc(1024 * 1024 - 100, 'z') });
    assert.equal(nearPayload.status, 413, 'body under max_payload but not with its headers');
    assert.match(JSON.parse(nearPayload.text).message, /max_payload of 1048576 bytes/);

    const unknown = await post(a!, '/async-function/nope');
    assert.equal(unknown.status, 404);
    const body = JSON.parse(unknown.text);
    assert.equal(body.code, 'NOT_FOUND');
    assert.equal(body.message, 'no function named "nope"');
    assert.equal(body.callId, unknown.callId);
    assert.equal(unknown.headers['x-kubefn-error'], 'NOT_FOUND');

    assert.equal((await post(a!, '/async-function/echo', { headers: { 'x-callback-url': 'ftp://nowhere' }, callback: false })).status, 400);

    const first = await post(a!, '/async-function/echo', { body: 'once', headers: { 'x-call-id': 'dedup-1' } });
    const again = await post(b!, '/async-function/echo', { body: 'once', headers: { 'x-call-id': 'dedup-1' } });
    assert.deepEqual([first.status, again.status, first.callId, again.callId], [202, 202, 'dedup-1', 'dedup-1']);
    assert.equal(await storedCalls(a!.nc), 1, 'the repeat was not stored');
    const worker = startWorker(a!);
    await worker.start();
    await waitFor(async () => callbacksFor('dedup-1').length === 1 && (await storedCalls(a!.nc)) === 0, { what: 'the deduplicated call to run' });
    assert.equal(ran('echo', 'dedup-1'), 1);
  });

  it('recreates a deleted stream on the next call, and the worker recreates its consumer', async () => {
    const [a] = gateways;
    const worker = startWorker(a!);
    await worker.start();
    const deleted = JSON.parse(new TextDecoder().decode((await a!.nc.request(`$JS.API.STREAM.DELETE.${stream}`, undefined, { timeout: 5000 })).data));
    assert.equal(deleted.success, true);
    const r = await post(a!, '/async-function/echo', { body: 'after delete' });
    assert.equal(r.status, 202, r.text);
    await waitFor(() => callbacksFor(r.callId!).length === 1, { what: 'the call to run on the new stream', timeoutMs: 30_000 });
  });

  it('keeps a call longer than ack_wait alive, and close() gives calls in flight to another gateway', async () => {
    const [a, b] = gateways;
    const worker = startWorker(a!, { ackWaitMs: 1500 });
    await worker.start();
    const long = await post(a!, '/async-function/echo', { body: 'long', headers: { 'x-echo-delay-ms': '4000' } });
    await waitFor(() => callbacksFor(long.callId!).length === 1, { what: 'the long call to finish', timeoutMs: 15_000 });
    assert.equal(ran('echo', long.callId!), 1, 'not redelivered while it ran');
    await worker.close();

    // Back to a 60 s ack_wait: only close() giving the call back lets B have it soon.
    const first = startWorker(a!);
    await first.start();
    const startedBefore = slowStarted;
    const held = await post(a!, '/async-function/slow', { body: 'held' });
    await waitFor(() => slowStarted === startedBefore + 1, { what: 'gateway A to start the call' });
    const closing = first.close();
    const other = startWorker(b!);
    await other.start();
    await closing;
    assert.equal(first.state().inFlight, 0);
    await waitFor(() => slowStarted === startedBefore + 2, { what: 'gateway B to take the call A gave back' });
    slowRelease();
    await waitFor(() => callbacksFor(held.callId!).length === 1, { what: 'the callback' });
    await waitFor(async () => other.state().inFlight === 0 && (await storedCalls(b!.nc)) === 0, { what: 'the call to be acked' });
    assert.equal(callbacksFor(held.callId!).length, 1, 'only the gateway that kept the call called back');
  });

  it('refuses calls with 503 QUEUE_FULL while the stream is full, and takes them again once it drained', async () => {
    const [a] = gateways;
    const accepted: string[] = [];
    let refused: Awaited<ReturnType<typeof post>> | undefined;
    for (let i = 0; i < 10 && !refused; i++) {
      const r = await post(a!, '/async-function/echo', { body: Buffer.alloc(60 * 1024, 'f') });
      if (r.status === 202) accepted.push(r.callId!);
      else refused = r;
    }
    assert.ok(refused, 'a call refused before the tenth');
    assert.equal(refused.status, 503);
    assert.equal(JSON.parse(refused.text).code, 'QUEUE_FULL');
    assert.match(JSON.parse(refused.text).message, /async queue .* is full/);
    assert.ok(accepted.length >= 3, `${accepted.length} accepted first`);
    const worker = startWorker(a!);
    await worker.start();
    await waitFor(() => accepted.every((id) => callbacksFor(id).length === 1), { what: 'the stored calls to run' });
    await waitFor(async () => (await storedCalls(a!.nc)) === 0, { what: 'the stream to drain' });
    const again = await post(a!, '/async-function/echo', { body: 'room again' });
    assert.equal(again.status, 202);
    await waitFor(() => callbacksFor(again.callId!).length === 1, { what: 'the call after the drain to run' });
  });

  it('waits out QUEUE_FULL in place without spending deliveries', async () => {
    const [a] = gateways;
    const worker = startWorker(a!, { retries: 0 });
    await worker.start();
    const before = codes.filter((c) => c === 'QUEUE_FULL').length;
    const accepted = await Promise.all(Array.from({ length: 6 }, () => post(a!, '/async-function/narrow')));
    await waitFor(() => accepted.every((r) => callbacksFor(r.callId!).length === 1), { what: 'six callbacks', timeoutMs: 30_000 });
    assert.ok(codes.filter((c) => c === 'QUEUE_FULL').length > before, 'the gateway answered QUEUE_FULL at least once');
    assert.ok(accepted.every((r) => callbacksFor(r.callId!)[0]!.headers['x-function-status'] === '200'), 'all succeeded with no retries allowed');
    assert.equal(worker.state().retried, 0);
    assert.ok(accepted.every((r) => ran('narrow', r.callId!) === 1));
  });
});
