// Finding this process's cpu cgroup from /proc/self/cgroup and mountinfo as they read on cgroup
// v2, v1 and hybrid machines, the quota arithmetic, and the limiter on a directory standing in
// for a v1 cpu hierarchy (the real one is in tests/src/integration/resource-limits.test.ts).

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { cfsQuotaUs, findCpuCgroupDir, openCpuLimiter } from './cpu-cgroup.js';

const v2Mountinfo = '30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot';
const hybridMountinfo = [
  '25 24 0:22 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
  '26 25 0:23 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu',
  '27 25 0:24 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset',
  '28 25 0:25 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
].join('\n');

describe('findCpuCgroupDir', () => {
  it('takes the v2 group when its controllers include cpu', () => {
    const found = findCpuCgroupDir('0::/user.slice/app.scope\n', v2Mountinfo, (dir) => (dir === '/sys/fs/cgroup/user.slice/app.scope' ? 'cpuset cpu io memory pids' : undefined));
    assert.deepEqual(found, { version: 2, dir: '/sys/fs/cgroup/user.slice/app.scope' });
  });

  it('has none on v2 without the cpu controller', () => {
    assert.equal(findCpuCgroupDir('0::/app\n', v2Mountinfo, () => 'memory pids'), undefined);
  });

  it('falls back to the v1 cpu hierarchy on a hybrid machine whose v2 has no controllers', () => {
    const cgroup = '8:pids:/\n3:cpuset:/\n1:cpu:/sandbox\n0::/\n';
    assert.deepEqual(findCpuCgroupDir(cgroup, hybridMountinfo, () => ''), { version: 1, dir: '/sys/fs/cgroup/cpu/sandbox' });
  });

  it('finds cpu in a joint cpu,cpuacct hierarchy, not in cpuset', () => {
    const mountinfo = '26 25 0:23 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n27 25 0:24 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset';
    assert.deepEqual(findCpuCgroupDir('4:cpuset:/\n3:cpu,cpuacct:/a\n', mountinfo, () => undefined), { version: 1, dir: '/sys/fs/cgroup/cpu,cpuacct/a' });
  });

  it('maps a path under a mount whose root is not / (a container sees part of the tree)', () => {
    const mountinfo = '26 25 0:23 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw';
    assert.deepEqual(findCpuCgroupDir('0::/kubepods/pod1/c1\n', mountinfo, () => 'cpu'), { version: 2, dir: '/sys/fs/cgroup/c1' });
  });

  it('has none without any cgroup mount', () => {
    assert.equal(findCpuCgroupDir('', '', () => undefined), undefined);
  });
});

describe('cfsQuotaUs', () => {
  it('is the share of the 100 ms period, at least the 1 ms the kernel takes', () => {
    assert.equal(cfsQuotaUs(0.5), 50_000);
    assert.equal(cfsQuotaUs(2), 200_000);
    assert.equal(cfsQuotaUs(0.25), 25_000);
    assert.equal(cfsQuotaUs(0.001), 1000);
  });
});

describe('openCpuLimiter on a stand-in v1 hierarchy', () => {
  function machine(): { root: string; procDir: string; cpuDir: string } {
    const root = mkdtempSync(path.join(os.tmpdir(), 'kubefn-cpu-cgroup-'));
    const procDir = path.join(root, 'proc');
    const cpuDir = path.join(root, 'cpu');
    mkdirSync(procDir);
    writeFileSync(path.join(procDir, 'cgroup'), '1:cpu:/\n0::/\n');
    writeFileSync(path.join(procDir, 'mountinfo'), `26 25 0:23 / ${cpuDir} rw - cgroup cgroup rw,cpu\n`);
    return { root, procDir, cpuDir };
  }

  it('puts a process in a group of its own with its quota', () => {
    const { root, procDir, cpuDir } = machine();
    mkdirSync(cpuDir);
    const limiter = openCpuLimiter({ procDir, groupName: 'kubefn-test' });
    assert.equal(limiter.enforced, true);
    // Unlike a cgroup, a stand-in directory holding files cannot be removed: only what is written is checked.
    const release = limiter.limit(4242, 'hello-1', 0.5);
    const group = path.join(cpuDir, 'kubefn-test', 'hello-1');
    assert.equal(readFileSync(path.join(group, 'cpu.cfs_quota_us'), 'utf8'), '50000');
    assert.equal(readFileSync(path.join(group, 'cpu.cfs_period_us'), 'utf8'), '100000');
    assert.equal(readFileSync(path.join(group, 'cgroup.procs'), 'utf8'), '4242');
    release();
    limiter.close();
    limiter.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('is not enforced, and says why, where the hierarchy cannot be written', () => {
    const { root, procDir, cpuDir } = machine();
    writeFileSync(cpuDir, 'not a directory');
    const limiter = openCpuLimiter({ procDir, groupName: 'kubefn-test' });
    assert.equal(limiter.enforced, false);
    assert.match(limiter.reason ?? '', /^the cpu cgroup \(v1, .*\) refused a quota: ENOTDIR/);
    rmSync(root, { recursive: true, force: true });
  });

  it('is not enforced without any cpu cgroup', () => {
    const root = mkdtempSync(path.join(os.tmpdir(), 'kubefn-cpu-cgroup-'));
    writeFileSync(path.join(root, 'cgroup'), '0::/\n');
    writeFileSync(path.join(root, 'mountinfo'), '');
    const limiter = openCpuLimiter({ procDir: root });
    assert.equal(limiter.enforced, false);
    assert.equal(limiter.reason, 'this machine has no cpu cgroup controller this process can use');
    rmSync(root, { recursive: true, force: true });
  });

  it('removes the empty groups of drivers that are gone, and keeps live ones', () => {
    const { root, procDir, cpuDir } = machine();
    mkdirSync(path.join(cpuDir, 'kubefn-999999999', 'hello-1'), { recursive: true });
    mkdirSync(path.join(cpuDir, `kubefn-${process.pid}`), { recursive: true });
    const limiter = openCpuLimiter({ procDir, groupName: 'kubefn-test' });
    assert.equal(existsSync(path.join(cpuDir, 'kubefn-999999999')), false);
    assert.equal(existsSync(path.join(cpuDir, `kubefn-${process.pid}`)), true);
    limiter.close();
    rmSync(root, { recursive: true, force: true });
  });
});
