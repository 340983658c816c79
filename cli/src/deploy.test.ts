// waitForFunction: polls until ready, tolerates "not found yet", stops at its deadline or on abort.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { KubefnError, parseFunctionSpec } from '@kubefn/platform';
import type { FunctionInfo, GatewayClient } from './client.js';
import { statusWarnings, triggerWarnings, waitForFunction } from './deploy.js';

/** A client whose getFunction answers from a script, one entry per call (the last repeats). */
function scripted(answers: (Partial<FunctionInfo> | Error)[]): { client: GatewayClient; calls: () => number } {
  let calls = 0;
  const client = {
    async getFunction(name: string): Promise<FunctionInfo> {
      const answer = answers[Math.min(calls++, answers.length - 1)];
      if (answer instanceof Error) throw answer;
      return { name, image: '', replicas: 1, availableReplicas: 0, invocationCount: 0, spec: parseFunctionSpec({ name }), ...answer };
    },
  };
  return { client: client as unknown as GatewayClient, calls: () => calls };
}

const notFound = new KubefnError('NOT_FOUND', 'function "hello" not found');

describe('waitForFunction', () => {
  it('keeps polling through NOT_FOUND and unready replicas until one is available', async () => {
    const { client, calls } = scripted([notFound, { availableReplicas: 0 }, { availableReplicas: 1 }]);
    const info = await waitForFunction(client, 'hello', { minReady: 1, timeoutMs: 5000 });
    assert.equal(info.availableReplicas, 1);
    assert.equal(calls(), 3);
  });

  it('returns at once when no replica is required (scale from zero)', async () => {
    const { client, calls } = scripted([{ availableReplicas: 0, replicas: 0 }]);
    assert.equal((await waitForFunction(client, 'hello', { minReady: 0, timeoutMs: 5000 })).replicas, 0);
    assert.equal(calls(), 1);
  });

  it('gives up at the deadline with the last state and a hint', async () => {
    const { client } = scripted([{ availableReplicas: 0, replicas: 1 }]);
    const started = performance.now();
    await assert.rejects(waitForFunction(client, 'hello', { minReady: 1, timeoutMs: 400 }), (err: KubefnError) => {
      assert.equal(err.code, 'DEADLINE_EXCEEDED');
      assert.match(err.message, /not ready after 400ms \(0\/1 replicas ready\)/);
      assert.match(err.hint ?? '', /fn logs hello/);
      return true;
    });
    const elapsed = performance.now() - started;
    assert.ok(elapsed >= 399, `gave up after ${elapsed}ms, before the 400ms deadline`);
  });

  it('stops on abort and passes other errors through', async () => {
    const controller = new AbortController();
    // The user presses Ctrl-C during the first poll, which then fails as an aborted fetch does.
    const client = {
      async getFunction(): Promise<FunctionInfo> {
        controller.abort();
        throw controller.signal.reason;
      },
    } as unknown as GatewayClient;
    const waiting = waitForFunction(client, 'hello', { minReady: 1, timeoutMs: 60_000, signal: controller.signal });
    await assert.rejects(waiting, { name: 'AbortError' });

    const failing = scripted([new KubefnError('UNAUTHORIZED', 'no token')]);
    await assert.rejects(waitForFunction(failing.client, 'hello', { minReady: 1, timeoutMs: 5000 }), { code: 'UNAUTHORIZED' });
  });
});

describe('waitForFunction against a gateway that reports the rollout', () => {
  const rollout = { generation: 2, observedGeneration: 2 };

  it('returns at once for a function at zero with the new spec applied, however scale.initial reads', async () => {
    const { client, calls } = scripted([{ ...rollout, replicas: 0, availableReplicas: 0, updatedReplicas: 0 }]);
    // minReady 1 is what the spec's initial asks for; it must not make a redeploy at zero wait.
    assert.equal((await waitForFunction(client, 'hello', { minReady: 1, timeoutMs: 5000 })).replicas, 0);
    assert.equal(calls(), 1);
  });

  it('does not count an old replica: waits until every ready replica runs the new spec', async () => {
    const { client, calls } = scripted([
      { generation: 2, observedGeneration: 1, replicas: 1, availableReplicas: 1, updatedReplicas: 0 },
      { ...rollout, replicas: 1, availableReplicas: 1, updatedReplicas: 0 },
      { ...rollout, replicas: 1, availableReplicas: 2, updatedReplicas: 1 },
      { ...rollout, replicas: 1, availableReplicas: 1, updatedReplicas: 1 },
    ]);
    const info = await waitForFunction(client, 'hello', { minReady: 1, timeoutMs: 10_000 });
    assert.equal(info.updatedReplicas, 1);
    assert.equal(calls(), 4);
  });

  it('fails at once with LOAD_FAILED, the file:line and a hint to the logs', async () => {
    const loadError = { code: 'LOAD_FAILED', message: 'the handler module threw while loading: boom', location: 'handler.js:4:7' };
    const { client, calls } = scripted([{ ...rollout, replicas: 1, availableReplicas: 0, updatedReplicas: 0, loadError }]);
    await assert.rejects(waitForFunction(client, 'hello', { minReady: 1, timeoutMs: 60_000 }), (err: KubefnError) => {
      assert.equal(err.code, 'LOAD_FAILED');
      assert.equal(err.message, 'function "hello" cannot load its handler: handler.js:4:7: the handler module threw while loading: boom');
      assert.match(err.hint ?? '', /fn logs hello/);
      return true;
    });
    assert.equal(calls(), 1, 'no second poll');
  });

  it('names the handler file when the error has no line, and ignores a load error of a spec not applied yet', async () => {
    const loadError = { code: 'LOAD_FAILED', message: 'the handler module is not usable: it has no default export' };
    const { client } = scripted([
      { generation: 3, observedGeneration: 2, replicas: 1, availableReplicas: 0, updatedReplicas: 0, loadError },
      { generation: 3, observedGeneration: 3, replicas: 1, availableReplicas: 0, updatedReplicas: 0, loadError },
    ]);
    await assert.rejects(waitForFunction(client, 'hello', { minReady: 1, timeoutMs: 60_000 }), /cannot load its handler: handler\.js: the handler module is not usable/);
  });

  it('says what it still waited for at the deadline, with the last error', async () => {
    const lastError = { code: 'START_FAILED', message: 'replica hello-3 failed to start: exited with code 1' };
    const { client } = scripted([{ ...rollout, replicas: 1, availableReplicas: 1, updatedReplicas: 0, lastError }]);
    await assert.rejects(waitForFunction(client, 'hello', { minReady: 1, timeoutMs: 300 }), (err: KubefnError) => {
      assert.equal(err.code, 'DEADLINE_EXCEEDED');
      assert.match(err.message, /0 of 1 ready replica\(s\) run the new version \(1 wanted\); last error: replica hello-3 failed to start/);
      return true;
    });
  });
});

describe('triggerWarnings', () => {
  const spec = parseFunctionSpec({ name: 'orders', triggers: [{ type: 'http' }, { type: 'jetstream', stream: 'ORDERS', subject: 'orders.new' }] });
  const info = (events: FunctionInfo['events']): FunctionInfo => ({ name: 'orders', image: '', replicas: 1, availableReplicas: 1, invocationCount: 0, spec, ...(events ? { events } : {}) });

  it('says nothing for a gateway without events or with every trigger ready', () => {
    assert.deepEqual(triggerWarnings(info(undefined)), []);
    assert.deepEqual(triggerWarnings(info({ nats: { connected: true }, triggers: [{ type: 'jetstream', index: 1, ready: true }] })), []);
  });

  it('names the lost NATS connection, or each trigger that is not ready with why', () => {
    const down = triggerWarnings(info({ nats: { connected: false, error: 'disconnected from 127.0.0.1:4222' }, triggers: [{ type: 'jetstream', index: 1, ready: false }] }));
    assert.deepEqual(down, ['the gateway has no NATS connection (disconnected from 127.0.0.1:4222): event triggers start when it is back (see fn describe)']);
    const stuck = triggerWarnings(info({ nats: { connected: true }, triggers: [{ type: 'jetstream', index: 1, ready: false, error: 'insufficient resources' }] }));
    assert.deepEqual(stuck, ['trigger 1 (jetstream orders.new) is not ready: insufficient resources; it is retried in the background (see fn describe)']);
  });
});

describe('statusWarnings', () => {
  it('passes on what the gateway does not enforce, before the trigger warnings', () => {
    const spec = parseFunctionSpec({ name: 'hog', resources: { cpu: '1' }, triggers: [{ type: 'nats', subject: 'a' }] });
    const info: FunctionInfo = {
      name: 'hog',
      image: '',
      replicas: 1,
      availableReplicas: 1,
      invocationCount: 0,
      spec,
      warnings: ['resources.cpu 1 is not enforced by the process driver on this machine: no cpu controller'],
      events: { nats: { connected: false }, triggers: [] },
    };
    assert.deepEqual(statusWarnings(info), [
      'resources.cpu 1 is not enforced by the process driver on this machine: no cpu controller',
      'the gateway has no NATS connection: event triggers start when it is back (see fn describe)',
    ]);
    assert.deepEqual(statusWarnings(undefined), []);
  });
});
