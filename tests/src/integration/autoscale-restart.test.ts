// The autoscaler on the real embedded platform when it restarts: 20 callers hold a function at 4
// replicas (target 5), then the autoscaler is replaced by a new one with the same options and no
// history (KUBEFN_TEST_AUTOSCALER_RESTART: a change to the file restarts it, as a new process
// would start). A new autoscaler knows nothing of the last stable window, which is not zero
// traffic: under the same load the replicas must stay (at most one fewer) through the next stable
// window, as Knative starts a restarted autoscaler in panic at the ready count.
//
// What it catches: a new autoscaler that read its empty window as idle seconds would average a
// few seconds of load over the whole 6 s window, want fewer replicas and, at max-scale-down-rate
// 2, halve 4 to 2 at its first decision (2 s in), below the 3 this test allows.

import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { waitFor } from '@kubefn/platform/testing';
import { Api } from '../support/api.js';
import { closedLoop, deployBusy, heldAround, reachAndSettle, watchReplicas } from '../support/busy-load.js';
import { newHome, startPlatform, type RunningPlatform } from '../support/platform-process.js';

const callers = 20;
/** callers / target: each caller keeps one request of 300 ms in flight. */
const replicas = 4;
const stableWindowMs = 6000;

describe('autoscaling through an autoscaler restart on the embedded platform', () => {
  let platform: RunningPlatform;
  let api: Api;
  let restart: string;

  before(async () => {
    const home = await newHome();
    restart = path.join(home, 'autoscaler-restart');
    platform = await startPlatform(home, { env: { KUBEFN_TEST_AUTOSCALER_RESTART: restart } });
    api = new Api(platform.url, platform.token);
  });
  after(async () => {
    await platform?.stop();
  });

  it(`keeps ${replicas} replicas (at most one fewer) under steady load through a stable window after a restart`, { timeout: 180_000 }, async () => {
    await deployBusy(api, 'steady', { stableWindowMs, graceMs: 2000 });
    const load = closedLoop(api, 'steady', callers);
    const watch = (ms: number) => watchReplicas(api, 'steady', ms, 250);
    const restarted = () => platform.output.filter((l) => l.includes('autoscaler restarted (test hook)')).length;
    try {
      await reachAndSettle(api, 'steady', replicas, stableWindowMs);
      // Settled at the load: a full stable window at the count before the restart.
      const before = await watch(stableWindowMs);
      assert.ok(heldAround(before, replicas), `replicas before the restart held around ${replicas}: ${before.join(' ')}`);

      await writeFile(restart, '1');
      await waitFor(() => restarted() === 1, { timeoutMs: 10_000, what: 'the autoscaler restarted' });
      // The new autoscaler's first stable window, and one decision round past it.
      const during = await watch(stableWindowMs + 2000);
      assert.ok(during.every((n) => n >= replicas - 1), `replicas after the restart never went below ${replicas - 1}: ${during.join(' ')}`);
      assert.ok(heldAround(during, replicas), `and held around ${replicas}: ${during.join(' ')}`);

    } finally {
      await load.stop();
    }
    // The new autoscaler decides (the old one stopped): idle -> zero; and a request at zero pokes
    // the new one, which starts a replica for it.
    await waitFor(async () => (await api.status('steady')).replicas === 0, { timeoutMs: 60_000, what: 'steady back at zero' });
    const res = await fetch(`${api.url}/function/steady?ms=1`);
    assert.equal(res.status, 200, await res.text());
  });
});
