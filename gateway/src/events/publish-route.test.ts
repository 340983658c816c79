// POST /system/events/publish through inject() on a stand-in NATS connection: what reaches NATS
// (subject, data, headers with their case), the reply's shape, and every refusal with its code.

import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { errors, headers as natsHeaders, NoRespondersError, TimeoutError, type Msg, type MsgHdrs, type NatsConnection } from '@nats-io/transport-node';
import { KubefnError } from '@kubefn/platform';
import { createGateway, type Gateway } from '../app.js';
import { MemoryDriver } from '../testing/memory-driver.js';

const token = 'secret';

/** The part of a NatsConnection the route uses, recording what it was asked. */
class FakeNats {
  readonly published: { subject: string; data: string; headers: [string, string[]][] }[] = [];
  readonly requests: { subject: string; data: string; timeout: number; headers: [string, string[]][] }[] = [];
  info = { max_payload: 64 };
  answer: (subject: string) => Promise<Msg> = async () => reply('ok');
  publish(subject: string, data: Uint8Array, options: { headers?: MsgHdrs }): void {
    this.published.push({ subject, data: Buffer.from(data).toString(), headers: [...(options.headers ?? [])] });
  }
  async flush(): Promise<void> {}
  async request(subject: string, data: Uint8Array, options: { timeout: number; headers?: MsgHdrs }): Promise<Msg> {
    this.requests.push({ subject, data: Buffer.from(data).toString(), timeout: options.timeout, headers: [...(options.headers ?? [])] });
    return this.answer(subject);
  }
  isClosed(): boolean {
    return false;
  }
  isDraining(): boolean {
    return false;
  }
}

function reply(data: string | Uint8Array, status?: number, extra: Record<string, string> = {}): Msg {
  const h = natsHeaders();
  if (status !== undefined) h.set('kubefn-status', String(status));
  for (const [k, v] of Object.entries(extra)) h.set(k, v);
  return { subject: '_INBOX.x', data: typeof data === 'string' ? new TextEncoder().encode(data) : data, headers: h } as unknown as Msg;
}

describe('POST /system/events/publish', () => {
  let gateway: Gateway | undefined;
  afterEach(async () => gateway?.close());

  const start = async (nats: NatsConnection | (() => Promise<NatsConnection>) | undefined, maxBodyBytes?: number) => {
    gateway = createGateway({ driver: new MemoryDriver(), token, ...(nats ? { nats } : {}), ...(maxBodyBytes ? { maxBodyBytes } : {}) });
    await gateway.app.ready();
    return gateway;
  };
  const post = (query: string, payload = '', auth = true) =>
    gateway!.app.inject({
      method: 'POST',
      url: `/system/events/publish?${query}`,
      headers: { 'content-type': 'application/octet-stream', ...(auth ? { authorization: `Bearer ${token}` } : {}) },
      payload,
    });

  it('publishes the body as the data, with headers named as given', async () => {
    const nats = new FakeNats();
    await start(nats as unknown as NatsConnection);
    const res = await post('subject=orders.new&header=Nats-Msg-Id:order-1&header=content-type:application/json', '{"id":1}');
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual(res.json(), { subject: 'orders.new', bytes: 8 });
    assert.deepEqual(nats.published, [
      { subject: 'orders.new', data: '{"id":1}', headers: [['Nats-Msg-Id', ['order-1']], ['content-type', ['application/json']]] },
    ]);
  });

  it('publishes an empty message without a body, and any content type as bytes', async () => {
    const nats = new FakeNats();
    await start(nats as unknown as NatsConnection);
    assert.equal((await gateway!.app.inject({ method: 'POST', url: '/system/events/publish?subject=a', headers: { authorization: `Bearer ${token}` } })).statusCode, 200);
    const res = await gateway!.app.inject({
      method: 'POST',
      url: '/system/events/publish?subject=b',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      payload: '{"not":"parsed"}',
    });
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual(nats.published.map((p) => [p.subject, p.data, p.headers]), [['a', '', []], ['b', '{"not":"parsed"}', []]]);
  });

  it('with reply=true answers with the reply: status from kubefn-status, headers, UTF-8 or base64 data', async () => {
    const nats = new FakeNats();
    await start(nats as unknown as NatsConnection);
    nats.answer = async () => reply('not here', 404, { 'content-type': 'text/plain' });
    let res = await post('subject=orders.get&reply=true&timeout=2s', 'x');
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual(res.json(), {
      subject: 'orders.get',
      status: 404,
      headers: { 'kubefn-status': ['404'], 'content-type': ['text/plain'] },
      data: 'not here',
      encoding: 'utf8',
    });
    assert.equal(nats.requests[0]!.timeout, 2000);
    nats.answer = async () => reply(new Uint8Array([0xff, 0x00, 0x80]));
    res = await post('subject=orders.get&reply=true');
    assert.deepEqual(res.json(), { subject: 'orders.get', headers: {}, data: Buffer.from([0xff, 0x00, 0x80]).toString('base64'), encoding: 'base64' });
    assert.equal(nats.requests[1]!.timeout, 10_000, 'the default timeout is 10s');
  });

  it('says when no reply came in time and when nothing subscribes', async () => {
    const nats = new FakeNats();
    await start(nats as unknown as NatsConnection);
    nats.answer = async () => {
      throw new TimeoutError();
    };
    let res = await post('subject=slow&reply=true&timeout=50ms');
    assert.equal(res.statusCode, 504);
    assert.equal(res.json().code, 'TIMEOUT');
    assert.match(res.json().message, /no reply on slow within 50 ms/);
    nats.answer = async (subject) => {
      throw new errors.RequestError('no responders', { cause: new NoRespondersError(subject) });
    };
    res = await post('subject=nobody&reply=true');
    assert.equal(res.statusCode, 503);
    assert.match(res.json().message, /nothing subscribes to nobody/);
    assert.match(res.json().hint, /nats trigger/);
  });

  const refusals: [string, string, number, string, RegExp][] = [
    ['a wildcard subject', 'subject=orders.*', 400, 'BAD_REQUEST', /no wildcard/],
    ['an empty token', 'subject=orders..new', 400, 'BAD_REQUEST', /none empty/],
    ['a header without a colon', 'subject=a&header=novalue', 400, 'BAD_REQUEST', /Name:Value/],
    ['a header name with a space', 'subject=a&header=bad%20name:v', 400, 'BAD_REQUEST', /Name:Value/],
    ['a timeout that is not a duration', 'subject=a&reply=true&timeout=soon', 400, 'BAD_REQUEST', /timeout must be a duration/],
    ['a timeout over 5m', 'subject=a&reply=true&timeout=6m', 400, 'BAD_REQUEST', /timeout must be a duration/],
    ['no subject', 'reply=true', 400, 'BAD_REQUEST', /subject/],
  ];
  for (const [what, query, status, code, message] of refusals) {
    it(`refuses ${what}`, async () => {
      const nats = new FakeNats();
      await start(nats as unknown as NatsConnection);
      const res = await post(query);
      assert.equal(res.statusCode, status, res.body);
      assert.equal(res.json().code, code);
      assert.match(res.json().message, message);
      assert.equal(nats.published.length + nats.requests.length, 0);
    });
  }

  it('refuses a message over the server\'s max_payload or the gateway\'s body limit', async () => {
    const nats = new FakeNats();
    await start(nats as unknown as NatsConnection, 100);
    let res = await post('subject=a', 'x'.repeat(65));
    assert.equal(res.statusCode, 413);
    assert.match(res.json().message, /over the NATS server's max_payload of 64/);
    res = await post('subject=a', 'x'.repeat(101));
    assert.equal(res.statusCode, 413);
    assert.equal(res.json().code, 'BODY_TOO_LARGE');
  });

  it('needs the management token', async () => {
    await start(new FakeNats() as unknown as NatsConnection);
    assert.equal((await post('subject=a', '', false)).statusCode, 401);
  });

  it('without NATS answers 501 with how to get one', async () => {
    await start(undefined);
    const res = await post('subject=a');
    assert.equal(res.statusCode, 501);
    assert.match(res.json().hint, /apt-get install nats-server/);
    assert.match(res.json().hint, /--nats/);
  });

  it('calls a connector when needed, again after it failed, and passes on why it failed', async () => {
    let calls = 0;
    await start(async () => {
      calls++;
      throw new KubefnError('NOT_SUPPORTED', 'cannot start a local NATS server: nats-server is not on PATH', { hint: 'apt-get install nats-server' });
    });
    for (let i = 0; i < 2; i++) {
      const res = await post('subject=a');
      assert.equal(res.statusCode, 501);
      assert.match(res.json().message, /no NATS to publish to: cannot start a local NATS server: nats-server is not on PATH/);
      assert.equal(res.json().hint, 'apt-get install nats-server');
    }
    assert.equal(calls, 2, 'a failure is not kept: nats-server may be installed since');
  });

  it('publishes on the connection a connector gives', async () => {
    const nats = new FakeNats();
    let calls = 0;
    await start(async () => {
      calls++;
      return nats as unknown as NatsConnection;
    });
    assert.equal((await post('subject=a', 'one')).statusCode, 200);
    assert.equal((await post('subject=a', 'two')).statusCode, 200);
    assert.deepEqual(nats.published.map((p) => p.data), ['one', 'two']);
    assert.equal(calls, 1);
  });
});
