// The autoscaler on the real embedded platform: 40 callers against a function with target 5
// (at 100 % utilisation) must bring it to 8 replicas, and it must go back to zero once the load
// stops and the stable window plus the grace period have passed. Short windows keep it quick.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { waitFor } from '@kubefn/platform/testing';
import { Api } from '../support/api.js';
import { closedLoop, deployBusy, heldAround, reachAndSettle, watchReplicas } from '../support/busy-load.js';
import { newHome, startPlatform, type RunningPlatform } from '../support/platform-process.js';

const callers = 40;
const stableWindowMs = 6000;
const graceMs = 2000;

describe('autoscaling on the embedded platform', () => {
  let platform: RunningPlatform;
  let api: Api;

  before(async () => {
    platform = await startPlatform(await newHome());
    api = new Api(platform.url, platform.token);
  });
  after(async () => {
    await platform?.stop();
  });

  it('40 concurrent callers at target 5 -> about 8 replicas, then back to zero after window + grace', { timeout: 180_000 }, async () => {
    await deployBusy(api, 'busy', { stableWindowMs, graceMs });
    // Each caller sends one 300 ms request after another, so about 40 are always in flight.
    const load = closedLoop(api, 'busy', callers);
    try {
      // Reach the wanted scale and settle, then hold it over one more stable window.
      await reachAndSettle(api, 'busy', 7, stableWindowMs);
      const seen = await watchReplicas(api, 'busy', stableWindowMs, 500);
      assert.ok(heldAround(seen, 8), `replicas under 40 callers held around 8: ${seen.join(' ')}`);
    } finally {
      await load.stop();
    }
    assert.equal(load.failed, 0, 'no request failed while scaling');
    assert.ok(load.ok > callers, `${load.ok} calls answered`);

    const stoppedAt = Date.now();
    await waitFor(async () => (await api.status('busy')).replicas === 0, { timeoutMs: 60_000, what: 'busy back at zero' });
    const toZeroMs = Date.now() - stoppedAt;
    // The stable average reaches zero one window after the last request (1 s decisions).
    assert.ok(toZeroMs >= stableWindowMs + graceMs - 2000, `went to zero ${toZeroMs} ms after the load, before window + grace`);
  });
});
