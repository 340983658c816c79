// JetStream triggers end to end: a real nats-server with JetStream, `fn up --nats` in child
// processes, functions as real processes that record every call they get. At least once through
// a replica's SIGKILL and a gateway restart, retries with backoff then the dead-letter subject,
// scaling from zero and back, conflicts refused at deploy, NATS down at deploy and later, a chain
// through `output`, and one shared consumer across two gateways.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, cp, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { connect, headers as natsHeaders, type NatsConnection } from '@nats-io/transport-node';
import { AckPolicy, jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { waitFor } from '@kubefn/platform/testing';
import { Api } from '../support/api.js';
import { startNatsServer, type NatsServer } from '../support/nats-server.js';
import { fnBin, newHome, repoRoot, startPlatform, type RunningPlatform } from '../support/platform-process.js';

const exec = promisify(execFile);

const fixture = path.join(repoRoot, 'tests', 'fixtures', 'events');
const text = (s: string) => new TextEncoder().encode(s);

interface Call {
  id: string;
  delivery: number;
  pid: number;
  at: number;
}

async function calls(file: string): Promise<Call[]> {
  const lines = (await readFile(file, 'utf8').catch(() => '')).split('\n').filter(Boolean);
  return lines.map((l) => {
    const [id, delivery, pid, at] = l.split(' ');
    return { id: id!, delivery: Number(delivery), pid: Number(pid), at: Number(at) };
  });
}

interface EventsState {
  nats: { connected: boolean; error?: string };
  triggers: { type: string; ready: boolean; error?: string; pending?: number; deadLettered: number; retried: number; acked: number; lastError?: string }[];
}

const eventsOf = async (api: Api, name: string) => ((await api.ok('GET', `/system/function/${name}`)) as { events: EventsState }).events;

describe('jetstream triggers on the embedded platform', () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let js: JetStreamClient;
  let jsm: JetStreamManager;
  let home: string;
  /** Where functions write what they handled: open to every user, since each function runs as its own. */
  let records: string;
  let platform: RunningPlatform;
  /** An empty file every function may append to: functions of two platforms run as different users. */
  const recordFile = async (name: string) => {
    const file = path.join(records, name);
    await writeFile(file, '');
    await chmod(file, 0o666);
    return file;
  };
  let api: Api;
  let image: string;
  const extra: RunningPlatform[] = [];

  before(async () => {
    nats = await startNatsServer();
    nc = await connect({ servers: nats.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    js = jetstream(nc);
    jsm = await jetstreamManager(nc);
    home = await newHome();
    records = await mkdtemp(path.join(tmpdir(), 'kubefn-records-'));
    await chmod(records, 0o1777);
    platform = await startPlatform(home, { args: ['--nats', nats.url, '--max-body', '64Ki'] });
    api = new Api(platform.url, platform.token);
    image = await api.upload(fixture, 'handler.js');
  });
  after(async () => {
    for (const p of [platform, ...extra]) await p?.stop();
    await nc?.close();
    await nats?.close();
  });

  it('scales a function from zero for pending messages, handles each, and goes back to zero when drained', async () => {
    const record = await recordFile('zero.calls');
    await api.deploy({
      name: 'js-zero',
      image,
      env: { RECORD_FILE: record },
      scale: { initial: 0, stableWindow: '6s', scaleToZeroGrace: '0s' },
      triggers: [{ type: 'jetstream', stream: 'ZERO', subject: 'zero.>' }],
    });
    assert.equal((await api.status('js-zero')).replicas, 0);
    const published = [];
    for (let i = 0; i < 20; i++) published.push((await js.publish(`zero.${i}`, text(`m${i}`))).seq);
    await waitFor(async () => new Set((await calls(record)).map((c) => c.id)).size === 20, { timeoutMs: 60_000, what: '20 messages handled' });
    const ids = new Set((await calls(record)).map((c) => c.id));
    for (const seq of published) assert.ok(ids.has(`ZERO-${seq}`), `message ${seq} handled, its CloudEvent id the stream sequence`);
    await waitFor(async () => (await api.status('js-zero')).replicas === 0, { timeoutMs: 60_000, what: 'js-zero back to zero replicas once drained' });
    const state = await eventsOf(api, 'js-zero');
    assert.equal(state.triggers[0]?.ready, true);
    assert.equal(state.triggers[0]?.acked, 20);
    const metrics = await (await fetch(`${platform.url}/metrics`)).text();
    const labels = 'function="js-zero",trigger="jetstream:zero.>"';
    assert.match(metrics, new RegExp(`^kubefn_events_delivered_total\\{${labels}\\} 20$`, 'm'));
    assert.match(metrics, new RegExp(`^kubefn_events_acked_total\\{${labels}\\} 20$`, 'm'));
    assert.match(metrics, new RegExp(`^kubefn_events_latency_seconds_count\\{${labels}\\} 20$`, 'm'));
    assert.match(metrics, new RegExp(`^kubefn_events_consumer_lag\\{${labels}\\} 0$`, 'm'));
  });

  it('follows the backlog: pending messages per replica scale a function past what its concurrency asks', async () => {
    const record = await recordFile('backlog.calls');
    await api.deploy({
      name: 'js-backlog',
      image,
      env: { RECORD_FILE: record },
      scale: { initial: 0, max: 4, pendingTarget: 5, stableWindow: '6s', scaleToZeroGrace: '0s' },
      triggers: [{ type: 'jetstream', stream: 'BACKLOG', subject: 'backlog.in', maxInFlight: 2 }],
    });
    // Two calls in flight at most: concurrency alone asks for one replica (target 100).
    for (let i = 0; i < 80; i++) await js.publish('backlog.in', text('slow:150'));
    let most = 0;
    await waitFor(async () => {
      most = Math.max(most, (await api.status('js-backlog')).replicas);
      return most >= 2;
    }, { timeoutMs: 30_000, what: 'js-backlog scaled past one replica for its backlog' });
    await waitFor(async () => new Set((await calls(record)).map((c) => c.id)).size === 80, { timeoutMs: 60_000, what: '80 handled' });
    // Never more than maxInFlight calls at once from this gateway: every call takes at least
    // 150 ms, so the calls that started within 150 ms of one another all ran together.
    const starts = (await calls(record)).map((c) => c.at).sort((a, b) => a - b);
    const together = Math.max(...starts.map((t, i) => starts.slice(i).filter((u) => u < t + 150).length));
    assert.ok(together <= 2, `at most 2 calls at once (saw ${together})`);
    await waitFor(async () => (await api.status('js-backlog')).replicas === 0, { timeoutMs: 60_000, what: 'js-backlog back to zero once drained' });
  });

  it('retries a failing message with the trigger backoff, then dead-letters it with the error, subject and delivery count', async () => {
    const record = await recordFile('fail.calls');
    await api.deploy({
      name: 'js-fail',
      image,
      env: { RECORD_FILE: record },
      scale: { min: 1 },
      triggers: [{ type: 'jetstream', stream: 'FAIL', subject: 'fail.in', maxDeliver: 3, backoff: ['300ms', '600ms'], deadLetter: 'fail.dead' }],
    });
    const dead = nc.subscribe('fail.dead', { max: 1 });
    await nc.flush();
    const h = natsHeaders();
    h.set('trace', 'abc');
    const { seq } = await js.publish('fail.in', text('fail'), { headers: h });
    let letter: { data: string; headers: Record<string, string> } | undefined;
    for await (const m of dead) {
      const hs: Record<string, string> = {};
      for (const [k, v] of m.headers ?? []) hs[k.toLowerCase()] = v[0]!;
      letter = { data: new TextDecoder().decode(m.data), headers: hs };
    }
    assert.ok(letter);
    assert.equal(letter.data, 'fail');
    assert.equal(letter.headers['kubefn-subject'], 'fail.in');
    assert.equal(letter.headers['kubefn-deliveries'], '3');
    assert.equal(letter.headers['kubefn-status'], '500');
    assert.equal(letter.headers['kubefn-sequence'], String(seq));
    assert.equal(letter.headers['kubefn-function'], 'js-fail');
    assert.match(letter.headers['kubefn-error'] ?? '', /500.*failed on purpose/);
    assert.equal(letter.headers['trace'], 'abc', 'the original headers are kept');
    const tries = (await calls(record)).filter((c) => c.id === `FAIL-${seq}`);
    assert.deepEqual(tries.map((c) => c.delivery), [1, 2, 3]);
    assert.ok(tries[1]!.at - tries[0]!.at >= 300, `first retry after the first backoff (${tries[1]!.at - tries[0]!.at} ms)`);
    assert.ok(tries[2]!.at - tries[1]!.at >= 600, `second retry after the second backoff (${tries[2]!.at - tries[1]!.at} ms)`);
    const state = (await eventsOf(api, 'js-fail')).triggers[0]!;
    assert.equal(state.deadLettered, 1);
    assert.equal(state.retried, 2);
    assert.match(state.lastError ?? '', /500/);
  });

  it('dead-letters a message over the body limit without running the function', async () => {
    const record = await recordFile('big.calls');
    await api.deploy({ name: 'js-big', image, env: { RECORD_FILE: record }, scale: { min: 1 }, triggers: [{ type: 'jetstream', stream: 'BIG', subject: 'big.in', deadLetter: 'big.dead' }] });
    const dead = nc.subscribe('big.dead', { max: 1 });
    await nc.flush();
    await js.publish('big.in', new Uint8Array(100 * 1024));
    await js.publish('big.in', text('small'));
    for await (const m of dead) {
      assert.equal(m.data.length, 100 * 1024);
      assert.equal(m.headers?.get('kubefn-status'), '413');
      assert.match(m.headers?.get('kubefn-error') ?? '', /over the function's body limit of 65536 bytes/);
    }
    await waitFor(async () => (await calls(record)).length === 1, { timeoutMs: 30_000, what: 'the small message handled' });
    assert.equal((await calls(record)).length, 1, 'the big one never reached the function');
  });

  it('refuses, at deploy, a stream that exists with other subjects and a consumer that exists with other settings, naming both', async () => {
    await jsm.streams.add({ name: 'OTHER', subjects: ['other.>'] });
    await assert.rejects(api.deploy({ name: 'js-conflict', image, triggers: [{ type: 'jetstream', stream: 'OTHER', subject: 'mine.x' }] }), (err: { code?: string; message?: string }) => {
      assert.equal(err.code, 'CONFLICT');
      assert.match(err.message ?? '', /stream "OTHER" exists with subjects \["other\.>"\].*"mine\.x"/);
      return true;
    });
    await jsm.consumers.add('OTHER', { durable_name: 'taken', ack_policy: AckPolicy.Explicit, filter_subject: 'other.a', ack_wait: 5_000_000_000 });
    await assert.rejects(api.deploy({ name: 'js-conflict', image, triggers: [{ type: 'jetstream', stream: 'OTHER', subject: 'other.a', durable: 'taken' }] }), (err: { code?: string; message?: string }) => {
      assert.equal(err.code, 'CONFLICT');
      assert.match(err.message ?? '', /consumer "taken" on stream "OTHER" exists with .*ack wait 5000 ms \(the trigger's: 30000 ms\).*not made by kubefn/);
      return true;
    });
    await assert.rejects(api.status('js-conflict'), /no function|404|not found/i);
    assert.deepEqual((await jsm.streams.info('OTHER')).config.subjects, ['other.>'], 'the stream is unchanged');
  });

  it('chains two functions through an output subject stored by the second one\'s stream', async () => {
    await api.deploy({ name: 'js-step1', image, triggers: [{ type: 'jetstream', stream: 'CHAIN_IN', subject: 'chain.in', output: 'chain.mid' }] });
    await api.deploy({ name: 'js-step2', image, triggers: [{ type: 'jetstream', stream: 'CHAIN_MID', subject: 'chain.mid', output: 'chain.out' }] });
    const out = nc.subscribe('chain.out', { max: 1 });
    await nc.flush();
    await js.publish('chain.in', text('{"chain":1}'));
    for await (const m of out) assert.deepEqual(JSON.parse(new TextDecoder().decode(m.data)), { chain: 3, function: 'js-step2' });
    assert.equal((await jsm.streams.info('CHAIN_MID')).state.messages >= 0, true);
  });

  it('processes 1,000 messages at least once through a replica SIGKILL and a gateway restart', async () => {
    const record = await recordFile('many.calls');
    await api.deploy({
      name: 'js-many',
      image,
      env: { RECORD_FILE: record },
      scale: { min: 1 },
      triggers: [{ type: 'jetstream', stream: 'MANY', subject: 'many.in', ackWait: '3s', maxDeliver: 20, maxInFlight: 32 }],
    });
    const total = 1000;
    const seqs: number[] = [];
    const publishing = (async () => {
      for (let i = 0; i < total; i++) {
        seqs.push((await js.publish('many.in', text(i % 10 === 0 ? 'slow:20' : `m${i}`))).seq);
      }
    })();
    // SIGKILL the replica once it has handled some.
    await waitFor(async () => (await calls(record)).length >= 150, { timeoutMs: 60_000, what: '150 handled before the kill' });
    const victim = (await calls(record)).at(-1)!.pid;
    process.kill(victim, 'SIGKILL');
    // Restart the gateway (fn up) once midway: same home, functions come back.
    await waitFor(async () => (await calls(record)).length >= 500, { timeoutMs: 120_000, what: '500 handled before the restart' });
    await platform.stop();
    platform = await startPlatform(home, { args: ['--nats', nats.url, '--max-body', '64Ki'] });
    api = new Api(platform.url, platform.token);
    await publishing;
    const want = new Set(seqs.map((s) => `MANY-${s}`));
    await waitFor(async () => {
      const seen = new Set((await calls(record)).map((c) => c.id));
      return [...want].every((id) => seen.has(id));
    }, { timeoutMs: 180_000, what: `all ${total} messages handled` });
    const all = await calls(record);
    const duplicates = all.length - new Set(all.map((c) => c.id)).size;
    console.log(`# 1,000 messages through a SIGKILL and a restart: ${all.length} calls, ${duplicates} duplicates, ${new Set(all.map((c) => c.pid)).size} replicas`);
    assert.equal(new Set(all.map((c) => c.id)).size, total, 'every message handled, none lost');
    assert.ok(all.some((c) => c.pid !== victim), 'a new replica took over');
    assert.ok(duplicates < total, 'duplicates are the exception (counted above)');
  });

  it('deploys with NATS down, reports the trigger not ready, and consumes once NATS is back; reconnects after a later outage', async () => {
    const record = await recordFile('down.calls');
    await nats.stop();
    try {
      await api.deploy({ name: 'js-down', image, env: { RECORD_FILE: record }, scale: { min: 1 }, triggers: [{ type: 'http' }, { type: 'jetstream', stream: 'DOWN', subject: 'down.in' }] });
      const res = await fetch(`${platform.url}/function/js-down`, { method: 'POST', body: 'over http' });
      assert.equal(res.status, 200, 'HTTP works while NATS is down');
      const state = await eventsOf(api, 'js-down');
      assert.equal(state.nats.connected, false);
      assert.match(state.nats.error ?? '', /disconnected/);
      assert.equal(state.triggers[0]?.ready ?? false, false);
    } finally {
      await nats.start();
    }
    await waitFor(async () => (await eventsOf(api, 'js-down')).triggers[0]?.ready === true, { timeoutMs: 30_000, what: 'the trigger ready once NATS is back' });
    await waitFor(async () => {
      await js.publish('down.in', text('after')).catch(() => undefined);
      return (await calls(record)).length >= 1;
    }, { timeoutMs: 30_000, what: 'a message handled after NATS came back' });
    await nats.stop();
    await waitFor(async () => (await eventsOf(api, 'js-down')).nats.connected === false, { timeoutMs: 15_000, what: 'the outage seen' });
    await nats.start();
    const before = (await calls(record)).length;
    await waitFor(async () => {
      await js.publish('down.in', text('again')).catch(() => undefined);
      return (await calls(record)).length > before;
    }, { timeoutMs: 30_000, what: 'consuming again after the second outage' });
    assert.equal((await eventsOf(api, 'js-down')).nats.connected, true);
  });

  // Before a second platform joins this NATS: platforms on one NATS share the async queue.
  it('runs an async invocation and posts its result to the callback URL, OpenFaaS style', async () => {
    await api.deploy({ name: 'js-async', image, triggers: [{ type: 'http' }] });
    const received: { headers: Record<string, string | string[] | undefined>; body: string }[] = [];
    const callbacks = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        received.push({ headers: req.headers, body });
        res.end();
      });
    });
    await new Promise<void>((resolve) => callbacks.listen(0, '127.0.0.1', resolve));
    try {
      const port = (callbacks.address() as AddressInfo).port;
      const res = await fetch(`${platform.url}/async-function/js-async`, { method: 'POST', body: 'later', headers: { 'x-callback-url': `http://127.0.0.1:${port}/done` } });
      assert.equal(res.status, 202, await res.clone().text());
      const callId = res.headers.get('x-call-id');
      assert.ok(callId);
      await waitFor(() => received.length === 1, { timeoutMs: 60_000, what: 'the callback' });
      const cb = received[0]!;
      assert.equal(cb.headers['x-call-id'], callId);
      assert.equal(cb.headers['x-function-status'], '200');
      assert.equal(cb.headers['x-function-name'], 'js-async');
      assert.ok(Number(cb.headers['x-duration-seconds']) > 0);
      assert.equal((JSON.parse(cb.body) as { body: string }).body, 'later');
      const missing = await fetch(`${platform.url}/async-function/nope`, { method: 'POST', body: 'x' });
      assert.equal(missing.status, 404);
      await missing.text();
    } finally {
      callbacks.close();
    }
  });

  it('shares one consumer between two gateways: each message handled once, both gateways used', async () => {
    const record = await recordFile('shared.calls');
    const second = await startPlatform(await newHome(), { args: ['--nats', nats.url] });
    extra.push(second);
    const api2 = new Api(second.url, second.token);
    const spec = { name: 'js-shared', env: { RECORD_FILE: record }, scale: { min: 1 }, triggers: [{ type: 'jetstream' as const, stream: 'SHARED', subject: 'shared.in', maxInFlight: 4 }] };
    await api.deploy({ ...spec, image });
    await api2.deploy({ ...spec, image: await api2.upload(fixture, 'handler.js') });
    await waitFor(async () => (await Promise.all([api, api2].map((a) => a.status('js-shared')))).every((f) => f.availableReplicas >= 1), { timeoutMs: 60_000, what: 'a ready replica on both' });
    const total = 200;
    for (let i = 0; i < total; i++) await js.publish('shared.in', text('slow:10'));
    await waitFor(async () => new Set((await calls(record)).map((c) => c.id)).size === total, { timeoutMs: 60_000, what: `${total} handled` });
    const all = await calls(record);
    assert.equal(all.length, total, 'no message handled twice');
    // A call is recorded by the handler before its answer reaches the gateway, which acks after
    // it: the last acks may come a moment after the last record.
    const acked = () => Promise.all([api, api2].map(async (a) => (await eventsOf(a, 'js-shared')).triggers[0]!.acked));
    let here: number[] = [];
    await waitFor(async () => (here = await acked())[0]! + here[1]! >= total, { timeoutMs: 30_000, what: `the gateways' acks to add up to ${total}` });
    assert.equal(here[0]! + here[1]!, total, `the gateways' acks add up (${here.join(' + ')}), none twice`);
    assert.ok(here[0]! > 0 && here[1]! > 0, `both gateways took messages (${here.join(' + ')})`);
  });

  it('runs the orders -> receipts example chain deployed with fn deploy', async () => {
    const env = { ...process.env, KUBEFN_HOME: home, KUBEFN_GATEWAY: platform.url };
    const fn = (...args: string[]) => exec(process.execPath, [fnBin, ...args], { env, timeout: 120_000 });
    const work = await mkdtemp(path.join(tmpdir(), 'kubefn-examples-'));
    for (const example of ['orders', 'receipts']) {
      await cp(path.join(repoRoot, 'examples', example), path.join(work, example), { recursive: true });
      await fn('deploy', path.join(work, example));
    }
    await js.publish('orders.new', text(JSON.stringify({ id: 41, items: [{ sku: 'tea', qty: 2, price: 3.5 }, { sku: 'cup', qty: 1, price: 4 }] })));
    await waitFor(async () => (await fn('logs', 'receipts')).stdout.includes('receipt: order 41, 2 item(s), total 11.00'), { timeoutMs: 60_000, what: 'the receipt in fn logs receipts' });
    const described = (await fn('describe', 'orders')).stdout;
    assert.match(described, /^NATS:\s+connected/m);
    assert.match(described, /#1 jetstream orders\.new: consuming; \d+ pending.*here: 1 delivered, 1 acked/);
  });

  it('fires a cron trigger once per tick with two gateways', async () => {
    const record = await recordFile('cron.calls');
    const api2 = new Api(extra[0]!.url, extra[0]!.token);
    const spec = { name: 'ticker', env: { RECORD_FILE: record }, scale: { min: 1 }, triggers: [{ type: 'cron' as const, schedule: '@every 1s', body: 'tick' }] };
    await api.deploy({ ...spec, image });
    await api2.deploy({ ...spec, image: await api2.upload(fixture, 'handler.js') });
    // Counted once both replicas are ready: a tick that waits for a replica to start may pass up the next one, by design.
    await waitFor(async () => (await Promise.all([api, api2].map((a) => a.status('ticker')))).every((f) => f.availableReplicas >= 1), { timeoutMs: 60_000, what: 'a ready replica on both' });
    const from = Date.now() + 1000;
    await waitFor(async () => (await calls(record)).filter((c) => c.at >= from).length >= 6, { timeoutMs: 60_000, what: '6 ticks' });
    await api.ok('DELETE', '/system/functions', { functionName: 'ticker' });
    await api2.ok('DELETE', '/system/functions', { functionName: 'ticker' });
    const ticks = (await calls(record)).filter((c) => c.at >= from).map((c) => Number(c.id.split('.').at(-1)));
    assert.equal(new Set(ticks).size, ticks.length, `each tick fired once (${ticks.join(', ')})`);
    const sorted = [...ticks].sort((a, b) => a - b);
    for (let i = 1; i < sorted.length; i++) assert.equal(sorted[i]! - sorted[i - 1]!, 1000, 'no tick skipped between the first and the last');
  });
});
