// A handler that spins (`while (true) {}`) wedges its replica's event loop: on the embedded
// platform (process driver) the replica fails its liveness probe, leaves rotation, is killed
// and replaced, and says so in the logs and the status, while the other replica keeps serving.

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { waitFor } from '@kubefn/platform/testing';
import { Api } from '../support/api.js';
import { newHome, repoRoot, startPlatform, type RunningPlatform } from '../support/platform-process.js';

const fixture = path.join(repoRoot, 'tests', 'fixtures', 'spin');
const functionTimeoutMs = 3000;

/** One NDJSON line of GET /system/logs. */
interface LogEntry {
  instance: string;
  timestamp: string;
  text: string;
  stream: 'stdout' | 'stderr' | 'system';
}

interface Call {
  startMs: number;
  endMs: number;
  status: number;
  body: string;
}

describe('liveness of running replicas (process driver)', () => {
  let platform: RunningPlatform;
  let api: Api;

  before(async () => {
    platform = await startPlatform(await newHome());
    api = new Api(platform.url, platform.token);
  });
  after(async () => {
    await platform?.stop();
  });

  const logs = async (name: string): Promise<LogEntry[]> => {
    const res = await api.call('GET', `/system/logs?name=${name}&follow=false`);
    assert.equal(res.status, 200);
    return (await res.text()).split('\n').filter(Boolean).map((l) => JSON.parse(l) as LogEntry);
  };
  const call = async (name: string, p: string): Promise<Call> => {
    const startMs = Date.now();
    try {
      const res = await fetch(`${api.url}/function/${name}${p}`, { signal: AbortSignal.timeout(60_000) });
      return { startMs, endMs: Date.now(), status: res.status, body: await res.text() };
    } catch (err) {
      return { startMs, endMs: Date.now(), status: 0, body: String(err) };
    }
  };

  it('kills and replaces a replica whose handler spins, within timeout + 5 s, while the other serves', { timeout: 120_000 }, async () => {
    const image = await api.upload(fixture, 'handler.js');
    await api.deploy({ name: 'spinner', image, timeout: '3s', scale: { min: 2, max: 2, initial: 2 } });
    await waitFor(async () => (await api.status('spinner')).availableReplicas === 2, { what: 'two ready replicas', timeoutMs: 30_000 });

    // A steady stream of calls to the path that answers, two at a time, until told to stop.
    const calls: Call[] = [];
    let streaming = true;
    const stream = async () => {
      while (streaming) calls.push(await call('spinner', '/ok'));
    };
    const streams = [stream(), stream()];
    await waitFor(() => calls.length >= 10, { what: 'calls flowing' });

    const spin = call('spinner', '/spin');
    const killed = await waitFor(
      async () => (await logs('spinner')).find((e) => e.stream === 'system' && /was unresponsive: 3 liveness probe\(s\) in a row failed/.test(e.text)),
      { what: 'the liveness kill in the logs', timeoutMs: 60_000 },
    );
    const spinning = (await logs('spinner')).find((e) => e.stream === 'stdout' && e.text.includes('spinning on'));
    assert.ok(spinning, 'the spin started');
    const wedged = /spinning on (\S+)/.exec(spinning.text)![1]!;
    assert.equal(killed.instance, wedged, 'the spinning replica is the one killed');
    assert.match(killed.text, /killed with SIGKILL/);

    // Its replacement is ready within timeout + 5 s of the spin starting (platform timestamps).
    const replaced = await waitFor(
      async () =>
        (await logs('spinner')).find(
          (e) => e.stream === 'system' && / ready at /.test(e.text) && Date.parse(e.timestamp) > Date.parse(spinning.timestamp),
        ),
      { what: 'a replacement replica ready', timeoutMs: 60_000 },
    );
    const spinStartMs = Date.parse(spinning.timestamp);
    const replacedMs = Date.parse(replaced.timestamp);
    assert.ok(replacedMs - spinStartMs <= functionTimeoutMs + 5000, `replaced ${replacedMs - spinStartMs} ms after the spin started`);

    // The status says why, with a hint, and so does `fn logs` (above).
    const status = await api.status('spinner');
    assert.equal(status.lastError?.code, 'UNHEALTHY');
    assert.match(status.lastError!.message, new RegExp(`replica ${wedged} was unresponsive`));
    assert.match(status.lastError!.hint ?? '', /event loop/);

    // Twenty more calls after the replacement was ready, then stop the stream.
    await waitFor(() => calls.filter((c) => c.startMs > replacedMs).length >= 20, { what: 'calls after the replacement', timeoutMs: 60_000 });
    streaming = false;
    await Promise.all(streams);
    const afterReplacement = calls.filter((c) => c.startMs > replacedMs);
    assert.deepEqual(afterReplacement.filter((c) => c.status !== 200), [], 'every call after the replacement succeeded');
    // The calls during the episode too, but for any the wedged replica held past the function's
    // timeout: the first failed probe took it out of rotation, and a call sent to it before that
    // was retried elsewhere when it was killed, unless it had had its whole timeout there.
    const during = calls.filter((c) => c.endMs >= spinStartMs && c.startMs <= replacedMs);
    assert.ok(during.length > 0);
    assert.deepEqual(
      during.filter((c) => c.status !== 200 && !(c.status === 502 && c.endMs - c.startMs >= functionTimeoutMs)),
      [],
      'every call during the episode succeeded, or failed with 502 after its replica held it past the timeout',
    );

    // The spinning call itself ends in an error, not a hang, and was not sent on to wedge another replica.
    const spun = await spin;
    assert.equal(spun.status, 502, spun.body);
    assert.match(spun.body, /REPLICA_FAILED/);
    const all = await logs('spinner');
    assert.equal(all.filter((e) => e.stream === 'stdout' && e.text.includes('spinning on')).length, 1, `one replica spun:\n${all.map((e) => `${e.timestamp} ${e.instance} ${e.stream} ${e.text}`).join('\n')}`);
    assert.equal((await api.status('spinner')).availableReplicas, 2);
  });
});
