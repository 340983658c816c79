// Core NATS triggers end to end: a real nats-server, `fn up --nats` in child processes, functions
// as real processes. A message becomes a binary-mode CloudEvent through the gateway's invoke
// path (scaling from zero included), its result goes to the trigger's output subject or back as
// the reply; a queue group across two gateways delivers each message once.

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { waitFor } from '@kubefn/platform/testing';
import { Api } from '../support/api.js';
import { startNatsServer, type NatsServer } from '../support/nats-server.js';
import { newHome, repoRoot, startPlatform, type RunningPlatform } from '../support/platform-process.js';

const fixture = path.join(repoRoot, 'tests', 'fixtures', 'events');

interface Echo {
  function: string;
  pid: number;
  event: { id: string; type: string; source: string; subject: string; specversion: string };
  contentType: string;
  body: string;
}

const decode = (data: Uint8Array): Echo => JSON.parse(new TextDecoder().decode(data)) as Echo;

describe('nats triggers on the embedded platform', () => {
  let nats: NatsServer;
  let client: NatsConnection;
  const platforms: RunningPlatform[] = [];
  const apis: Api[] = [];

  before(async () => {
    nats = await startNatsServer();
    client = await connect({ servers: nats.url });
    for (let i = 0; i < 2; i++) {
      const platform = await startPlatform(await newHome(), { args: ['--nats', nats.url] });
      platforms.push(platform);
      apis.push(new Api(platform.url, platform.token));
    }
  });
  after(async () => {
    for (const p of platforms) await p.stop();
    await client?.close();
    await nats?.close();
  });

  it('delivers a message as a CloudEvent, from zero replicas, and publishes the result to the output subject', async () => {
    const api = apis[0]!;
    const image = await api.upload(fixture, 'handler.js');
    await api.deploy({ name: 'echo', image, scale: { initial: 0 }, triggers: [{ type: 'http' }, { type: 'nats', subject: 'orders.*', output: 'audit.echo' }] });
    const results = client.subscribe('audit.echo', { max: 1 });
    await client.flush();
    client.publish('orders.created', new TextEncoder().encode('{"id":7}'));
    let result: Echo | undefined;
    for await (const m of results) result = decode(m.data);
    assert.ok(result, 'a result on the output subject');
    assert.equal(result.function, 'echo');
    assert.equal(result.body, '{"id":7}');
    assert.deepEqual(
      { type: result.event.type, source: result.event.source, subject: result.event.subject, specversion: result.event.specversion },
      { type: 'dev.kubefn.nats.message', source: 'nats://orders.created', subject: 'orders.created', specversion: '1.0' },
    );
    assert.ok(result.event.id);
    assert.equal(result.contentType, 'application/octet-stream');
  });

  it('answers a request with the function response, its status in a header', async () => {
    const ok = await client.request('orders.asked', new TextEncoder().encode('ping'), { timeout: 30_000 });
    assert.equal(ok.headers?.get('kubefn-status'), '200');
    assert.equal(decode(ok.data).body, 'ping');
    const failed = await client.request('orders.asked', new TextEncoder().encode('fail'), { timeout: 30_000 });
    assert.equal(failed.headers?.get('kubefn-status'), '500');
  });

  it('turns a structured CloudEvent message into binary mode, keeping its attributes', async () => {
    const structured = JSON.stringify({ specversion: '1.0', id: 'evt-42', type: 'com.example.order', source: '/shop', datacontenttype: 'application/json', data: { id: 42 } });
    const h = (await import('@nats-io/transport-node')).headers();
    h.set('content-type', 'application/cloudevents+json');
    const reply = decode((await client.request('orders.structured', new TextEncoder().encode(structured), { timeout: 30_000, headers: h })).data);
    assert.deepEqual({ id: reply.event.id, type: reply.event.type, source: reply.event.source }, { id: 'evt-42', type: 'com.example.order', source: '/shop' });
    assert.equal(reply.contentType, 'application/json');
    assert.deepEqual(JSON.parse(reply.body), { id: 42 });
  });

  it('a queue group across two gateways handles each message once', async () => {
    for (const api of apis) {
      const image = await api.upload(fixture, 'handler.js');
      await api.deploy({ name: 'worker', image, scale: { min: 1 }, triggers: [{ type: 'nats', subject: 'jobs', queue: 'workers', output: 'jobs-done' }] });
    }
    // Each gateway subscribed when its deploy returned; with a ready replica on each, the queue
    // group spreads the messages over both.
    await waitFor(async () => (await Promise.all(apis.map((a) => a.client.getFunction('worker')))).every((f) => f.availableReplicas >= 1), {
      timeoutMs: 60_000,
      what: 'a ready worker on both platforms',
    });
    const done = client.subscribe('jobs-done');
    await client.flush();
    const count = 60;
    for (let i = 0; i < count; i++) client.publish('jobs', new TextEncoder().encode(`job-${i}`));
    const seen: Echo[] = [];
    const reading = (async () => {
      for await (const m of done) {
        seen.push(decode(m.data));
        if (seen.length === count) break;
      }
    })();
    await waitFor(() => seen.length >= count, { timeoutMs: 60_000, what: `${count} results` });
    await reading;
    // No more than one result per message: wait for the server to have sent anything else.
    await client.flush();
    done.unsubscribe();
    const bodies = seen.map((e) => e.body).sort();
    assert.equal(new Set(bodies).size, count, 'every job handled once');
    assert.equal(bodies.length, count, 'no job handled twice');
    assert.equal(new Set(seen.map((e) => e.pid)).size, 2, 'both gateways took part');
  });

  it('refuses nats triggers on a platform without NATS, and --nats without a server says so', async () => {
    // Without --nats, `fn up` would start its own nats-server: --no-nats is a platform without NATS.
    const plain = await startPlatform(await newHome(), { args: ['--no-nats'] });
    try {
      const api = new Api(plain.url, plain.token);
      const image = await api.upload(fixture, 'handler.js');
      await assert.rejects(api.deploy({ name: 'evented', image, triggers: [{ type: 'nats', subject: 'x' }] }), (err: { code?: string; hint?: string }) => {
        assert.equal(err.code, 'NOT_SUPPORTED');
        assert.match(err.hint ?? '', /--nats/);
        return true;
      });
    } finally {
      await plain.stop();
    }
    await assert.rejects(startPlatform(await newHome(), { args: ['--nats', 'nats://127.0.0.1:1'] }), /cannot connect to NATS at nats:\/\/127\.0\.0\.1:1/);
  });
});
