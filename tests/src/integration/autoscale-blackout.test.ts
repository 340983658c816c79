// The autoscaler on the real embedded platform when its stats stop: 40 callers hold a function
// at 8 replicas (target 5), then the gateway's stats go unanswered for longer than the stable
// window plus the grace period (KUBEFN_TEST_STATS_BLACKOUT: while the file exists, the stats
// source answers as a gateway whose scrape failed). Missing data is not zero traffic: the
// replicas must stay, and scaling resumes when the stats come back.

import assert from 'node:assert/strict';
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Agent, fetch } from 'undici';
import { waitFor } from '@kubefn/platform/testing';
import { Api } from '../support/api.js';
import { newHome, repoRoot, startPlatform, type RunningPlatform } from '../support/platform-process.js';

const slow = path.join(repoRoot, 'tests', 'fixtures', 'slow');
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

  it('keeps 8 replicas (+-1) under steady load while no stats arrive for window + grace x 2, and goes to zero after', { timeout: 180_000 }, async () => {
    const image = await api.upload(slow, 'handler.js');
    await api.deploy({
      name: 'busy',
      image,
      scale: {
        min: 0,
        max: 20,
        initial: 0,
        target: 5,
        targetUtilizationPercent: 100,
        stableWindow: `${stableWindowMs / 1000}s`,
        scaleToZeroGrace: `${graceMs / 1000}s`,
      },
    });

    const stop = new AbortController();
    const agent = new Agent({ connections: callers + 8 });
    const loop = async (): Promise<void> => {
      while (!stop.signal.aborted) {
        try {
          const res = await fetch(`${api.url}/function/busy?ms=300`, { signal: stop.signal, dispatcher: agent });
          await res.text();
        } catch (err) {
          if (!stop.signal.aborted) throw err;
        }
      }
    };
    const running = Array.from({ length: callers }, loop);

    // The platform's output keeps its last 500 lines, request lines among them: look while it runs.
    let saidWhy = false;
    const watch = async (ms: number): Promise<number[]> => {
      const seen: number[] = [];
      const until = Date.now() + ms;
      while (Date.now() < until) {
        seen.push((await api.status('busy')).replicas);
        saidWhy ||= platform.output.some((l) => l.includes('holding the scale'));
        await new Promise((r) => setTimeout(r, 500));
      }
      return seen;
    };
    try {
      await waitFor(async () => (await api.status('busy')).availableReplicas >= 7, { timeoutMs: 60_000, what: '7 ready replicas' });
      await writeFile(blackout, '');
      const during = await watch(2 * (stableWindowMs + graceMs));
      assert.ok(during.every((n) => n >= 7 && n <= 9), `replicas during the blackout stayed in 7..9: ${during.join(' ')}`);
      assert.ok(saidWhy, 'the platform said why it held the scale');
      await rm(blackout);
      const afterwards = await watch(stableWindowMs);
      assert.ok(afterwards.every((n) => n >= 7 && n <= 9), `replicas once the stats came back stayed in 7..9: ${afterwards.join(' ')}`);
    } finally {
      stop.abort();
      await Promise.allSettled(running);
      await agent.close();
    }
    // Deciding again on the stats that came back: idle -> zero.
    await waitFor(async () => (await api.status('busy')).replicas === 0, { timeoutMs: 60_000, what: 'busy back at zero' });
  });
});
