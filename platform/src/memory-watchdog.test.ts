// The memory watchdog with RSS readings made up by the test: who is killed, when it stops
// watching, how often it reads, and that many processes share one timer.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';
import { MemoryWatchdog, procRss } from './memory-watchdog.js';

const MiB = 2 ** 20;

describe('MemoryWatchdog', () => {
  it('reports a process over its limit once, with what it used, and stops watching it', () => {
    const rss = new Map([[1, 100 * MiB], [2, 200 * MiB]]);
    const watchdog = new MemoryWatchdog({ readRss: (pid) => rss.get(pid) });
    const over: string[] = [];
    watchdog.watch(1, 128 * MiB, (used) => over.push(`1 ${used / MiB}`));
    watchdog.watch(2, 128 * MiB, (used) => over.push(`2 ${used / MiB}`));
    watchdog.sweep();
    assert.deepEqual(over, ['2 200']);
    watchdog.sweep();
    assert.deepEqual(over, ['2 200'], 'reported once');
    assert.equal(watchdog.size, 1);
    rss.set(1, 129 * MiB);
    watchdog.sweep();
    assert.deepEqual(over, ['2 200', '1 129']);
    assert.equal(watchdog.size, 0);
    assert.equal(watchdog.ticking, false, 'no timer once nothing is watched');
    watchdog.close();
  });

  it('does not report a process at its limit exactly', () => {
    const watchdog = new MemoryWatchdog({ readRss: () => 128 * MiB });
    let over = 0;
    watchdog.watch(1, 128 * MiB, () => over++);
    watchdog.sweep();
    assert.equal(over, 0);
    watchdog.close();
  });

  it('forgets a process that is gone, and one unwatched', () => {
    const watchdog = new MemoryWatchdog({ readRss: (pid) => (pid === 1 ? undefined : MiB) });
    watchdog.watch(1, 128 * MiB, () => assert.fail('gone'));
    const unwatch = watchdog.watch(2, 128 * MiB, () => assert.fail('unwatched'));
    watchdog.sweep();
    assert.equal(watchdog.size, 1);
    unwatch();
    assert.equal(watchdog.size, 0);
    assert.equal(watchdog.ticking, false);
    watchdog.close();
  });

  it('watches a thousand processes with one timer, and reads each once a sweep', async () => {
    let reads = 0;
    let sweeps = 0;
    const watchdog = new MemoryWatchdog({ intervalMs: 1, readRss: () => (reads++, MiB) });
    const realSetTimeout = globalThis.setTimeout;
    let timers = 0;
    globalThis.setTimeout = ((fn: () => void, ms?: number) => (timers++, realSetTimeout(fn, ms))) as typeof setTimeout;
    try {
      for (let pid = 1; pid <= 1000; pid++) watchdog.watch(pid, 128 * MiB, () => {});
      assert.equal(timers, 1, 'one timer for all of them');
      const sweep = watchdog.sweep.bind(watchdog);
      watchdog.sweep = () => (sweeps++, sweep());
      await new Promise<void>((resolve) => {
        const check = (): void => void (sweeps >= 2 ? resolve() : realSetTimeout(check, 1));
        check();
      });
    } finally {
      globalThis.setTimeout = realSetTimeout;
      watchdog.close();
    }
    assert.ok(reads >= 2000 && reads % 1000 === 0, `${reads} reads in ${sweeps} sweeps`);
    assert.equal(watchdog.ticking, false);
  });

  it('reads sooner once a process is near its limit', async () => {
    let rss = 10 * MiB;
    let sweeps = 0;
    const watchdog = new MemoryWatchdog({ intervalMs: 60_000, nearIntervalMs: 1, readRss: () => (sweeps++, rss) });
    watchdog.watch(1, 100 * MiB, () => {});
    watchdog.sweep();
    assert.equal(sweeps, 1);
    rss = 80 * MiB;
    watchdog.sweep();
    // The next read comes after nearIntervalMs, not the minute of intervalMs.
    await new Promise<void>((resolve) => {
      const check = (): void => void (sweeps >= 3 ? resolve() : setTimeout(check, 1));
      check();
    });
    watchdog.close();
  });

  it('watches nothing after close', () => {
    const watchdog = new MemoryWatchdog({ readRss: () => 200 * MiB });
    watchdog.close();
    watchdog.watch(1, MiB, () => assert.fail('closed'));
    assert.equal(watchdog.size, 0);
    assert.equal(watchdog.ticking, false);
  });
});

describe('procRss', () => {
  it("reads a live process's resident memory, and nothing for one that is gone", async () => {
    const own = procRss(process.pid);
    assert.ok(own !== undefined && own > 10 * MiB && own < 4096 * MiB, String(own));
    const child = spawn(process.execPath, ['-e', '0']);
    await new Promise((resolve) => child.on('exit', resolve));
    assert.equal(procRss(child.pid!), undefined);
  });
});
