// Closed-loop load for the autoscaling tests on `fn up`: a function of tests/fixtures/slow that
// holds each call for 300 ms, callers that each keep one call in flight, and a look at the
// replica count while it runs.

import path from 'node:path';
import assert from 'node:assert/strict';
import { Agent, fetch } from 'undici';
import { waitFor } from '@kubefn/platform/testing';
import { Api } from './api.js';
import { repoRoot } from './platform-process.js';

const slow = path.join(repoRoot, 'tests', 'fixtures', 'slow');

/** Deploys `name` from tests/fixtures/slow at zero, target 5 in flight per replica at 100 %. */
export async function deployBusy(api: Api, name: string, windows: { stableWindowMs: number; graceMs: number }): Promise<void> {
  const image = await api.upload(slow, 'handler.js');
  await api.deploy({
    name,
    image,
    scale: {
      min: 0,
      max: 20,
      initial: 0,
      target: 5,
      targetUtilizationPercent: 100,
      stableWindow: `${windows.stableWindowMs / 1000}s`,
      scaleToZeroGrace: `${windows.graceMs / 1000}s`,
    },
  });
}

export interface ClosedLoop {
  /** Calls answered 200, and answered with another status. */
  readonly ok: number;
  readonly failed: number;
  /** Stops the callers and waits for them; rejects if a call failed to get any answer. */
  stop(): Promise<void>;
}

/** `callers` loops, each sending one 300 ms call to `name` after another: about `callers` in flight. */
export function closedLoop(api: Api, name: string, callers: number): ClosedLoop {
  let stopped = false;
  const agent = new Agent({ connections: callers + 8 });
  const counts = { ok: 0, failed: 0 };
  // Stopping lets each caller's last call finish (300 ms) rather than abort it.
  const loop = async (): Promise<void> => {
    while (!stopped) {
      const res = await fetch(`${api.url}/function/${name}?ms=300`, { dispatcher: agent });
      await res.text();
      if (res.status === 200) counts.ok++;
      else counts.failed++;
    }
  };
  const running = Array.from({ length: callers }, loop);
  return {
    get ok() {
      return counts.ok;
    },
    get failed() {
      return counts.failed;
    },
    async stop() {
      stopped = true;
      const results = await Promise.allSettled(running);
      await agent.close();
      const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failure) throw failure.reason;
    },
  };
}

/** The function's replica count every `everyMs` for `ms`; `onLook` runs at each look. */
export async function watchReplicas(api: Api, name: string, ms: number, everyMs: number, onLook: () => void = () => {}): Promise<number[]> {
  const seen: number[] = [];
  const until = Date.now() + ms;
  while (Date.now() < until) {
    seen.push((await api.status(name)).replicas);
    onLook();
    await new Promise((r) => setTimeout(r, everyMs));
  }
  return seen;
}

/**
 * Whether a count held around `want` under a closed loop: every look within `want` - 1 ..
 * `want` + 2 and at least half of them within `want` +- 1. The demand estimate (arrivals x
 * service time, per second) is noisier than a concurrency count on a busy 2-core machine: a
 * second of bunched arrivals may add one replica for a moment.
 */
export function heldAround(seen: number[], want: number): boolean {
  const within = seen.filter((n) => Math.abs(n - want) <= 1).length;
  return seen.every((n) => n >= want - 1 && n <= want + 2) && within >= seen.length / 2;
}

/**
 * Waits for `ready` ready replicas of `name`, then one stable window more: the burst of a start
 * from zero (every caller queued at once, then released together) leaves the windows. It must
 * not run away meanwhile (at most twice `ready`).
 */
export async function reachAndSettle(api: Api, name: string, ready: number, stableWindowMs: number): Promise<void> {
  await waitFor(async () => (await api.status(name)).availableReplicas >= ready, { timeoutMs: 60_000, what: `${ready} ready replicas` });
  const settling = await watchReplicas(api, name, stableWindowMs, 500);
  assert.ok(settling.every((n) => n <= 2 * ready), `replicas while settling stayed at most ${2 * ready}: ${settling.join(' ')}`);
}
