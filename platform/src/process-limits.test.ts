// The arithmetic from `resources` to a process replica's limits, and what the process driver
// warns about when it cannot hold a limit.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { CpuLimiter } from './cpu-cgroup.js';
import { MemoryWatchdog } from './memory-watchdog.js';
import { describeOutOfMemory, isHeapOutOfMemory } from './out-of-memory.js';
import { formatMiB, heapLimitMiB, memoryNodeArgs, ProcessLimiter, processMemoryLimit, type LimitedReplica } from './process-limits.js';
import { parseFunctionSpec } from './spec.js';

const MiB = 2 ** 20;

describe('heapLimitMiB', () => {
  // limit (MiB) -> old space (MiB): the limit less max(64, a quarter), never under 16.
  const cases: [number, number][] = [
    [32, 16],
    [64, 16],
    [80, 16],
    [96, 32],
    [128, 64],
    [256, 192],
    [512, 384],
    [1024, 768],
    [4096, 3072],
  ];
  for (const [limit, heap] of cases) {
    it(`gives ${heap} MiB of old space for a ${limit} MiB limit`, () => {
      assert.equal(heapLimitMiB(limit * MiB), heap);
    });
  }

  it('leaves at least 64 MiB of a limit to what is not old space, above the floor', () => {
    for (let limit = 80; limit <= 8192; limit += 16) assert.ok(limit - heapLimitMiB(limit * MiB) >= 64, `${limit} MiB`);
  });
});

describe('processMemoryLimit', () => {
  it('reads the quantity in binary and decimal units', () => {
    assert.deepEqual(processMemoryLimit(parseFunctionSpec({ name: 'a', resources: { memory: '128Mi' } })), { quantity: '128Mi', bytes: 128 * MiB, heapMiB: 64 });
    assert.equal(processMemoryLimit(parseFunctionSpec({ name: 'a', resources: { memory: '1G' } }))?.bytes, 1e9);
  });

  it('is absent without resources.memory, and so is the heap flag', () => {
    const limit = processMemoryLimit(parseFunctionSpec({ name: 'a', resources: { cpu: '1' } }));
    assert.equal(limit, undefined);
    assert.deepEqual(memoryNodeArgs(limit), []);
  });

  it('sets V8 old space through --max-old-space-size', () => {
    assert.deepEqual(memoryNodeArgs(processMemoryLimit(parseFunctionSpec({ name: 'a', resources: { memory: '1Gi' } }))), ['--max-old-space-size=768']);
  });
});

describe('out of memory reports', () => {
  it('says what the replica used and its limit, rounded up', () => {
    assert.equal(describeOutOfMemory('hello-3', { kind: 'rss', limit: '128Mi', usedBytes: 130 * MiB + 1 }), 'replica hello-3 used 131 MiB, over its 128Mi limit; killed');
    assert.equal(formatMiB(128 * MiB), '128 MiB');
  });

  it('tells a V8 heap crash from a kill, with and without a limit', () => {
    assert.equal(
      describeOutOfMemory('hello-3', { kind: 'heap', limit: '128Mi', heapMiB: 64 }),
      'replica hello-3 ran out of JavaScript heap (64 MiB, set from its 128Mi limit); V8 stopped it',
    );
    assert.equal(describeOutOfMemory('hello-3', { kind: 'heap' }), 'replica hello-3 ran out of JavaScript heap; V8 stopped it');
    assert.equal(describeOutOfMemory('hello-3', { kind: 'container', limit: '64Mi', confirmed: true }), 'replica hello-3 reached its 64Mi memory limit; killed by the kernel (OOM)');
    assert.equal(
      describeOutOfMemory('hello-3', { kind: 'container', limit: '64Mi', confirmed: false }),
      "replica hello-3 was killed (SIGKILL, exit 137) under its 64Mi memory limit, most likely by the kernel's OOM killer (podman did not confirm it)",
    );
  });

  it("recognises V8's out-of-memory lines and nothing else", () => {
    assert.ok(isHeapOutOfMemory('FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory'));
    assert.ok(isHeapOutOfMemory('FATAL ERROR: invalid array length Allocation failed - JavaScript heap out of memory'));
    assert.ok(!isHeapOutOfMemory('RangeError: Array buffer allocation failed'));
  });
});

describe('ProcessLimiter', () => {
  const refused: CpuLimiter = { enforced: false, reason: 'no cpu controller here', limit: () => () => {}, close: () => {} };

  it('warns at deploy that a cpu limit is not enforced, and why', () => {
    const limiter = new ProcessLimiter({ openCpu: () => refused });
    assert.deepEqual(limiter.warnings(parseFunctionSpec({ name: 'a', resources: { cpu: '500m', memory: '256Mi' } })), [
      'resources.cpu 500m is not enforced by the process driver on this machine: no cpu controller here',
    ]);
    limiter.close();
  });

  it('warns about a memory limit node cannot live in, and a GPU it does not assign', () => {
    const limiter = new ProcessLimiter({ openCpu: () => refused });
    const warnings = limiter.warnings(parseFunctionSpec({ name: 'a', resources: { memory: '32Mi', gpu: 1 } }));
    assert.equal(warnings.length, 2);
    assert.match(warnings[0]!, /^resources\.memory 32Mi is below the 80Mi a node replica needs/);
    assert.match(warnings[1]!, /^resources\.gpu 1 is not assigned by the process driver/);
    limiter.close();
  });

  it('has nothing to say when every limit is held, and opens no cgroup without a cpu limit', () => {
    let opened = 0;
    const limiter = new ProcessLimiter({ openCpu: () => (opened++, refused) });
    assert.deepEqual(limiter.warnings(parseFunctionSpec({ name: 'a', resources: { memory: '128Mi' } })), []);
    assert.equal(opened, 0);
    limiter.close();
  });

  it('puts a replica in its cpu cgroup and the watchdog, and takes it out of both once it is gone', async () => {
    const placed: string[] = [];
    const cpu: CpuLimiter = {
      enforced: true,
      reason: undefined,
      limit: (pid, name, cores) => (placed.push(`${name} ${pid} ${cores}`), () => placed.push(`released ${name}`)),
      close: () => {},
    };
    const watchdog = new MemoryWatchdog({ readRss: () => 1 });
    const limiter = new ProcessLimiter({ watchdog, openCpu: () => cpu });
    let exit!: () => void;
    const replica: LimitedReplica = { id: 'a-1', pid: 42, exited: new Promise<void>((r) => (exit = r)), killOverMemory: () => {} };
    limiter.hold(replica, parseFunctionSpec({ name: 'a', resources: { cpu: '250m', memory: '128Mi' } }), processMemoryLimit(parseFunctionSpec({ name: 'a', resources: { memory: '128Mi' } })));
    assert.deepEqual(placed, ['a-1 42 0.25']);
    assert.equal(watchdog.size, 1);
    exit();
    await replica.exited;
    await Promise.resolve();
    assert.deepEqual(placed, ['a-1 42 0.25', 'released a-1']);
    assert.equal(watchdog.size, 0);
    limiter.close();
  });

  it('reports a replica the kernel would not take in its cgroup as a warning', () => {
    const cpu: CpuLimiter = {
      enforced: true,
      reason: undefined,
      limit: () => {
        throw new Error('EBUSY');
      },
      close: () => {},
    };
    const limiter = new ProcessLimiter({ openCpu: () => cpu });
    const spec = parseFunctionSpec({ name: 'a', resources: { cpu: '1' } });
    assert.deepEqual(limiter.warnings(spec), []);
    limiter.hold({ id: 'a-1', pid: 42, exited: new Promise(() => {}), killOverMemory: () => {} }, spec, undefined);
    assert.deepEqual(limiter.warnings(spec), ['resources.cpu 1 may not be enforced: the kernel refused to put replica a-1 in its cpu cgroup: EBUSY']);
    limiter.close();
  });
});
