import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Context } from './handler.js';
import { connect, deferred, readUntilClose, startRuntime, withDeadline } from './testkit.js';

/** Resolves once the runtime's waiting_calls gauge reads `n`. */
async function waitingCalls(adminPort: number, n: number): Promise<void> {
  for (;;) {
    const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    if (new RegExp(`^kubefn_runtime_waiting_calls\\{[^}]*\\} ${n}$`, 'm').test(text)) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('concurrency cap', () => {
  it('calls over the cap wait for a slot in order, never more than the cap run at once, and past the waiting bound get 503 OVERLOADED', async () => {
    let running = 0;
    let most = 0;
    const order: string[] = [];
    const gates = new Map<string, ReturnType<typeof deferred<void>>>();
    const started = new Map<string, ReturnType<typeof deferred<void>>>();
    for (const id of ['a', 'b', 'c', 'd', 'e']) {
      gates.set(id, deferred());
      started.set(id, deferred());
    }
    const { server, base } = await startRuntime(
      {
        async default(request: Request) {
          const id = new URL(request.url).pathname.slice(1);
          running++;
          most = Math.max(most, running);
          order.push(id);
          started.get(id)!.resolve();
          await gates.get(id)!.promise;
          running--;
          return id;
        },
      },
      { concurrency: 1 },
    );
    try {
      const a = fetch(`${base}/a`);
      await withDeadline(started.get('a')!.promise, 'a to start');
      // 1 slot: 4 may wait (waitingPerSlot); the sixth call is refused at once.
      const waiting: Promise<Response>[] = [];
      for (const id of ['b', 'c', 'd', 'e']) {
        waiting.push(fetch(`${base}/${id}`));
        await withDeadline(waitingCalls(server.adminPort, waiting.length), `${id} waiting`);
      }
      const refused = await fetch(`${base}/f`);
      assert.equal(refused.status, 503);
      assert.equal(refused.headers.get('x-kubefn-overloaded'), '1');
      assert.equal(((await refused.json()) as { code: string }).code, 'OVERLOADED');
      for (const id of ['a', 'b', 'c', 'd', 'e']) gates.get(id)!.resolve();
      const answers = await Promise.all([a, ...waiting].map(async (r) => (await r).text()));
      assert.deepEqual(answers, ['a', 'b', 'c', 'd', 'e']);
      assert.deepEqual(order, ['a', 'b', 'c', 'd', 'e'], 'served in arrival order');
      assert.equal(most, 1, 'never more than the cap in the handler');
      const metrics = await (await fetch(`http://127.0.0.1:${server.adminPort}/metrics`)).text();
      assert.match(metrics, /^kubefn_runtime_waited_calls_total\{[^}]*\} 4$/m, 'b, c, d and e waited');
    } finally {
      await server.close();
    }
  });

  it('a waiting call whose client went away leaves the queue and never runs', async () => {
    let runs = 0;
    const release = deferred();
    const started = deferred();
    const { server, base } = await startRuntime(
      {
        async default() {
          runs++;
          started.resolve();
          await release.promise;
          return 'ok';
        },
      },
      { concurrency: 1 },
    );
    try {
      const first = fetch(base);
      await withDeadline(started.promise, 'the first call to start');
      const gone = new AbortController();
      const abandoned = fetch(base, { signal: gone.signal }).catch(() => 'aborted');
      await withDeadline(waitingCalls(server.adminPort, 1), 'the second call waiting');
      gone.abort();
      assert.equal(await abandoned, 'aborted');
      await withDeadline(waitingCalls(server.adminPort, 0), 'the abandoned call gone from the queue');
      release.resolve();
      assert.equal(await (await first).text(), 'ok');
      assert.equal(await (await fetch(base)).text(), 'ok');
      assert.equal(runs, 2, 'the abandoned call never ran');
    } finally {
      await server.close();
    }
  });
});

describe('drain', () => {
  it('finishes in-flight calls, serves one that arrives on an open connection with Connection: close, then closes', async () => {
    const release = deferred();
    let started = 0;
    const allStarted = deferred();
    const { server, base } = await startRuntime({
      async default(request: Request) {
        if (new URL(request.url).pathname === '/fast') return 'fast';
        if (++started === 3) allStarted.resolve();
        await release.promise;
        return 'finished';
      },
    });
    const inFlight = [1, 2, 3].map(() => fetch(`${base}/slow`));
    await withDeadline(allStarted.promise, 'three calls in flight');
    // A connection with half a request on it: not idle, so the drain does not close it.
    const late = await connect(server.port);
    const lateText = readUntilClose(late);
    late.write('GET /fast HTTP/1.1\r\nHost: x\r\n');
    // A round trip on another connection: by the time it returns the server has read the half request.
    assert.equal(await (await fetch(`${base}/fast`, { headers: { connection: 'close' } })).text(), 'fast');

    const drained = server.drain();
    const readyz = await fetch(`http://127.0.0.1:${server.adminPort}/readyz`);
    assert.equal(readyz.status, 503);

    late.write('\r\n');
    const served = await withDeadline(lateText, 'the late call to be answered and its connection closed');
    assert.match(served, /^HTTP\/1.1 200/);
    assert.match(served, /connection: close/i);
    assert.match(served, /\r\n\r\nfast$/);

    release.resolve();
    for (const res of await Promise.all(inFlight)) {
      assert.equal(res.status, 200);
      assert.equal(await res.text(), 'finished');
    }
    await withDeadline(drained, 'the drain');
    await assert.rejects(fetch(base), 'the port is closed');
    await server.close();
  });

  it('keeps serving on idle keep-alive connections for drainLingerMs: a call already on its way is not cut', async () => {
    const { server, base } = await startRuntime({ default: () => 'ok' }, { drainLingerMs: 60_000 });
    const socket = await connect(server.port);
    const text = readUntilClose(socket);
    // One call leaves the connection idle and open, as the gateway's keep-alive pool holds it.
    socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await withDeadline(new Promise((resolve) => socket.once('data', resolve)), 'the first answer');
    const drained = server.drain();
    // Sent as the router stops routing here: before, the drain had closed this idle connection.
    socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    const rest = await withDeadline(text, 'the second answer and the close');
    assert.match(rest, /^HTTP\/1.1 200[^]*connection: close[^]*\r\n\r\nok$/i);
    // A new connection during the linger is served too.
    const late = await fetch(base);
    assert.equal(await late.text(), 'ok');
    assert.equal(late.headers.get('connection'), 'close');
    await server.close();
    await withDeadline(drained, 'the drain');
  });

  it('cuts calls still running at drainMs', async () => {
    const aborted = deferred();
    const started = deferred();
    const { server, base } = await startRuntime(
      {
        default: (_request: Request, context: Context) => {
          context.signal.addEventListener('abort', () => aborted.resolve());
          started.resolve();
          return new Promise(() => {});
        },
      },
      { drainMs: 100 },
    );
    const stuck = fetch(base).catch((err: unknown) => err);
    await withDeadline(started.promise, 'the call to start');
    await withDeadline(server.drain(), 'the drain');
    await withDeadline(aborted.promise, 'the handler to be aborted');
    assert.ok((await stuck) instanceof Error);
  });

  it('close() is idempotent', async () => {
    const { server } = await startRuntime({ default: () => 'x' });
    await Promise.all([server.close(), server.close()]);
    await server.close();
  });
});
