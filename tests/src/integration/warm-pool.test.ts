// The process driver's warm pool on the real embedded platform (`fn up`): functions scaling from
// zero are specialized from pre-started runtimes, a specialized runtime stays its function's
// (and goes when it does), a runtime killed while it specializes is replaced without hanging its
// request, 200 concurrent first calls take one runtime per replica, and `--pool 0` starts every
// replica as a new process.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Agent, request } from 'undici';
import { waitFor } from '@kubefn/platform/testing';
import { Api } from '../support/api.js';
import { callWhoami, logText, whoamiDir, type Whoami } from '../support/whoami.js';
import { newHome, startPlatform, type RunningPlatform } from '../support/platform-process.js';
import { isAlive } from '../support/processes.js';


describe('the warm pool (fn up, process driver)', () => {
  let platform: RunningPlatform;
  let api: Api;
  let image: string;

  before(async () => {
    platform = await startPlatform(await newHome());
    api = new Api(platform.url, platform.token);
    image = await api.upload(whoamiDir, 'handler.js');
  });
  after(async () => {
    await platform?.stop();
  });

  it('specializes a runtime per function scaling from zero, and a specialized runtime never serves another function', { timeout: 120_000 }, async () => {
    await waitFor(async () => ((await api.pool())?.idle ?? 0) >= 2, { what: 'two idle runtimes in the pool', timeoutMs: 20_000 });
    await api.deploy({ name: 'pool-one', image, env: { MARKER: 'one', MARKER_ONE: '1' }, scale: { initial: 0, max: 1 } });
    await api.deploy({ name: 'pool-two', image, env: { MARKER: 'two' }, scale: { initial: 0, max: 1 } });
    assert.deepEqual((await api.status('pool-one')).coldStart, { path: 'warm-pool' });

    const before = (await api.pool())!;
    const one = await callWhoami(api, 'pool-one');
    assert.equal(one.fn, 'pool-one');
    assert.equal(one.marker, 'one');
    assert.match(await logText(api, 'pool-one'), new RegExp(`starting replica pool-one-1 \\(pid ${one.pid}, a warm runtime from the pool\\)`));
    assert.equal((await api.pool())!.taken, before.taken + 1, 'one runtime taken for the first call');

    // The runtime leaves with its function's replica: it does not go back to the pool. (Deleted
    // rather than scaled to zero, which the autoscaler may undo at once after a call.)
    await api.ok('DELETE', '/system/functions', { functionName: 'pool-one' });
    await waitFor(() => !isAlive(one.pid), { what: `pool-one's runtime (pid ${one.pid}) gone`, timeoutMs: 20_000 });

    await waitFor(async () => ((await api.pool())?.idle ?? 0) >= 1, { what: 'an idle runtime in the pool', timeoutMs: 20_000 });
    const two = await callWhoami(api, 'pool-two');
    assert.notEqual(two.pid, one.pid);
    assert.equal(two.fn, 'pool-two');
    assert.equal(two.marker, 'two');
    assert.deepEqual(two.markers, ['MARKER'], "none of pool-one's environment in pool-two's runtime");
    assert.equal(two.calls, 1, 'a fresh runtime: no calls served before');
    assert.match(await logText(api, 'pool-two'), new RegExp(`\\(pid ${two.pid}, a warm runtime from the pool\\)`));

    // Deployed again, pool-one gets another runtime, with nothing left from its last one.
    await api.deploy({ name: 'pool-one', image, env: { MARKER: 'one', MARKER_ONE: '1' }, scale: { initial: 0, max: 1 } });
    await waitFor(async () => ((await api.pool())?.idle ?? 0) >= 1, { what: 'an idle runtime in the pool', timeoutMs: 20_000 });
    const again = await callWhoami(api, 'pool-one');
    assert.notEqual(again.pid, one.pid);
    assert.notEqual(again.pid, two.pid);
    assert.equal(again.calls, 1);
    // The pool fills again behind the taken runtimes.
    await waitFor(async () => ((await api.pool())?.idle ?? 0) >= 2, { what: 'the pool refilled', timeoutMs: 20_000 });
  });

  it('says which functions the pool cannot take, and starts them as new processes', { timeout: 60_000 }, async () => {
    await api.deploy({ name: 'pool-heap', image, resources: { memory: '256Mi' }, scale: { initial: 0, max: 1 } });
    const status = await api.status('pool-heap');
    assert.equal(status.coldStart?.path, 'process-start');
    assert.match((status.coldStart as { reason: string }).reason, /resources\.memory/);
    const taken = (await api.pool())!.taken;
    const answer = await callWhoami(api, 'pool-heap');
    assert.equal(answer.fn, 'pool-heap');
    assert.doesNotMatch(await logText(api, 'pool-heap'), /warm runtime/);
    assert.equal((await api.pool())!.taken, taken, 'no runtime taken from the pool');
  });

  it('replaces a runtime killed while it specializes, and its request is answered, not left hanging', { timeout: 90_000 }, async () => {
    await waitFor(async () => ((await api.pool())?.idle ?? 0) >= 1, { what: 'an idle runtime in the pool', timeoutMs: 20_000 });
    await api.deploy({ name: 'pool-kill', image, env: { INIT_DELAY_MS: '2000' }, timeout: '20s', scale: { initial: 0, max: 1 } });
    const started = performance.now();
    const answer = request(`${api.url}/function/pool-kill`).then(async (res) => ({ status: res.statusCode, body: await res.body.text() }));
    const killed = await waitFor(async () => {
      const m = /starting replica pool-kill-1 \(pid (\d+), a warm runtime from the pool\)/.exec(await logText(api, 'pool-kill'));
      return m ? Number(m[1]) : undefined;
    }, { what: 'the first replica specializing', timeoutMs: 10_000 });
    process.kill(killed, 'SIGKILL');
    const { status, body } = await answer;
    const ms = performance.now() - started;
    assert.ok(ms < 20_000, `answered in ${Math.round(ms)} ms, within the function's timeout`);
    assert.equal(status, 200, body);
    const served = JSON.parse(body) as Whoami;
    assert.notEqual(served.pid, killed, 'served by the replacement');
    assert.match(await logText(api, 'pool-kill'), /replica pool-kill-1 failed to start|replica pool-kill-1 exited/);
    assert.equal((await api.status('pool-kill')).availableReplicas, 1);
  });

  it('answers 200 concurrent first calls of a function at zero, taking one runtime per replica it starts', { timeout: 120_000 }, async () => {
    await waitFor(async () => ((await api.pool())?.idle ?? 0) >= 2, { what: 'two idle runtimes in the pool', timeoutMs: 20_000 });
    await api.deploy({ name: 'pool-burst', image, timeout: '60s', scale: { initial: 0, max: 4 } });
    const takenBefore = (await api.pool())!.taken;
    const agent = new Agent({ connections: 200 });
    try {
      const answers = await Promise.all(
        Array.from({ length: 200 }, async () => {
          const res = await request(`${api.url}/function/pool-burst`, { dispatcher: agent });
          const text = await res.body.text();
          return res.statusCode === 200 ? (JSON.parse(text) as Whoami).pid : -res.statusCode;
        }),
      );
      assert.deepEqual(answers.filter((pid) => pid < 0), [], 'every call answered 200');
      const replicas = new Set(answers);
      const starts = (await logText(api, 'pool-burst')).match(/starting replica pool-burst-\d+/g) ?? [];
      const taken = (await api.pool())!.taken - takenBefore;
      assert.ok(starts.length <= 4, `at most scale.max replicas started, not one per call (${starts.length})`);
      assert.ok(taken >= 1 && taken <= starts.length, `runtimes taken (${taken}) at most one per replica started (${starts.length})`);
      assert.ok(replicas.size <= starts.length, `the calls were served by ${replicas.size} replica(s)`);
    } finally {
      await agent.close();
    }
  });
});

describe('fn up --pool 0', () => {
  let platform: RunningPlatform;
  let api: Api;

  before(async () => {
    platform = await startPlatform(await newHome(), { args: ['--pool', '0'] });
    api = new Api(platform.url, platform.token);
  });
  after(async () => {
    await platform?.stop();
  });

  it('keeps no pool and starts every replica as a new process', { timeout: 60_000 }, async () => {
    assert.equal(await api.pool(), undefined, 'no pool in /system/info');
    const image = await api.upload(whoamiDir, 'handler.js');
    await api.deploy({ name: 'no-pool', image, scale: { initial: 0, max: 1 } });
    const status = await api.status('no-pool');
    assert.equal(status.coldStart?.path, 'process-start');
    assert.match((status.coldStart as { reason: string }).reason, /the warm pool is off/);
    const answer = await callWhoami(api, 'no-pool');
    assert.equal(answer.fn, 'no-pool');
    const logs = await logText(api, 'no-pool');
    assert.match(logs, new RegExp(`starting replica no-pool-1 \\(pid ${answer.pid}\\)`));
    assert.doesNotMatch(logs, /warm runtime/);
  });
});
