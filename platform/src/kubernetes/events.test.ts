import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { CoreV1Event } from '@kubernetes/client-node';
import { waitFor } from '../testing/index.js';
import { FunctionEventRecorder } from './events.js';

describe('FunctionEventRecorder', () => {
  const recorder = (core: { createNamespacedEvent: (p: { namespace: string; body: CoreV1Event }) => Promise<CoreV1Event> }, clock: { t: number }, warnings: string[] = []) =>
    new FunctionEventRecorder({
      core: core as never,
      namespace: 'kubefn',
      component: 'kubefn-autoscaler',
      now: () => clock.t,
      ratePerSecond: 2,
      burst: 3,
      onWarning: (m) => warnings.push(m),
    });

  it('writes an Event about the Function, once per repeat window, within its rate', async () => {
    const written: CoreV1Event[] = [];
    const clock = { t: 1_000_000 };
    const events = recorder({ createNamespacedEvent: async ({ body }) => (written.push(body), body) }, clock);
    events.record({ name: 'hello', uid: 'u-1' }, 'Normal', 'Scaled', 'scaled from 0 to 1 replica(s)');
    await waitFor(() => written.length === 1, { what: 'the event' });
    const e = written[0]!;
    assert.deepEqual(
      [e.involvedObject.kind, e.involvedObject.name, e.involvedObject.uid, e.involvedObject.apiVersion, e.type, e.reason, e.source?.component, e.metadata?.generateName],
      ['Function', 'hello', 'u-1', 'kubefn.dev/v1alpha1', 'Normal', 'Scaled', 'kubefn-autoscaler', 'hello.'],
    );
    // The same again within a minute: nothing; another message: written.
    events.record({ name: 'hello' }, 'Normal', 'Scaled', 'scaled from 0 to 1 replica(s)');
    events.record({ name: 'hello' }, 'Normal', 'Scaled', 'scaled from 1 to 3 replica(s)');
    await waitFor(() => written.length === 2, { what: 'the second event' });
    // A burst of 1,000 functions: the bucket (3, 1 left) lets one more through; the rest are dropped.
    for (let i = 0; i < 1000; i++) events.record({ name: `f${i}` }, 'Normal', 'Scaled', 'scaled from 0 to 1 replica(s)');
    await waitFor(() => written.length === 3, { what: 'the bucket\'s last token' });
    assert.equal(events.dropped, 999);
    // A second later, two more tokens.
    clock.t += 1000;
    for (let i = 0; i < 5; i++) events.record({ name: `g${i}` }, 'Warning', 'ReconcileFailed', 'x');
    await waitFor(() => written.length === 5, { what: 'two more' });
  });

  it('says once that writing failed, and never throws', async () => {
    const warnings: string[] = [];
    let calls = 0;
    const events = recorder({ createNamespacedEvent: async () => (calls++, Promise.reject(new Error('events is forbidden'))) }, { t: 0 }, warnings);
    events.record({ name: 'a' }, 'Warning', 'InvalidSpec', 'bad');
    events.record({ name: 'b' }, 'Warning', 'InvalidSpec', 'bad');
    await waitFor(() => calls === 2 && warnings.length === 1, { what: 'both tried, one warning' });
    assert.match(warnings[0]!, /writing a Kubernetes Event failed \(InvalidSpec of function "a"\)/);
  });
});
