// Scale from zero on the real embedded platform (`fn up`): 100 concurrent requests to a function
// at zero all answer 200, and the gateway sent the autoscaler one poke for all of them (its
// kubefn_autoscaler_pokes_total counter), not one per waiting request.

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Agent, fetch } from 'undici';
import { waitFor } from '@kubefn/platform/testing';
import { Api } from '../support/api.js';
import { newHome, repoRoot, startPlatform, type RunningPlatform } from '../support/platform-process.js';

const hello = path.join(repoRoot, 'tests', 'fixtures', 'hello');
const callers = 100;

describe('the cold poke on the embedded platform', () => {
  let platform: RunningPlatform;
  let api: Api;

  before(async () => {
    platform = await startPlatform(await newHome());
    api = new Api(platform.url, platform.token);
  });
  after(async () => {
    await platform?.stop();
  });

  it('100 concurrent requests to a function at zero all answer 200, with one poke for them all', { timeout: 120_000 }, async () => {
    const image = await api.upload(hello, 'handler.js');
    await api.deploy({ name: 'cold', image, timeout: '60s', scale: { min: 0, max: 4, initial: 0 } });
    await waitFor(async () => (await api.status('cold')).replicas === 0, { what: 'the function at zero', timeoutMs: 10_000 });

    const agent = new Agent({ connections: callers });
    try {
      const answers = await Promise.all(
        Array.from({ length: callers }, async () => {
          const res = await fetch(`${api.url}/function/cold`, { dispatcher: agent });
          await res.text();
          return res.status;
        }),
      );
      assert.deepEqual(answers.filter((s) => s !== 200), [], 'every request answered 200');
    } finally {
      await agent.close();
    }
    const metrics = await (await fetch(`${api.url}/metrics`)).text();
    const pokes = metrics.match(/^kubefn_autoscaler_pokes_total\{function="cold"\} (\d+)$/m);
    assert.ok(pokes, `a poke counter for "cold" on /metrics:\n${metrics.split('\n').filter((l) => l.includes('pokes')).join('\n')}`);
    const coldStart = metrics.match(/^kubefn_gateway_cold_start_seconds_sum\{function="cold"\} (\S+)$/m)?.[1];
    assert.equal(Number(pokes[1]), 1, `one poke for the 100 cold requests (their waits for a replica, summed: ${coldStart} s)`);
  });
});
