// The autoscaler on the real embedded platform when its stats stop: 40 callers hold a function
// at 8 replicas (target 5), then the gateway's stats go unanswered for longer than the stable
// window plus the grace period (KUBEFN_TEST_STATS_BLACKOUT: while the file exists, the stats
// source answers as a gateway whose scrape failed). Missing data is not zero traffic: the
// replicas must stay, and scaling resumes when the stats come back.

import assert from 'node:assert/strict';
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { waitFor } from '@kubefn/platform/testing';
import { Api } from '../support/api.js';
import { closedLoop, deployBusy, reachAndSettle, watchReplicas } from '../support/busy-load.js';
import { newHome, startPlatform, type RunningPlatform } from '../support/platform-process.js';

const callers = 40;
const stableWindowMs = 6000;
const graceMs = 2000;

describe('autoscaling through a stats blackout on the embedded platform', () => {
  let platform: RunningPlatform;
  let api: Api;
  let blackout: string;

  before(async () => {
    const home = await newHome();
    blackout = path.join(home, 'stats-blackout');
    platform = await startPlatform(home, { env: { KUBEFN_TEST_STATS_BLACKOUT: blackout } });
    api = new Api(platform.url, platform.token);
  });
  after(async () => {
    await platform?.stop();
  });

  it('keeps about 8 replicas under steady load while no stats arrive for window + grace x 2, and goes to zero after', { timeout: 180_000 }, async () => {
    await deployBusy(api, 'busy', { stableWindowMs, graceMs });
    const load = closedLoop(api, 'busy', callers);
    // The platform's output keeps its last 500 lines, request lines among them: look while it runs.
    let saidWhy = false;
    const lookedWhy = () => {
      saidWhy ||= platform.output.some((l) => l.includes('holding the scale'));
    };
    try {
      await reachAndSettle(api, 'busy', 7, stableWindowMs);
      const atStart = (await api.status('busy')).replicas;
      assert.ok(atStart >= 7 && atStart <= 10, `about 8 replicas before the blackout: ${atStart}`);
      await writeFile(blackout, '');
      // Missing data is not zero traffic: the count it had holds (a decision in flight may move it by one).
      const during = await watchReplicas(api, 'busy', 2 * (stableWindowMs + graceMs), 500, lookedWhy);
      assert.ok(during.every((n) => Math.abs(n - atStart) <= 1), `replicas during the blackout held at ${atStart}: ${during.join(' ')}`);
      assert.ok(saidWhy, 'the platform said why it held the scale');
      await rm(blackout);
      const afterwards = await watchReplicas(api, 'busy', stableWindowMs, 500);
      assert.ok(afterwards.every((n) => n >= 7 && n <= 10), `replicas once the stats came back stayed about 8: ${afterwards.join(' ')}`);
    } finally {
      await load.stop();
    }
    // Deciding again on the stats that came back: idle -> zero.
    await waitFor(async () => (await api.status('busy')).replicas === 0, { timeoutMs: 60_000, what: 'busy back at zero' });
  });
});
