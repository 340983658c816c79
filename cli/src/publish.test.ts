// `fn publish`: what the arguments become on the wire (subject, data, headers, reply, timeout),
// how a reply is printed, and the usage errors, against a stand-in gateway (an injected fetch).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { main } from './main.js';
import { memoryIo } from './testing.js';

interface Sent {
  url: URL;
  method: string;
  headers: Headers;
  body: string;
}

/** Runs `fn publish ...` with fetch answering `answer`; returns what was sent and printed. */
async function publish(args: string[], answer: { status?: number; body: unknown }, stdin?: string) {
  const sent: Sent[] = [];
  const io = {
    ...memoryIo({ env: { KUBEFN_GATEWAY: 'http://gw.test:8080', KUBEFN_TOKEN: 'tok' }, ...(stdin !== undefined ? { stdin } : {}) }),
    fetch: (async (url: string, init: RequestInit) => {
      const body = init.body instanceof Uint8Array ? Buffer.from(init.body).toString('utf8') : String(init.body ?? '');
      sent.push({ url: new URL(url), method: init.method ?? 'GET', headers: new Headers(init.headers), body });
      return new Response(JSON.stringify(answer.body), { status: answer.status ?? 200, headers: { 'content-type': 'application/json' } });
    }) as typeof fetch,
  };
  const code = await main(['node', 'fn', 'publish', ...args], io);
  return { code, sent, out: io.out(), err: io.err() };
}

describe('fn publish', () => {
  it('sends the subject, the data and the headers (case kept) to the gateway with the token', async () => {
    const r = await publish(['orders.new', '{"id":1}', '--header', 'Nats-Msg-Id=order-1', '--header', 'content-type=application/json'], {
      body: { subject: 'orders.new', bytes: 8 },
    });
    assert.equal(r.code, 0, r.err);
    assert.equal(r.sent.length, 1);
    const [s] = r.sent;
    assert.equal(s!.method, 'POST');
    assert.equal(s!.url.origin + s!.url.pathname, 'http://gw.test:8080/system/events/publish');
    assert.equal(s!.url.searchParams.get('subject'), 'orders.new');
    assert.deepEqual(s!.url.searchParams.getAll('header'), ['Nats-Msg-Id:order-1', 'content-type:application/json']);
    assert.equal(s!.url.searchParams.get('reply'), null);
    assert.equal(s!.url.searchParams.get('timeout'), '10s');
    assert.equal(s!.headers.get('authorization'), 'Bearer tok');
    assert.equal(s!.body, '{"id":1}');
    assert.equal(r.out, '');
    assert.match(r.err, /published 8 bytes to orders.new/);
  });

  it('reads the data from stdin with -, and sends an empty message without data', async () => {
    let r = await publish(['logs.raw', '-'], { body: { subject: 'logs.raw', bytes: 6 } }, 'line 1\n');
    assert.equal(r.code, 0, r.err);
    assert.equal(r.sent[0]!.body, 'line 1\n');
    r = await publish(['ping'], { body: { subject: 'ping', bytes: 0 } });
    assert.equal(r.code, 0, r.err);
    assert.equal(r.sent[0]!.body, '');
  });

  it('with --reply asks for the reply within --timeout and prints its data', async () => {
    const r = await publish(['orders.get', '7', '--reply', '--timeout', '1m30s'], {
      body: { subject: 'orders.get', status: 200, headers: { 'kubefn-status': ['200'] }, data: '{"id":7}', encoding: 'utf8' },
    });
    assert.equal(r.code, 0, r.err);
    assert.equal(r.sent[0]!.url.searchParams.get('reply'), 'true');
    assert.equal(r.sent[0]!.url.searchParams.get('timeout'), '1m30s');
    assert.equal(r.out, '{"id":7}');
    assert.equal(r.err, '');
  });

  it('prints base64 reply data as the bytes it stands for', async () => {
    const bytes = Buffer.from([0xff, 0x00, 0x41]);
    const r = await publish(['blob', '--reply'], { body: { subject: 'blob', headers: {}, data: bytes.toString('base64'), encoding: 'base64' } });
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, bytes.toString('utf8'));
  });

  it('reports a reply status other than 200, and exits 1 outside 2xx', async () => {
    let r = await publish(['orders.get', '--reply'], { body: { subject: 'orders.get', status: 500, headers: {}, data: 'boom', encoding: 'utf8' } });
    assert.equal(r.code, 1);
    assert.equal(r.out, 'boom');
    assert.match(r.err, /kubefn-status: 500/);
    r = await publish(['orders.get', '--reply'], { body: { subject: 'orders.get', status: 202, headers: {}, data: '', encoding: 'utf8' } });
    assert.equal(r.code, 0);
    assert.match(r.err, /kubefn-status: 202/);
  });

  it('prints the gateway\'s answer with --json', async () => {
    const answer = { subject: 'orders.get', status: 200, headers: { a: ['1'] }, data: 'x', encoding: 'utf8' };
    const r = await publish(['orders.get', '--reply', '--json'], { body: answer });
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(JSON.parse(r.out), answer);
  });

  it('says why the gateway could not publish, with its hint', async () => {
    const r = await publish(['orders.new', 'x'], {
      status: 501,
      body: { code: 'NOT_SUPPORTED', message: 'this gateway has no NATS server to publish to', hint: 'apt-get install nats-server' },
    });
    assert.equal(r.code, 1);
    assert.match(r.err, /error: this gateway has no NATS server to publish to\nhint: apt-get install nats-server/);
  });

  const usage: [string[], RegExp][] = [
    [['orders.*', 'x'], /subject is a subject to publish to, so it takes no wildcard/],
    [['orders..new'], /subject must be tokens separated by single dots/],
    [['a', '--header', 'novalue'], /--header expects name=value, got "novalue"/],
    [['a', '--header', 'bad:name=v'], /--header name must be printable ASCII without spaces or ":"/],
    [['a', '--reply', '--timeout', 'soon'], /--timeout must be a duration/],
    [['a', '--reply', '--timeout', '6m'], /--timeout must be from 1ms to 5m/],
    [[], /missing required argument 'subject'/],
    [['a', 'b', 'c'], /too many arguments/],
  ];
  for (const [args, message] of usage) {
    it(`refuses fn publish ${args.join(' ')} (exit 2) without calling the gateway`, async () => {
      const r = await publish(args, { body: {} });
      assert.equal(r.code, 2, r.err);
      assert.match(r.err, message);
      assert.equal(r.sent.length, 0);
    });
  }
});
