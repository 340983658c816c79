import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { isKubefnError } from './errors.js';
import {
  defaultLiveness,
  httpProbe,
  initialLiveness,
  livenessSettings,
  livenessStep,
  LivenessProber,
  watchLiveness,
  type LivenessEvent,
  type LivenessState,
  type ProbeResult,
} from './liveness.js';
import { waitFor } from './testing/wait-for.js';

/** Runs probe outcomes through the state machine; returns the events, '-' for none. */
function run(outcomes: boolean[], threshold = 3): { events: string[]; state: LivenessState } {
  let state = initialLiveness;
  const events: string[] = [];
  for (const ok of outcomes) {
    const step: { state: LivenessState; event: LivenessEvent } = livenessStep(state, ok, threshold);
    state = step.state;
    events.push(step.event ?? '-');
  }
  return { events, state };
}

describe('liveness state machine', () => {
  it('stays quiet while probes pass', () => {
    assert.deepEqual(run([true, true, true]), { events: ['-', '-', '-'], state: { failures: 0, dead: false } });
  });
  it('is failing at the first failed probe and dead at the threshold, and stays dead', () => {
    assert.deepEqual(run([true, false, false, false, true, false]).events, ['-', 'failing', '-', 'dead', '-', '-']);
    assert.deepEqual(run([false, false, false]).state, { failures: 3, dead: true });
  });
  it('recovers when a probe passes below the threshold, and counts again from zero', () => {
    assert.deepEqual(run([false, false, true, false, false, true]).events, ['failing', '-', 'recovered', 'failing', '-', 'recovered']);
    assert.deepEqual(run([false, false, true, false, false, false]).events, ['failing', '-', 'recovered', 'failing', '-', 'dead']);
  });
  it('with a threshold of 1, the first failure is death', () => {
    assert.deepEqual(run([true, false], 1).events, ['-', 'dead']);
  });
});

describe('liveness settings', () => {
  it('fills the defaults and refuses values that cannot work, naming the field', () => {
    assert.deepEqual(livenessSettings(undefined), defaultLiveness);
    assert.deepEqual(livenessSettings({ failureThreshold: 5 }), { ...defaultLiveness, failureThreshold: 5 });
    for (const bad of [{ periodMs: 0 }, { timeoutMs: 2.5 }, { failureThreshold: 0 }, { periodMs: Number.NaN }]) {
      assert.throws(() => livenessSettings(bad), (err: unknown) => {
        assert.ok(isKubefnError(err, 'INVALID_SPEC'));
        assert.match((err as Error).message, new RegExp(`liveness\\.${Object.keys(bad)[0]}`));
        return true;
      });
    }
  });
});

describe('liveness prober', () => {
  /** What the fake replica's /healthz does: answer, answer 500 (always or once), or never answer. */
  let mode: 'ok' | 'error' | 'error-once' | 'hang' = 'ok';
  let server: Server;
  let adminUrl: string;
  const hung: ServerResponse[] = [];

  before(async () => {
    server = createServer((_req: IncomingMessage, res: ServerResponse) => {
      if (mode === 'hang') hung.push(res);
      else res.writeHead(mode === 'ok' ? 200 : 500).end();
      if (mode === 'error-once') mode = 'ok';
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    adminUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    for (const res of hung) res.destroy();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('httpProbe: ok on 200, the status otherwise, and a timeout when nothing answers', async () => {
    mode = 'ok';
    assert.deepEqual(await httpProbe(`${adminUrl}/healthz`, 1000), { ok: true });
    mode = 'error';
    assert.deepEqual(await httpProbe(`${adminUrl}/healthz`, 1000), { ok: false, reason: 'HTTP 500' });
    mode = 'hang';
    assert.deepEqual(await httpProbe(`${adminUrl}/healthz`, 50), { ok: false, reason: 'no answer within 50 ms' });
    const refused = await httpProbe('http://127.0.0.1:1/healthz', 1000);
    assert.equal(refused.ok, false);
  });

  it('never has two probes in flight, even when each takes longer than the period', async () => {
    let inFlight = 0;
    let most = 0;
    let probes = 0;
    const slow = async (): Promise<ProbeResult> => {
      inFlight++;
      probes++;
      most = Math.max(most, inFlight);
      await new Promise((r) => setTimeout(r, 30));
      inFlight--;
      return { ok: true };
    };
    const prober = new LivenessProber('http://unused', { periodMs: 5, timeoutMs: 30, failureThreshold: 3 }, { failing() {}, recovered() {}, dead() {} }, slow);
    try {
      await waitFor(() => probes >= 5, { what: 'five probes', timeoutMs: 10_000 });
    } finally {
      prober.stop();
    }
    assert.equal(most, 1);
  });

  it('takes a replica whose /healthz stops answering out of rotation, puts it back when it answers, and kills it at the threshold', async () => {
    mode = 'ok';
    const endpoint = { id: 'hello-1', url: 'http://127.0.0.1:1', adminUrl };
    const endpoints = new Map([[endpoint.id, endpoint]]);
    const lines: string[] = [];
    let killedWith: string | undefined;
    let kills = 0;
    const replica = { id: 'hello-1', state: 'ready' as const, kill: () => void kills++ };
    const prober = watchLiveness(replica, endpoint, { periodMs: 20, timeoutMs: 100, failureThreshold: 3 }, {
      tracked: () => true,
      endpoints: { add: (e) => endpoints.set(e.id, e), remove: (id) => endpoints.delete(id) },
      log: (text) => lines.push(text),
      killed: (message) => (killedWith = message),
    });
    try {
      // A failure below the threshold, then an answer: out and back in (one 500 only, so a busy
      // machine's late look cannot see three in a row).
      mode = 'error-once';
      await waitFor(() => lines.length >= 2, { what: 'out of rotation and back', timeoutMs: 10_000 });
      assert.match(lines[0]!, /hello-1 failed a liveness probe \(HTTP 500\): out of rotation/);
      await waitFor(() => endpoints.size === 1, { what: 'back in rotation', timeoutMs: 10_000 });
      assert.match(lines.at(-1)!, /answers its liveness probe again/);
      assert.equal(kills, 0);

      // Never answering: killed after three failures in a row, once, and probing stops.
      mode = 'hang';
      await waitFor(() => kills > 0, { what: 'the kill', timeoutMs: 10_000 });
      assert.equal(endpoints.size, 0);
      assert.match(killedWith!, /replica hello-1 was unresponsive: 3 liveness probe\(s\) in a row failed \(GET \/healthz every 20 ms, 100 ms each; last: no answer within 100 ms\); killed with SIGKILL/);
      assert.deepEqual(prober.state, { failures: 3, dead: true });
      const probesAtKill = hung.length;
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(hung.length, probesAtKill, 'no probe after death');
      assert.equal(kills, 1);
    } finally {
      prober.stop();
    }
  });

  it('does nothing to a replica the driver no longer tracks', async () => {
    mode = 'hang';
    let kills = 0;
    const endpoint = { id: 'hello-2', url: 'http://127.0.0.1:1', adminUrl };
    let dead = false;
    const prober = watchLiveness({ id: 'hello-2', state: 'ready', kill: () => void kills++ }, endpoint, { periodMs: 10, timeoutMs: 20, failureThreshold: 2 }, {
      tracked: () => false,
      endpoints: { add: () => assert.fail('added'), remove: () => assert.fail('removed') },
      log: () => undefined,
      killed: () => (dead = true),
    });
    try {
      await waitFor(() => prober.state.dead, { what: 'declared dead', timeoutMs: 10_000 });
    } finally {
      prober.stop();
    }
    assert.equal(kills, 0);
    assert.equal(dead, false);
  });
});
