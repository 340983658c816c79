// The scenario of a handler that spins (`while (true) {}`), shared by the process and podman
// drivers' tests: a function of two ready replicas (tests/fixtures/spin), a steady stream of
// calls to the path that answers, one call to the path that spins. The wedged replica must leave
// rotation, be killed and replaced within timeout + 5 s of the spin, with the reason in the logs
// and the status, while the calls to the answering path go on succeeding.

import assert from 'node:assert/strict';
import { waitFor } from '@kubefn/platform/testing';
import type { Api } from './api.js';

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

/** Runs the scenario on `name`, deployed from tests/fixtures/spin with two ready replicas and a timeout of `timeoutMs`. */
export async function spinningReplicaIsReplaced(api: Api, name: string, timeoutMs: number): Promise<void> {
  const timeline = (entries: LogEntry[]) =>
    entries.filter((e) => e.stream !== 'stdout' || !e.text.startsWith('{')).map((e) => `${e.timestamp} ${e.instance} ${e.stream} ${e.text}`).join('\n');
  const logs = async (): Promise<LogEntry[]> => {
    const res = await api.call('GET', `/system/logs?name=${name}&follow=false`);
    assert.equal(res.status, 200);
    return (await res.text()).split('\n').filter(Boolean).map((l) => JSON.parse(l) as LogEntry);
  };
  const call = async (p: string): Promise<Call> => {
    const startMs = Date.now();
    try {
      const res = await fetch(`${api.url}/function/${name}${p}`, { signal: AbortSignal.timeout(60_000) });
      return { startMs, endMs: Date.now(), status: res.status, body: await res.text() };
    } catch (err) {
      return { startMs, endMs: Date.now(), status: 0, body: String(err) };
    }
  };

  // A steady stream of calls to the path that answers, two at a time, until told to stop.
  const calls: Call[] = [];
  let streaming = true;
  const stream = async () => {
    while (streaming) calls.push(await call('/ok'));
  };
  const streams = [stream(), stream()];
  await waitFor(() => calls.length >= 10, { what: 'calls flowing' });

  const spin = call('/spin');
  const killed = await waitFor(
    async () => (await logs()).find((e) => e.stream === 'system' && /was unresponsive: 3 liveness probe\(s\) in a row failed/.test(e.text)),
    { what: 'the liveness kill in the logs', timeoutMs: 60_000 },
  );
  const spinning = (await logs()).find((e) => e.stream === 'stdout' && e.text.includes('spinning on'));
  assert.ok(spinning, 'the spin started');
  const wedged = /spinning on (\S+)/.exec(spinning.text)![1]!;
  assert.equal(killed.instance, wedged, 'the spinning replica is the one killed');
  assert.match(killed.text, /killed with SIGKILL/);

  // Its replacement is ready within timeout + 5 s of the spin starting (platform timestamps).
  const replaced = await waitFor(
    async () =>
      (await logs()).find(
        (e) => e.stream === 'system' && / ready at /.test(e.text) && Date.parse(e.timestamp) > Date.parse(spinning.timestamp),
      ),
    { what: 'a replacement replica ready', timeoutMs: 60_000 },
  );
  const spinStartMs = Date.parse(spinning.timestamp);
  const replacedMs = Date.parse(replaced.timestamp);
  assert.ok(replacedMs - spinStartMs <= timeoutMs + 5000, `replaced ${replacedMs - spinStartMs} ms after the spin started:\n${timeline(await logs())}`);

  // The status says why, with a hint, and so does `fn logs` (above).
  const status = await api.status(name);
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
    during.filter((c) => c.status !== 200 && !(c.status === 502 && c.endMs - c.startMs >= timeoutMs)),
    [],
    'every call during the episode succeeded, or failed with 502 after its replica held it past the timeout',
  );

  // The spinning call itself ends in an error, not a hang, and was not sent on to wedge another replica.
  const spun = await spin;
  assert.equal(spun.status, 502, spun.body);
  assert.match(spun.body, /REPLICA_FAILED/);
  const all = await logs();
  assert.equal(all.filter((e) => e.stream === 'stdout' && e.text.includes('spinning on')).length, 1, `one replica spun:\n${timeline(all)}`);
  assert.equal((await api.status(name)).availableReplicas, 2);
}
