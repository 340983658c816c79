// The podman driver's warm pool on the real embedded platform (`fn up --driver podman`):
// functions scaling from zero are specialized from pre-started containers of the pool image, a
// specialized container stays its function's (and goes when it does), one killed while it
// specializes is replaced without hanging its request, 200 concurrent first calls take one
// container per replica, and functions the pool cannot take start as new containers.

import assert from 'node:assert/strict';
import { cp, mkdtemp, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Agent, request } from 'undici';
import { deployFunction } from '@kubefn/cli';
import { Podman } from '@kubefn/platform';
import { waitFor } from '@kubefn/platform/testing';
import { Api } from '../support/api.js';
import { callWhoami, logText, whoamiDir, type Whoami } from '../support/whoami.js';
import { newHome, repoRoot, startPlatform, type RunningPlatform } from '../support/platform-process.js';
import { podmanTestOptions } from '../support/podman.js';


describe('the warm pool (fn up --driver podman)', { timeout: 600_000 }, () => {
  let platform: RunningPlatform;
  let api: Api;
  let podman: Podman;
  let image: string;
  const idle = (n: number) => waitFor(async () => ((await api.pool())?.idle ?? 0) >= n, { what: `${n} idle container(s) in the pool`, timeoutMs: 60_000 });
  const containers = async () => (await podman.check(['ps', '--format', '{{.Names}}'])).split('\n').filter(Boolean);

  before(async () => {
    const options = await podmanTestOptions();
    podman = new Podman(options);
    platform = await startPlatform(await newHome(), { args: ['--driver', 'podman'], env: options.env, timeoutMs: 180_000 });
    api = new Api(platform.url, platform.token);
    // The whoami fixture built into an image by the build service, on the pool's base.
    const dir = await mkdtemp(path.join(tmpdir(), 'kubefn-pool-whoami-'));
    await cp(whoamiDir, dir, { recursive: true });
    await writeFile(path.join(dir, 'fn.yaml'), 'name: pool-image\nhandler: handler.js\nscale: { initial: 0, max: 1 }\n');
    image = (await deployFunction(api.client, dir)).image;
  });
  after(async () => {
    await platform?.stop();
  });

  it('specializes a container per function scaling from zero, and a specialized container never serves another function', async () => {
    await idle(2);
    await api.deploy({ name: 'pool-one', image, env: { MARKER: 'one', MARKER_ONE: '1' }, scale: { initial: 0, max: 1 } });
    await api.deploy({ name: 'pool-two', image, env: { MARKER: 'two' }, scale: { initial: 0, max: 1 } });
    assert.deepEqual((await api.status('pool-one')).coldStart, { path: 'warm-pool' });

    const before = (await api.pool())!;
    const one = await callWhoami(api, 'pool-one');
    assert.equal(one.fn, 'pool-one');
    assert.equal(one.marker, 'one');
    assert.equal(one.uid, 65534, "the image's user, not root");
    const started = /starting replica pool-one-1 \(container (kubefn-pool-\d+-\w+), a warm container from the pool\)/.exec(await logText(api, 'pool-one'));
    assert.ok(started, 'pool-one started from a warm container');
    const oneContainer = started[1]!;
    assert.equal((await api.pool())!.taken, before.taken + 1, 'one container taken for the first call');

    // The container leaves with its function: it does not go back to the pool.
    await api.ok('DELETE', '/system/functions', { functionName: 'pool-one' });
    await waitFor(async () => !(await containers()).includes(oneContainer), { what: `${oneContainer} removed`, timeoutMs: 60_000 });

    await idle(1);
    const two = await callWhoami(api, 'pool-two');
    assert.notEqual(two.host, one.host, 'another container');
    assert.equal(two.fn, 'pool-two');
    assert.equal(two.marker, 'two');
    assert.deepEqual(two.markers, ['MARKER'], "none of pool-one's environment in pool-two's container");
    assert.equal(two.calls, 1, 'a fresh runtime: no calls served before');
    // The pool fills again behind the taken containers.
    await idle(2);
  });

  it('says which functions the pool cannot take, and starts them as new containers', async () => {
    await api.deploy({ name: 'pool-limited', image, resources: { memory: '256Mi' }, scale: { initial: 0, max: 1 } });
    const status = await api.status('pool-limited');
    assert.equal(status.coldStart?.path, 'container-start');
    assert.match((status.coldStart as { reason: string }).reason, /resources are container limits/);
    const taken = (await api.pool())!.taken;
    assert.equal((await callWhoami(api, 'pool-limited')).fn, 'pool-limited');
    assert.doesNotMatch(await logText(api, 'pool-limited'), /warm container/);
    assert.equal((await api.pool())!.taken, taken, 'no container taken from the pool');
  });

  it('replaces a container killed while it specializes, and its request is answered, not left hanging', async () => {
    await idle(1);
    await api.deploy({ name: 'pool-kill', image, env: { INIT_DELAY_MS: '2000' }, timeout: '30s', scale: { initial: 0, max: 1 } });
    const started = performance.now();
    const answer = request(`${api.url}/function/pool-kill`).then(async (res) => ({ status: res.statusCode, body: await res.body.text() }));
    const killed = await waitFor(async () => /starting replica pool-kill-1 \(container (kubefn-pool-\d+-\w+), a warm container from the pool\)/.exec(await logText(api, 'pool-kill'))?.[1], {
      what: 'the first replica specializing',
      timeoutMs: 10_000,
    });
    await podman.check(['kill', '--signal', 'KILL', killed]);
    const { status, body } = await answer;
    const ms = performance.now() - started;
    assert.ok(ms < 30_000, `answered in ${Math.round(ms)} ms, within the function's timeout`);
    assert.equal(status, 200, body);
    assert.match(await logText(api, 'pool-kill'), /replica pool-kill-1 failed to start|replica pool-kill-1 exited/);
    assert.equal((await api.status('pool-kill')).availableReplicas, 1);
  });

  it("keeps an image's unpacked /app while a function runs it, and drops it once none does", async () => {
    const apps = path.join(platform.home, 'podman', 'pool-apps');
    const before = await readdir(apps);
    assert.equal(before.length, 1, 'one image in use so far: the whoami image the pool functions share');
    await deployFunction(api.client, path.join(repoRoot, 'examples', 'hello'));
    const withHello = await readdir(apps);
    assert.equal(withHello.length, 2, 'hello\'s image unpacked beside it');
    await api.ok('DELETE', '/system/functions', { functionName: 'hello' });
    await waitFor(async () => (await readdir(apps)).length === 1, { what: "hello's /app dropped", timeoutMs: 30_000 });
    assert.deepEqual(await readdir(apps), before);
  });

  it('answers 200 concurrent first calls of a function at zero, taking one container per replica it starts', async () => {
    await idle(2);
    await api.deploy({ name: 'pool-burst', image, timeout: '60s', scale: { initial: 0, max: 4 } });
    const takenBefore = (await api.pool())!.taken;
    const agent = new Agent({ connections: 200 });
    try {
      const answers = await Promise.all(
        Array.from({ length: 200 }, async () => {
          const res = await request(`${api.url}/function/pool-burst`, { dispatcher: agent });
          const text = await res.body.text();
          return res.statusCode === 200 ? (JSON.parse(text) as Whoami).host : `status ${res.statusCode}`;
        }),
      );
      assert.deepEqual(answers.filter((a) => a.startsWith('status')), [], 'every call answered 200');
      const starts = (await logText(api, 'pool-burst')).match(/starting replica pool-burst-\d+/g) ?? [];
      const taken = (await api.pool())!.taken - takenBefore;
      assert.ok(starts.length <= 4, `at most scale.max replicas started, not one per call (${starts.length})`);
      assert.ok(taken >= 1 && taken <= starts.length, `containers taken (${taken}) at most one per replica started (${starts.length})`);
      assert.ok(new Set(answers).size <= starts.length, `the calls were served by ${new Set(answers).size} replica(s)`);
    } finally {
      await agent.close();
    }
  });
});

describe('fn up --driver podman --pool 0', { timeout: 300_000 }, () => {
  let platform: RunningPlatform;
  let api: Api;

  before(async () => {
    platform = await startPlatform(await newHome(), { args: ['--driver', 'podman', '--pool', '0'], env: (await podmanTestOptions()).env, timeoutMs: 120_000 });
    api = new Api(platform.url, platform.token);
  });
  after(async () => {
    await platform?.stop();
  });

  it('keeps no pool and starts every replica as a new container', async () => {
    assert.equal(await api.pool(), undefined, 'no pool in /system/info');
    await deployFunction(api.client, path.join(repoRoot, 'examples', 'hello'));
    await api.ok('POST', '/system/scale-function/hello', { serviceName: 'hello', replicas: 0 });
    const status = await api.status('hello');
    assert.equal(status.coldStart?.path, 'container-start');
    assert.match((status.coldStart as { reason: string }).reason, /the warm pool is off/);
    const res = await request(`${api.url}/function/hello?name=plain`);
    assert.equal(res.statusCode, 200);
    assert.match(await res.body.text(), /plain/);
    assert.doesNotMatch(await logText(api, 'hello'), /warm container/);
  });
});
