// Finding this process's cpu cgroup from /proc/self/cgroup and mountinfo as they read on cgroup
// v2, v1 and hybrid machines, and the quota arithmetic.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cfsQuotaUs, findCpuCgroupDir } from './cpu-cgroup.js';

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
