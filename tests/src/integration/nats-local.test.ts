// `fn up` without --nats runs its own nats-server (Debian's, from PATH) and `fn publish` goes
// through the gateway to it: real `fn up` and `fn` processes, a real NATS client on the side.
// Without nats-server on PATH `fn up` still serves HTTP and publishing says how to get NATS; a
// SIGKILLed `fn up` leaves no nats-server behind, and the next one on the same home finds the
// JetStream store as it was.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { readdir, readFile, mkdtemp, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { connect, headers as natsHeaders, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { waitFor } from '@kubefn/platform/testing';
import { Api } from '../support/api.js';
import { fnBin, newHome, repoRoot, startPlatform, type RunningPlatform } from '../support/platform-process.js';

const exec = promisify(execFile);
const fixture = path.join(repoRoot, 'tests', 'fixtures', 'events');
const hello = path.join(repoRoot, 'tests', 'fixtures', 'hello');

/** Runs the `fn` binary against `platform`; never throws for a non-zero exit. */
async function fn(platform: RunningPlatform, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = { ...process.env, KUBEFN_GATEWAY: platform.url, KUBEFN_TOKEN: platform.token };
  try {
    const r = await exec(process.execPath, [fnBin, ...args], { env, timeout: 60_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/**
 * Starts the platform's on-demand nats-server (any publish asks for it) and returns the URL
 * `fn up` logged for it.
 */
async function localNats(platform: RunningPlatform): Promise<string> {
  const r = await fn(platform, 'publish', 'kubefn.warmup', 'x');
  assert.equal(r.code, 0, `${r.stderr}\n${platform.output.join('\n')}`);
  const started = platform.output.map((l) => JSON.parse(l.startsWith('{') ? l : '{}') as { msg?: string; nats?: string }).find((e) => e.msg === 'started nats-server');
  assert.match(started?.nats ?? '', /^nats:\/\/127\.0\.0\.1:\d+$/, `fn up reports its nats-server:\n${platform.output.join('\n')}`);
  return started!.nats!;
}

/** Processes whose command line mentions `text` (the home folder: fn up, the supervisor, nats-server). */
async function processesWith(text: string): Promise<string[]> {
  const found: string[] = [];
  for (const pid of (await readdir('/proc')).filter((d) => /^\d+$/.test(d))) {
    const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
    const zombie = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z';
    if (!zombie && cmd.includes(text)) found.push(`${pid}: ${cmd.replaceAll('\0', ' ')}`);
  }
  return found;
}

describe('fn up runs its own NATS', () => {
  let platform: RunningPlatform;
  let client: NatsConnection;

  before(async () => {
    platform = await startPlatform(await newHome());
    // Started when first needed, not with fn up.
    assert.equal(platform.nats, undefined);
    assert.deepEqual((await processesWith(platform.home)).filter((p) => p.includes('nats-server ')), []);
    client = await connect({ servers: await localNats(platform) });
  });
  after(async () => {
    await client?.close();
    await platform?.stop();
  });

  it('keeps the server\'s store in <home>/nats with JetStream on', async () => {
    const info = await (await jetstreamManager(client)).getAccountInfo();
    assert.equal(typeof info.limits.max_storage, 'number');
    assert.ok((await readdir(path.join(platform.home, 'nats'))).includes('jetstream'));
  });

  it('fn publish delivers the data and the headers, names as written', async () => {
    const sub = client.subscribe('orders.new', { max: 1 });
    await client.flush();
    const r = await fn(platform, 'publish', 'orders.new', '{"id":1}', '--header', 'Nats-Msg-Id=order-1', '--header', 'content-type=application/json');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /published 8 bytes to orders.new/);
    let got: { data: string; id: string; type: string } | undefined;
    for await (const m of sub) got = { data: m.string(), id: m.headers?.get('Nats-Msg-Id') ?? '', type: m.headers?.get('content-type') ?? '' };
    assert.deepEqual(got, { data: '{"id":1}', id: 'order-1', type: 'application/json' });
  });

  it('fn publish --reply prints a responder\'s reply, and its kubefn-status when not 200', async () => {
    const sub = client.subscribe('orders.get', {
      max: 2,
      callback: (_err, m) => {
        const h = natsHeaders();
        h.set('kubefn-status', m.string() === 'missing' ? '404' : '200');
        m.respond(new TextEncoder().encode(`order ${m.string()}`), { headers: h });
      },
    });
    await client.flush();
    let r = await fn(platform, 'publish', 'orders.get', '7', '--reply', '--timeout', '5s');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'order 7');
    assert.equal(r.stderr, '');
    r = await fn(platform, 'publish', 'orders.get', 'missing', '--reply');
    assert.equal(r.code, 1);
    assert.equal(r.stdout, 'order missing');
    assert.match(r.stderr, /kubefn-status: 404/);
    sub.unsubscribe();
  });

  it('fn publish --reply reaches a function through its nats trigger on the local server', async () => {
    const api = new Api(platform.url, platform.token);
    const image = await api.upload(fixture, 'handler.js');
    await api.deploy({ name: 'echo', image, scale: { initial: 0 }, triggers: [{ type: 'http' }, { type: 'nats', subject: 'local.echo' }] });
    const r = await fn(platform, 'publish', 'local.echo', 'hello', '--reply', '--timeout', '30s');
    assert.equal(r.code, 0, r.stderr);
    const echo = JSON.parse(r.stdout) as { function: string; body: string; event: { subject: string } };
    assert.equal(echo.function, 'echo');
    assert.equal(echo.body, 'hello');
    assert.equal(echo.event.subject, 'local.echo');
  });

  it('fn publish --reply says when nothing subscribes', async () => {
    const r = await fn(platform, 'publish', 'nobody.home', 'x', '--reply');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /nothing subscribes to nobody.home/);
  });
});

describe('fn up with no event trigger deployed', () => {
  it('starts NATS and the async worker for the first /async-function call, and calls back', async () => {
    const platform = await startPlatform(await newHome());
    const callbacks: { status: string | undefined; callId: string | undefined; body: string }[] = [];
    const receiver = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        callbacks.push({ status: req.headers['x-function-status'] as string | undefined, callId: req.headers['x-call-id'] as string | undefined, body: Buffer.concat(chunks).toString() });
        res.end();
      });
    });
    try {
      await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
      const api = new Api(platform.url, platform.token);
      await api.deploy({ name: 'plain', image: await api.upload(path.join(repoRoot, 'examples', 'hello'), 'handler.js') });
      assert.equal(platform.nats, undefined, 'nothing needed NATS yet');
      // As faas-cli invoke --async sends it: the name with its default namespace.
      const res = await fetch(`${platform.url}/async-function/plain.openfaas-fn`, {
        method: 'POST',
        headers: { 'x-callback-url': `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/done` },
        body: 'Ada',
      });
      assert.equal(res.status, 202);
      const callId = res.headers.get('x-call-id');
      const got = await waitFor(async () => callbacks[0], { timeoutMs: 30_000, what: 'the callback of the async call' });
      assert.deepEqual(got, { status: '200', callId: callId ?? undefined, body: 'Hello, world!\n' });
    } finally {
      receiver.close();
      await platform.stop();
    }
  });
});

describe('fn up without nats-server on PATH', () => {
  let platform: RunningPlatform;

  before(async () => {
    // PATH holds node and nothing else: no nats-server to find.
    const bin = await mkdtemp(path.join(tmpdir(), 'kubefn-path-'));
    await symlink(process.execPath, path.join(bin, 'node'));
    platform = await startPlatform(await newHome(), { env: { PATH: bin } });
  });
  after(async () => platform?.stop());

  it('starts, serves HTTP functions, and publishing says how to get NATS', async () => {
    assert.equal(platform.nats, undefined);
    const api = new Api(platform.url, platform.token);
    await api.deploy({ name: 'hello', image: await api.upload(hello, 'handler.js') });
    const res = await fetch(`${platform.url}/function/hello`);
    assert.equal(res.status, 200, await res.clone().text());
    await res.text();

    const r = await fn(platform, 'publish', 'orders.new', 'x');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /error: no NATS to publish to: cannot start a local NATS server: nats-server is not on PATH/);
    assert.match(r.stderr, /hint: apt-get install nats-server, or pass --nats nats:\/\/host:4222/);
    // A function with an event trigger is refused with the same hint, and nothing is deployed.
    await assert.rejects(api.deploy({ name: 'evented', image: await api.upload(fixture, 'handler.js'), triggers: [{ type: 'nats', subject: 'x' }] }), (err: { code?: string; hint?: string }) => {
      assert.equal(err.code, 'NOT_SUPPORTED');
      assert.match(err.hint ?? '', /apt-get install nats-server/);
      return true;
    });
    await assert.rejects(api.status('evented'), /not found|no function/i);
  });
});

describe('fn up killed with SIGKILL', () => {
  it('leaves no nats-server behind, and the next fn up on the same home keeps the JetStream store', async () => {
    const home = await newHome();
    const first = await startPlatform(home);
    const firstNats = await localNats(first);
    const pid = Number((await readFile(path.join(home, 'nats', 'nats-server.pid'), 'utf8')).trim());
    const nc = await connect({ servers: firstNats });
    await (await jetstreamManager(nc)).streams.add({ name: 'ORDERS', subjects: ['orders.>'] });
    await nc.close();

    await first.stop('SIGKILL');
    await waitFor(async () => (await processesWith(home)).length === 0, {
      timeoutMs: 10_000,
      what: `no process left on ${home} (nats-server was pid ${pid})`,
    }).catch(async (err: Error) => assert.fail(`${err.message}:\n${(await processesWith(home)).join('\n')}`));

    const second = await startPlatform(home);
    try {
      const again = await connect({ servers: await localNats(second) });
      try {
        const stream = await (await jetstreamManager(again)).streams.info('ORDERS');
        assert.deepEqual(stream.config.subjects, ['orders.>']);
      } finally {
        await again.close();
      }
    } finally {
      await second.stop();
    }
    assert.deepEqual(await processesWith(home), [], 'a stopped fn up leaves nothing running either');
  });
});
