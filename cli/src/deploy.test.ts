// waitForFunction: polls until ready, tolerates "not found yet", stops at its deadline or on abort.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { KubefnError, parseFunctionSpec } from '@kubefn/platform';
import type { FunctionInfo, GatewayClient } from './client.js';
import { triggerWarnings, waitForFunction } from './deploy.js';

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
