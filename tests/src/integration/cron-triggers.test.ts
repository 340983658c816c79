// Cron triggers against a real nats-server with JetStream: several CronTriggers, each on its own
// connection like a gateway of its own, fire each tick exactly once between them; a restart
// neither refires nor replays ticks; a 2xx result is published, CloudEvent headers are set; with
// NATS gone no tick fires, and firing resumes when it is back; time zones are honoured.
//
// The function is a recording `invoke`. Waiting for ticks to pass is inherently time-based, so the
// schedules are "@every 1s" and each wait is for a condition, with a deadline.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Cron } from 'croner';
import { Kvm } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { CronTriggers, cronEventType, type CronTriggersOptions, type EventCall, type EventResult } from '@kubefn/gateway';
import { parseFunctionSpec, type FunctionSpec, type TriggerSpec } from '@kubefn/platform';
import { waitFor } from '@kubefn/platform/testing';
import { startNatsServer, type NatsServer } from '../support/nats-server.js';

interface Call extends EventCall {
  /** Which CronTriggers made it. */
  by: string;
  /** When the call arrived, Unix ms. */
  at: number;
  /** The tick it is for, Unix ms, read from its ce-id. */
  tick: number;
  /** When the answer was given, Unix ms. */
  end?: number;
}

interface Published {
  subject: string;
  body: string;
  headers: Record<string, string>;
}

type Answer = (call: EventCall) => Promise<Partial<EventResult>>;

const spec = (name: string, ...triggers: TriggerSpec[]): FunctionSpec => parseFunctionSpec({ name, triggers });
const everySecond = (extra: Partial<TriggerSpec> = {}): TriggerSpec => ({ type: 'cron', schedule: '@every 1s', ...extra });

describe('cron triggers across gateways', () => {
  let nats: NatsServer;
  const connections: NatsConnection[] = [];
  const running: CronTriggers[] = [];
  /** Every call of every function, in arrival order. */
  const calls: Call[] = [];
  const published: Published[] = [];
  const warnings: string[] = [];

  /** A gateway: its own connection, and an invoke that records each call and answers `answer`. */
  async function gateway(by: string, answer: Answer = async () => ({}), options: Partial<CronTriggersOptions> = {}): Promise<CronTriggers> {
    const connection = await connect({ servers: nats.url, maxReconnectAttempts: -1, reconnectTimeWait: 200 });
    connections.push(connection);
    const triggers = new CronTriggers({
      connection,
      invoke: async (call) => {
        const recorded: Call = { ...call, by, at: Date.now(), tick: Number(/\.(\d+)$/.exec(call.headers['ce-id'] ?? '')?.[1]) };
        calls.push(recorded);
        const res = await answer(call).finally(() => (recorded.end = Date.now()));
        return { status: 200, headers: {}, body: Buffer.alloc(0), code: undefined, ms: 1, ...res };
      },
      output: async (subject, body, headers) => {
        published.push({ subject, body: body.toString(), headers });
      },
      onWarning: (message) => {
        if (warnings.length < 1000) warnings.push(`${by}: ${message}`);
      },
      ...options,
    });
    running.push(triggers);
    return triggers;
  }

  const callsOf = (name: string): Call[] => calls.filter((c) => c.name === name);

  /** Ticks must be whole seconds apart, one after the other, none twice. */
  function assertConsecutive(ticks: number[]): void {
    assert.equal(new Set(ticks).size, ticks.length, `no tick fired twice: ${ticks.join(', ')}`);
    for (let k = 1; k < ticks.length; k++) assert.equal(ticks[k]! - ticks[k - 1]!, 1000, `ticks ${ticks.join(', ')} are consecutive seconds`);
  }

  before(async () => {
    nats = await startNatsServer();
  });
  after(async () => {
    for (const t of running) await t.close();
    for (const c of connections) await c.close().catch(() => {});
    await nats?.close();
  });

  it('two gateways fire each tick exactly once between them', async () => {
    const a = await gateway('a');
    const b = await gateway('b');
    const fn = spec('tick', { type: 'http' }, everySecond());
    await Promise.all([a.sync([fn]), b.sync([fn])]);
    const started = Date.now();
    await waitFor(() => callsOf('tick').length >= 4, { timeoutMs: 10_000, what: '4 ticks of "tick"' });
    await Promise.all([a.close(), b.close()]);

    const mine = callsOf('tick');
    const ticks = mine.map((c) => c.tick);
    assertConsecutive(ticks);
    assert.ok(ticks[0]! > started - 1000 && ticks[0]! <= started + 1000, 'the first tick is the first one after the start');
    for (const c of mine) {
      assert.equal(c.headers['ce-id'], `tick.1.${c.tick}`);
      assert.ok(c.at >= c.tick - 5, `fired at its tick, not before (${c.at} for ${c.tick})`);
    }
    const [sa] = a.state('tick');
    const [sb] = b.state('tick');
    assert.ok(sa && sb);
    assert.equal(sa.index, 1);
    assert.equal(sa.fired + sb.fired, mine.length, 'the calls are the ticks the gateways say they fired');
    // Both raced for every tick while both ran (bar one at each end): without the claim, each
    // would have fired it.
    assert.ok(sa.skipped + sb.skipped >= mine.length - 2, `the loser of each tick skipped it (a ${JSON.stringify(sa)}, b ${JSON.stringify(sb)})`);
    assert.equal(sa.missed + sb.missed + sa.busy + sb.busy + sa.failed + sb.failed, 0);
    assert.equal(sa.next, undefined, 'a closed schedule has no next tick');
  });

  it('a restart within the second neither refires nor drops a tick, and a gateway down for 3 ticks does not replay them', async () => {
    const fn = spec('restart', everySecond());
    const first = await gateway('first');
    await first.sync([fn]);
    await waitFor(() => callsOf('restart').length >= 2, { timeoutMs: 10_000, what: '2 ticks of "restart"' });
    // Restart right after a tick fired: same second, new connection, new instance.
    const lastBefore = callsOf('restart').at(-1)!.tick;
    await first.close();
    const second = await gateway('second');
    await second.sync([fn]);
    assert.ok(Date.now() < lastBefore + 1000, 'the restart happened within the tick’s second');
    await waitFor(() => callsOf('restart').filter((c) => c.by === 'second').length >= 2, { timeoutMs: 10_000, what: '2 ticks by the restarted gateway' });
    await second.close();
    assertConsecutive(callsOf('restart').map((c) => c.tick));
    assert.equal(second.state('restart')[0]?.fired, callsOf('restart').filter((c) => c.by === 'second').length);

    // Down for 3 ticks: the next instance fires only ticks after it started.
    const stoppedAt = Date.now();
    const down = callsOf('restart').length;
    await waitFor(() => Date.now() >= stoppedAt + 3200, { timeoutMs: 5000, maxIntervalMs: 50, what: '3 ticks to pass' });
    assert.equal(callsOf('restart').length, down, 'nothing fires while no gateway runs');
    const third = await gateway('third');
    const restartedAt = Date.now();
    await third.sync([fn]);
    await waitFor(() => callsOf('restart').length >= down + 2, { timeoutMs: 10_000, what: '2 ticks after the second restart' });
    await third.close();
    const after = callsOf('restart').slice(down);
    assert.ok(after[0]!.tick > restartedAt, `the first tick after the restart (${after[0]!.tick}) is later than the restart (${restartedAt}): no replay`);
    assert.ok(after[0]!.at >= after[0]!.tick - 5, 'and fired at its time, not at once');
    assertConsecutive(after.map((c) => c.tick));
    assert.ok(after[0]!.tick - callsOf('restart')[down - 1]!.tick >= 4000, 'the ticks of the gap were left out');
  });

  it('never fires a tick at or before the one already claimed in the bucket', async () => {
    const fn = spec('claimed', everySecond());
    // Another gateway (or this one before a restart) claimed the tick 2 s ahead.
    const nc = await connect({ servers: nats.url });
    connections.push(nc);
    const kv = await new Kvm(nc).create('kubefn_cron', { history: 1 });
    const claimedTick = (Math.floor(Date.now() / 1000) + 2) * 1000;
    await kv.put('claimed.0', String(claimedTick));
    const g = await gateway('g');
    await g.sync([fn]);
    await waitFor(() => callsOf('claimed').length >= 1, { timeoutMs: 10_000, what: 'a tick of "claimed"' });
    await g.close();
    const [first] = callsOf('claimed');
    assert.ok(first!.tick > claimedTick, `the first tick fired (${first!.tick}) is after the claimed one (${claimedTick})`);
    assert.ok(g.state('claimed')[0]!.skipped >= 1, 'the claimed ticks were counted as skipped');
    assert.equal((await kv.get('claimed.0'))?.string(), String(callsOf('claimed').at(-1)!.tick), 'the bucket holds the last tick fired');
  });

  it('calls with a binary CloudEvent, publishes 2xx results to the output subject and nothing else', async () => {
    let status = 200;
    let okWithOutput = 0;
    const g = await gateway('out', async (call) => {
      if (status === 200 && call.headers['ce-source'] === 'kubefn://cron/out/0') okWithOutput++;
      return { status, headers: { 'content-type': 'application/json' }, body: Buffer.from(`{"status":${status}}`) };
    });
    await g.sync([spec('out', everySecond({ body: '{"hello":"cron"}', output: 'cron.results' }), everySecond({ body: 'plain' }))]);
    await waitFor(() => published.length >= 1 && callsOf('out').some((c) => c.body.toString() === 'plain'), { timeoutMs: 10_000, what: 'a result published' });
    status = 503;
    const switched = callsOf('out').length;
    await waitFor(() => callsOf('out').slice(switched).filter((c) => c.headers['ce-source'] === 'kubefn://cron/out/0').length >= 2, {
      timeoutMs: 10_000,
      what: '2 calls answering 503',
    });
    await g.close();

    const json = callsOf('out').find((c) => c.headers['ce-source'] === 'kubefn://cron/out/0')!;
    const tickIso = new Date(json.tick).toISOString();
    assert.equal(json.method, 'POST');
    assert.deepEqual(
      {
        specversion: json.headers['ce-specversion'],
        id: json.headers['ce-id'],
        type: json.headers['ce-type'],
        source: json.headers['ce-source'],
        time: json.headers['ce-time'],
        callId: json.headers['x-call-id'],
        contentType: json.headers['content-type'],
      },
      { specversion: '1.0', id: `out.0.${json.tick}`, type: cronEventType, source: 'kubefn://cron/out/0', time: tickIso, callId: `out.0.${json.tick}`, contentType: 'application/json' },
    );
    assert.equal(json.body.toString(), '{"hello":"cron"}');
    const plain = callsOf('out').find((c) => c.headers['ce-source'] === 'kubefn://cron/out/1')!;
    assert.equal(plain.headers['content-type'], 'text/plain');
    assert.equal(plain.headers['ce-id'], `out.1.${plain.tick}`);

    // Only trigger 0 has an output, and only its 2xx answers were published.
    const [s0, s1] = g.state('out');
    assert.ok(s0 && s1);
    assert.ok(s0.failed >= 2 && s0.lastStatus === 503, JSON.stringify(s0));
    assert.match(s0.lastError ?? '', /answered 503/);
    assert.ok(okWithOutput >= 1);
    assert.equal(published.length, okWithOutput, 'one publish per 2xx call of trigger 0, none for trigger 1 or a 503');
    assert.equal(s0.fired, okWithOutput + s0.failed);
    for (const p of published) assert.deepEqual(p, { subject: 'cron.results', body: '{"status":200}', headers: { 'content-type': 'application/json' } });
  });

  it('runs at most one tick of a trigger at a time in a gateway, and a failing call does not stop the schedule', async () => {
    let n = 0;
    const g = await gateway('slow', async () => {
      n++;
      if (n === 2) throw new Error('connection reset');
      await new Promise((resolve) => setTimeout(resolve, 1500));
      return {};
    });
    await g.sync([spec('slow', everySecond())]);
    await waitFor(() => callsOf('slow').length >= 3, { timeoutMs: 15_000, what: '3 calls of "slow"' });
    await g.close();
    const [s] = g.state('slow');
    assert.ok(s);
    assert.ok(s.busy >= 1, `ticks during a running call were passed up (${JSON.stringify(s)})`);
    assert.equal(s.failed, 1);
    assert.equal(s.fired, callsOf('slow').length);
    // Passed-up ticks leave gaps, but never two calls at once: each call began after the last ended.
    const slow = callsOf('slow');
    assert.equal(new Set(slow.map((c) => c.tick)).size, slow.length);
    for (let k = 1; k < slow.length; k++) assert.ok(slow[k]!.at >= slow[k - 1]!.end!, `call ${k} began after call ${k - 1} ended`);
    assert.ok(warnings.some((w) => w.includes('slow: cron trigger:') && w.includes('still running')));
  });

  it('fires nothing while NATS is down, says why, and resumes when it is back', async () => {
    const g = await gateway('outage', async () => ({}), { claimTimeoutMs: 1000 });
    await g.sync([spec('outage', everySecond())]);
    await waitFor(() => callsOf('outage').length >= 1, { timeoutMs: 10_000, what: 'a tick before the outage' });
    await nats.stop();
    const downAt = Date.now();
    const before = callsOf('outage').length;
    const failed = await waitFor(() => g.state('outage').find((s) => s.lastError?.includes('could not be claimed')), {
      timeoutMs: 15_000,
      what: 'lastError to say the tick could not be claimed',
    });
    assert.match(failed.lastError!, /KV bucket "kubefn_cron"/);
    await waitFor(() => Date.now() >= downAt + 2500, { timeoutMs: 5000, maxIntervalMs: 50, what: 'ticks to pass with NATS down' });
    assert.ok(g.state('outage')[0]!.missed >= 1);
    assert.equal(callsOf('outage').length, before, 'no tick fired while NATS was down');
    assert.ok(g.state('outage')[0]!.next, 'the schedule keeps running');

    await nats.start();
    const upAt = Date.now();
    await waitFor(() => callsOf('outage').some((c) => c.tick > upAt), { timeoutMs: 20_000, what: 'a tick after NATS came back' });
    await waitFor(() => g.state('outage')[0]!.lastError === undefined, { timeoutMs: 5000, what: 'lastError cleared by a tick that went well' });
    await g.close();
    const ticks = callsOf('outage').map((c) => c.tick);
    assert.equal(new Set(ticks).size, ticks.length);
    assert.equal(
      ticks.filter((t) => t > downAt && t < upAt - 1000).length,
      0,
      'no tick of the outage was fired late',
    );
  });

  it('reads a schedule in its time zone, and sync keeps the latest list', async () => {
    const g = await gateway('zones');
    const zoned = spec(
      'zoned',
      { type: 'cron', schedule: '0 3 * * *', timezone: 'Asia/Tokyo' },
      { type: 'cron', schedule: '30 2 * * *', timezone: 'Europe/Paris' },
      { type: 'cron', schedule: '0 3 * * *' },
    );
    // Three syncs at once: the first runs, the other two coalesce into one run of the last list.
    await Promise.all([g.sync([]), g.sync([spec('zoned', { type: 'cron', schedule: '@hourly' })]), g.sync([zoned])]);
    const states = g.state('zoned');
    assert.deepEqual(
      states.map((s) => [s.index, s.schedule, s.timezone]),
      [
        [0, '0 3 * * *', 'Asia/Tokyo'],
        [1, '30 2 * * *', 'Europe/Paris'],
        [2, '0 3 * * *', 'UTC'],
      ],
    );
    const [tokyo, paris, utc] = states.map((s) => new Date(s.next!));
    // 03:00 in Tokyo (UTC+9, no daylight saving) is 18:00 UTC.
    assert.deepEqual([tokyo!.getUTCHours(), tokyo!.getUTCMinutes()], [18, 0]);
    assert.equal(clock(paris!, 'Europe/Paris'), '02:30');
    assert.deepEqual([utc!.getUTCHours(), utc!.getUTCMinutes()], [3, 0]);
    for (const [k, s] of states.entries()) {
      const cron = new Cron(s.schedule, { paused: true, timezone: s.timezone });
      assert.equal(s.next, cron.nextRun()!.toISOString(), `trigger ${k}: croner agrees`);
      assert.ok(Date.parse(s.next!) - Date.now() <= 24 * 3_600_000);
    }
    // A trigger gone from the spec stops; the others keep their state.
    await g.sync([spec('zoned', { type: 'cron', schedule: '0 3 * * *', timezone: 'Asia/Tokyo' })]);
    assert.deepEqual(
      g.state('zoned').map((s) => s.timezone),
      ['Asia/Tokyo'],
    );
    await g.close();
  });
});

/** "HH:MM" of `date` on a wall clock in `timeZone`. */
function clock(date: Date, timeZone: string): string {
  return new Intl.DateTimeFormat('en-GB', { timeZone, hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).format(date);
}
