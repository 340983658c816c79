// A function deleted and deployed again under the same name must start with no traffic history:
// the old one's requests, in the autoscaler's window or still in the gateway's counters, must not
// scale the new one from zero. (The cold-start benchmark redeploys one name at `initial: 0` over
// and over, and timed out waiting for it at zero when a decision counted the previous life's call.)
// Real process driver and gateway; the autoscaler's clock and ticks are moved by hand.

import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Autoscaler, ManualClock } from '@kubefn/autoscaler';
import { bundleFunction, packApp } from '@kubefn/builder';
import { createGateway, type Gateway } from '@kubefn/gateway';
import { AppStore, appImageRef, BundleStore, ProcessDriver } from '@kubefn/platform';
import { repoRoot } from '../support/platform-process.js';

const timeout = 120_000;

describe('redeploying a deleted function at zero', () => {
  let dir: string;
  let driver: ProcessDriver;
  let gateway: Gateway;
  let autoscaler: Autoscaler;
  let clock: ManualClock;
  let image: string;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'kubefn-redeploy-'));
    const bundles = await BundleStore.open(path.join(dir, 'bundles'));
    const bundle = await bundleFunction({ dir: path.join(repoRoot, 'tests', 'fixtures', 'hello'), handler: 'handler.js', outDir: path.join(dir, 'build') });
    const apps = await AppStore.open(path.join(dir, 'apps'));
    const app = await packApp(bundle);
    await apps.put(app.digest, Readable.from([app.tar]));
    image = appImageRef(app.digest);
    driver = new ProcessDriver({ bundles, apps });
    gateway = createGateway({ driver, bundles, apps });
    clock = new ManualClock(Date.now());
    // Wired as `fn up` wires them, but never started: the test makes every tick itself.
    autoscaler = new Autoscaler({ target: driver, sources: [gateway.stats], clock });
    gateway.onNoReplica = (fn) => void autoscaler.poke(fn);
  });
  after(async () => {
    await gateway?.close();
    await driver?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const deploy = async (name: string) => {
    const res = await gateway.app.inject({ method: 'POST', url: '/system/functions', payload: { name, image, scale: { initial: 0 } } });
    assert.equal(res.statusCode, 202, res.body);
  };
  const remove = async (name: string) => {
    const res = await gateway.app.inject({ method: 'DELETE', url: '/system/functions', payload: { functionName: name } });
    assert.equal(res.statusCode, 200, res.body);
  };
  const coldCall = async (name: string) => {
    const res = await gateway.app.inject({ method: 'GET', url: `/function/${name}` });
    assert.equal(res.statusCode, 200, res.body);
  };
  /** Moves the clock past the decision interval and runs the round the loop would run. */
  const decide = async () => {
    clock.advance(2000);
    await autoscaler.tick();
  };
  const assertStaysAtZero = async (name: string) => {
    await decide();
    assert.equal((await driver.get(name)).replicas, 0, 'the new function is left at zero');
    assert.equal(autoscaler.lastDecision(name)?.desired, 0);
  };

  it('does not count a call the autoscaler sampled before the delete', { timeout }, async () => {
    const name = 'sampled';
    await deploy(name);
    await coldCall(name);
    await decide(); // files the call in the window, and keeps the one replica it brought up
    assert.equal((await driver.get(name)).replicas, 1);
    await remove(name);
    await deploy(name);
    await assertStaysAtZero(name);
    await coldCall(name); // and the new function still scales from zero on its first call
    await remove(name);
  });

  it('does not count a call still in the gateway counters at the delete', { timeout }, async () => {
    const name = 'counted';
    await deploy(name);
    await coldCall(name);
    await remove(name);
    await deploy(name);
    await assertStaysAtZero(name);
    await coldCall(name);
    await remove(name);
  });
});
