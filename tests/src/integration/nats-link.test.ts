// The cluster gateway's NATS link against real nats-servers: no server or a server that is down
// is a rejection that says why (logged once, not on every try) and the next call tries again; a
// server that moves (the NATS pod back with another address) is followed through the server
// list; every change is logged; close() drains.

import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { createLogger, NatsLink, type NatsServers } from '@kubefn/server';
import { waitFor } from '@kubefn/platform/testing';
import { startNatsServer, type NatsServer } from '../support/nats-server.js';

interface Line {
  level: string;
  msg: string;
  [key: string]: unknown;
}

function recorder() {
  const lines: Line[] = [];
  const log = createLogger({ level: 'info', destination: { write: (line: string) => lines.push(JSON.parse(line) as Line) } });
  return { log, lines, said: (re: RegExp) => lines.filter((l) => re.test(l.msg)) };
}

/** A server list a test moves by hand, as the EndpointSlices of the NATS Service would. */
function movable(initial: string[]) {
  let list = initial;
  const listeners: (() => void)[] = [];
  const servers: NatsServers = { what: 'the test list', list: () => list, onChange: (l) => listeners.push(l) };
  return {
    servers,
    move(to: string[]) {
      list = to;
      for (const l of listeners) l();
    },
  };
}

const hostPort = (url: string) => url.replace('nats://', '');

describe('NatsLink', () => {
  const servers: NatsServer[] = [];
  after(async () => {
    for (const s of servers) await s.close();
  });

  it('with no server listed, rejects saying so, logs it once, and connects when one appears', async () => {
    const rec = recorder();
    const list = movable([]);
    const link = new NatsLink({ servers: list.servers, log: rec.log });
    await assert.rejects(link.connection(), /no NATS server: the test list has no ready server/);
    await assert.rejects(link.connection(), /no ready server/);
    assert.equal(rec.said(/no ready server/).length, 1, 'a NATS that stays away is said once');
    const nats = await startNatsServer();
    servers.push(nats);
    list.move([hostPort(nats.url)]);
    const nc = await link.connection();
    assert.equal(nc.getServer(), hostPort(nats.url));
    assert.equal(await link.connection(), nc, 'one connection, made once');
    assert.equal(rec.said(/^connected to NATS$/).length, 1);
    await link.close();
    assert.ok(nc.isClosed());
    await link.close();
    await assert.rejects(link.connection(), /stopping/);
  });

  it('a server that is down is a rejection naming it; once it is up the next call connects', async () => {
    const rec = recorder();
    const nats = await startNatsServer();
    servers.push(nats);
    await nats.stop();
    const link = new NatsLink({ servers: movable([nats.url]).servers, log: rec.log, timeoutMs: 2000 });
    await assert.rejects(link.connection(), (err: Error) => err.message.includes(`cannot connect to NATS at ${nats.url} (the test list)`));
    await nats.start();
    const nc = await link.connection();
    assert.ok(!nc.isClosed());
    await link.close();
  });

  it('follows the server to a new address, reconnecting for ever, and logs each change', async () => {
    const rec = recorder();
    const a = await startNatsServer();
    const b = await startNatsServer();
    servers.push(a, b);
    const list = movable([hostPort(a.url)]);
    const link = new NatsLink({ servers: list.servers, log: rec.log, reconnectWaitMs: 200 });
    const nc = await link.connection();
    assert.equal(nc.getServer(), hostPort(a.url));
    // The server goes, and comes back elsewhere; the client keeps trying the old address meanwhile.
    await a.stop();
    await waitFor(() => rec.said(/disconnected from NATS/).length > 0, { timeoutMs: 10_000, what: 'the disconnect logged' });
    await new Promise((r) => setTimeout(r, 1000));
    assert.ok(!nc.isClosed(), 'still trying after several failed attempts');
    list.move([hostPort(b.url)]);
    assert.equal(rec.said(/NATS servers changed/).length, 1);
    await waitFor(() => nc.getServer() === hostPort(b.url) && !nc.isClosed() && rec.said(/reconnected to NATS/).length > 0, {
      timeoutMs: 15_000,
      what: 'the connection on the new server',
    });
    // The same connection works there.
    const sub = nc.subscribe('link.test', { max: 1 });
    nc.publish('link.test', 'hi');
    for await (const m of sub) assert.equal(m.string(), 'hi');
    assert.equal(await link.connection(), nc);
    await link.close();
    assert.ok(rec.said(/the NATS connection closed/).length >= 1);
  });
});
