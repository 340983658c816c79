// End to end on the real embedded platform: `fn up` in a child process, functions as real
// child processes, requests over real sockets.

import assert from 'node:assert/strict';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Api } from '../support/api.js';
import { newHome, repoRoot, startPlatform, type RunningPlatform } from '../support/platform-process.js';
import { waitFor } from '@kubefn/platform/testing';

const fixture = path.join(repoRoot, 'tests', 'fixtures', 'e2e');

describe('embedded platform (fn up)', () => {
  let platform: RunningPlatform;
  let api: Api;
  let image: string;
  let home: string;

  before(async () => {
    home = await newHome();
    platform = await startPlatform(home);
    api = new Api(platform.url, platform.token);
    image = await api.upload(fixture, 'handler.js');
  });
  after(async () => {
    await platform?.stop();
  });

  const invoke = (name: string, p = '/', init?: RequestInit) => fetch(`${api.url}/function/${name}${p}`, init);

  it('keeps a second fn up off its state directory, naming the pid that holds it', async () => {
    await assert.rejects(startPlatform(home), (err: Error) => {
      assert.match(err.message, new RegExp(`exited with 1 before listening:[\\s\\S]*state directory ${home.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is in use by another \`fn up\` \\(pid ${platform.child.pid}\\)`));
      return true;
    });
    assert.equal((await fetch(`${api.url}/healthz`)).status, 200, 'the first one still serves');
  });

  it('removes the scratch directories of builds a killed fn up left behind', async () => {
    const other = await newHome();
    await mkdir(path.join(other, 'builds', 'build-left-over', 'src'), { recursive: true });
    await writeFile(path.join(other, 'builds', 'build-left-over', 'src', 'big.js'), 'x'.repeat(1024));
    const second = await startPlatform(other, { args: ['--no-nats'] });
    try {
      assert.deepEqual(await readdir(path.join(other, 'builds')), []);
    } finally {
      await second.stop();
    }
  });

  it('exits 1 with the reason, before it listens, when it cannot restore its state (a `functions` file in place of the directory)', async () => {
    const broken = await newHome();
    await writeFile(path.join(broken, 'functions'), 'not a directory\n');
    await assert.rejects(startPlatform(broken), (err: Error) => {
      assert.match(err.message, /exited with 1 before listening:[\s\S]*cannot restore the functions saved in [\s\S]*ENOTDIR/);
      assert.match(err.message, /must be a directory/);
      return true;
    });
  });

  it('deploys a function and serves it, with call headers', async () => {
    await api.deploy({ name: 'basic', image });
    const res = await invoke('basic');
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'Hello from basic\n');
    assert.ok(res.headers.get('x-call-id'));
    assert.ok(res.headers.get('x-start-time'));
  });

  it('answers 500 with a call id and no stack when the handler throws', async () => {
    const res = await invoke('basic', '/throw');
    assert.equal(res.status, 500);
    const text = await res.text();
    assert.doesNotMatch(text, /secret internal detail|at handler/);
    const body = JSON.parse(text) as { callId: string };
    assert.equal(body.callId, res.headers.get('x-call-id'));
    // The stack went to the function's log instead.
    await waitFor(
      async () => (await api.call('GET', '/system/logs?name=basic').then((r) => r.text())).includes('secret internal detail'),
      { what: 'the stack in the logs' },
    );
  });

  it('answers 504 when the handler hangs past its timeout', async () => {
    await api.deploy({ name: 'hangs', image, timeout: '1s' });
    const res = await invoke('hangs', '/hang');
    assert.equal(res.status, 504);
  });

  it('answers an error, not a hang, when the replica crashes, and replaces the replica', async () => {
    await api.deploy({ name: 'crashy', image, scale: { min: 1 } });
    await waitFor(async () => (await api.status('crashy')).availableReplicas === 1, { what: 'crashy ready' });
    const before = (await (await invoke('crashy', '/instance')).json()) as { pid: number };
    const res = await invoke('crashy', '/crash');
    assert.equal(res.status, 502);
    assert.equal(((await res.json()) as { code: string }).code, 'REPLICA_FAILED');
    const afterCrash = await waitFor(
      async () => {
        const r = await invoke('crashy', '/instance');
        return r.status === 200 ? ((await r.json()) as { pid: number }) : undefined;
      },
      { what: 'a replacement replica' },
    );
    assert.notEqual(afterCrash.pid, before.pid);
  });

  it('starts one replica for concurrent first requests to a function at zero and serves them all', async () => {
    await api.deploy({ name: 'cold', image, scale: { initial: 0 } });
    assert.equal((await api.status('cold')).replicas, 0);
    const answers = await Promise.all(
      Array.from({ length: 20 }, async () => {
        const r = await invoke('cold', '/instance');
        assert.equal(r.status, 200);
        return (await r.json()) as { instance: string };
      }),
    );
    assert.equal(new Set(answers.map((a) => a.instance)).size, 1);
    const s = await api.status('cold');
    assert.equal(s.replicas, 1);
    assert.equal(s.invocationCount, 20);
  });

  it('scales an idle function back to zero after the window and grace period', async () => {
    await api.deploy({ name: 'idle', image, scale: { initial: 0, stableWindow: '6s', scaleToZeroGrace: '1s' } });
    assert.equal((await invoke('idle')).status, 200);
    assert.equal((await api.status('idle')).replicas, 1);
    await waitFor(async () => (await api.status('idle')).replicas === 0, { what: 'idle at zero', timeoutMs: 60_000, maxIntervalMs: 250 });
    // And it comes back on the next request.
    assert.equal((await invoke('idle')).status, 200);
  });

  it('streams logs as NDJSON and follows new lines', async () => {
    await api.deploy({ name: 'logger', image, scale: { min: 1 } });
    await waitFor(async () => (await api.status('logger')).availableReplicas === 1, { what: 'logger ready' });
    const res = await api.call('GET', '/system/logs?name=logger&follow=true');
    assert.equal(res.headers.get('content-type'), 'application/x-ndjson');
    const reader = res.body!.getReader();
    const seen = (async () => {
      let text = '';
      const decoder = new TextDecoder();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return false;
        text += decoder.decode(value);
        if (text.includes('log line mark-42')) return text;
      }
    })();
    await invoke('logger', '/log?mark=mark-42');
    const text = await seen;
    await reader.cancel();
    assert.ok(text);
    const line = JSON.parse(text.split('\n').find((l) => l.includes('mark-42'))!) as Record<string, string>;
    assert.equal(line.name, 'logger');
    assert.ok(line.instance && line.timestamp);
  });

  it('removes a function: it answers 404 afterwards', async () => {
    await api.deploy({ name: 'gone', image });
    assert.equal((await invoke('gone')).status, 200);
    await api.ok('DELETE', '/system/functions', { functionName: 'gone' });
    assert.equal((await invoke('gone')).status, 404);
    assert.equal((await api.call('GET', '/system/function/gone')).status, 404);
  });

  it('finishes calls in flight when stopped, then brings functions back on restart', async () => {
    await api.deploy({ name: 'drain', image, scale: { min: 1 } });
    await waitFor(async () => (await api.status('drain')).availableReplicas === 1, { what: 'drain ready' });
    const calls = Array.from({ length: 5 }, () => invoke('drain', '/slow?ms=1500').then(async (r) => [r.status, await r.text()] as const));
    // Wait until the gateway counts them in flight before stopping.
    await waitFor(
      async () => {
        const m = await (await fetch(`${api.url}/metrics`)).text();
        return /kubefn_gateway_in_flight_requests\{function="drain"\} 5/.test(m);
      },
      { what: 'calls in flight' },
    );
    const code = await platform.stop('SIGTERM');
    const results = await Promise.all(calls);
    assert.equal(code, 0);
    for (const [status, text] of results) {
      assert.equal(status, 200);
      assert.equal(text, 'slept 1500\n');
    }

    platform = await startPlatform(home);
    api = new Api(platform.url, platform.token);
    const list = (await api.ok('GET', '/system/functions')) as { name: string }[];
    for (const name of ['basic', 'drain', 'cold', 'logger']) assert.ok(list.some((f) => f.name === name), `${name} restored`);
    assert.ok(!list.some((f) => f.name === 'gone'));
    const res = await invoke('drain');
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'Hello from drain\n');
  });
});

describe('fn up told twice to stop', () => {
  it('drains on the first SIGTERM and exits at once (130) on the second, with a call still in flight', { timeout: 90_000 }, async () => {
    const platform = await startPlatform(await newHome(), { args: ['--no-nats'] });
    try {
      const api = new Api(platform.url, platform.token);
      const image = await api.upload(fixture, 'handler.js');
      await api.deploy({ name: 'slowcall', image, timeout: '5m', scale: { min: 1 } });
      await waitFor(async () => (await api.status('slowcall')).availableReplicas >= 1, { what: 'a ready replica' });
      const inFlight = fetch(`${platform.url}/function/slowcall/hang`).catch(() => undefined);
      await waitFor(async () => /kubefn_gateway_in_flight_requests\{function="slowcall"\} 1/.test(await (await fetch(`${platform.url}/metrics`)).text()), {
        what: 'the call in flight',
      });
      const exited = new Promise<number | null>((resolve) => platform.child.once('exit', (code) => resolve(code)));
      platform.child.kill('SIGTERM');
      await waitFor(() => platform.output.some((l) => l.includes('stopping: draining')), { what: 'the drain to start' });
      platform.child.kill('SIGTERM');
      assert.equal(await exited, 130, platform.output.slice(-5).join('\n'));
      assert.ok(platform.output.some((l) => l.includes('second signal')), 'it says why it did not drain');
      await inFlight;
    } finally {
      await platform.stop();
    }
  });
});
