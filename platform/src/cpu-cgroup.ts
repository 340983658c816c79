// Holds process replicas to their `resources.cpu` with a CFS quota: one cgroup per replica under
// a group of this driver's, cgroup v2 (cpu.max) where the cpu controller is delegated to us, else
// the v1 cpu hierarchy (cpu.cfs_quota_us). Where neither can be written, CPU is not enforced and
// `reason` says why.

import { mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/** The CFS period quotas are measured in, in µs (the kernel's default). */
export const cfsPeriodUs = 100_000;
/** The smallest quota the kernel takes, in µs. */
const minQuotaUs = 1000;

/** CPU time per period for `cores` CPUs ("500m" is 0.5), in µs: 0.5 core is 50000 of 100000. */
export function cfsQuotaUs(cores: number): number {
  return Math.max(minQuotaUs, Math.round(cores * cfsPeriodUs));
}

export type CgroupVersion = 1 | 2;

/** Where this process's cpu cgroup is: its directory and the hierarchy's version. */
export interface CpuCgroupDir {
  version: CgroupVersion;
  dir: string;
}

/**
 * The directory of this process's cgroup that controls CPU, from /proc/self/cgroup and
 * /proc/self/mountinfo: the v2 group when its hierarchy offers the cpu controller, else the
 * v1 hierarchy with `cpu` among its controllers; undefined when there is neither.
 */
export function findCpuCgroupDir(cgroupText: string, mountinfoText: string, readControllers: (dir: string) => string | undefined): CpuCgroupDir | undefined {
  const mounts = mountinfoText
    .split('\n')
    .map((line) => {
      const [left, right] = line.split(' - ');
      if (!left || !right) return undefined;
      const f = left.split(' ');
      const [fsType, , superOptions] = right.split(' ');
      return { root: f[3] ?? '/', mountPoint: f[4] ?? '', fsType, options: (superOptions ?? '').split(',') };
    })
    .filter((m) => m !== undefined);
  const groups = cgroupText
    .split('\n')
    .map((line) => /^(\d+):([^:]*):(.*)$/.exec(line))
    .filter((m) => m !== null)
    .map((m) => ({ id: m[1]!, controllers: m[2]!.split(','), path: m[3]! }));
  const under = (mount: { root: string; mountPoint: string }, p: string): string | undefined => {
    if (mount.root === '/') return path.join(mount.mountPoint, p);
    if (p === mount.root || p.startsWith(`${mount.root}/`)) return path.join(mount.mountPoint, p.slice(mount.root.length));
    return undefined;
  };
  const v2 = groups.find((g) => g.id === '0' && g.controllers.join('') === '');
  const v2Mount = mounts.find((m) => m.fsType === 'cgroup2');
  if (v2 && v2Mount) {
    const dir = under(v2Mount, v2.path);
    if (dir && (readControllers(dir) ?? '').split(/\s+/).includes('cpu')) return { version: 2, dir };
  }
  const v1 = groups.find((g) => g.controllers.includes('cpu'));
  const v1Mount = mounts.find((m) => m.fsType === 'cgroup' && m.options.includes('cpu'));
  if (v1 && v1Mount) {
    const dir = under(v1Mount, v1.path);
    if (dir) return { version: 1, dir };
  }
  return undefined;
}

/** The place replicas of one driver go to; `enforced` false means CPU limits are not held. */
export interface CpuLimiter {
  readonly enforced: boolean;
  /** Why CPU is not enforced, for deploy warnings ("the cgroup filesystem is read-only"). */
  readonly reason: string | undefined;
  /**
   * Moves `pid` into a cgroup of its own limited to `cores` CPUs. Returns the function that
   * removes the cgroup once the process is gone, or throws when the kernel refuses.
   */
  limit(pid: number, name: string, cores: number): () => void;
  /** Removes the driver's group (once its replicas are gone). Idempotent. */
  close(): void;
}

function writeQuota(version: CgroupVersion, dir: string, cores: number): void {
  if (version === 2) {
    writeFileSync(path.join(dir, 'cpu.max'), `${cfsQuotaUs(cores)} ${cfsPeriodUs}`);
  } else {
    writeFileSync(path.join(dir, 'cpu.cfs_period_us'), String(cfsPeriodUs));
    writeFileSync(path.join(dir, 'cpu.cfs_quota_us'), String(cfsQuotaUs(cores)));
  }
}

function readOrUndefined(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

function removeDir(dir: string): void {
  try {
    rmdirSync(dir);
  } catch {
    // Still busy (a grandchild lives on) or gone already: nothing more to do here.
  }
}

/** Removes the empty groups drivers that are gone left behind (`kubefn-<pid>` of a dead pid). */
function removeStaleGroups(dir: string): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    const m = /^kubefn-(\d+)$/.exec(name);
    if (!m || isAlive(Number(m[1]))) continue;
    const group = path.join(dir, name);
    let children: string[] = [];
    try {
      children = readdirSync(group, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name);
    } catch {
      continue;
    }
    for (const child of children) removeDir(path.join(group, child));
    removeDir(group);
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Finds where CPU can be limited on this machine and proves it by writing a quota into a probe
 * group: the group `kubefn-<pid>` of this driver is made under this process's own cgroup.
 */
export function openCpuLimiter(options: { procDir?: string; groupName?: string } = {}): CpuLimiter {
  const procDir = options.procDir ?? '/proc/self';
  const notEnforced = (reason: string): CpuLimiter => ({ enforced: false, reason, limit: () => () => {}, close: () => {} });
  const found = findCpuCgroupDir(readOrUndefined(path.join(procDir, 'cgroup')) ?? '', readOrUndefined(path.join(procDir, 'mountinfo')) ?? '', (dir) =>
    readOrUndefined(path.join(dir, 'cgroup.controllers')),
  );
  if (!found) return notEnforced('this machine has no cpu cgroup controller this process can use');
  const base = path.join(found.dir, options.groupName ?? `kubefn-${process.pid}`);
  removeStaleGroups(found.dir);
  try {
    mkdirSync(base, { recursive: true });
    // v2 hands a controller to a group's children only through its subtree_control.
    if (found.version === 2) writeFileSync(path.join(base, 'cgroup.subtree_control'), '+cpu');
    const probe = path.join(base, 'probe');
    mkdirSync(probe, { recursive: true });
    try {
      writeQuota(found.version, probe, 1);
    } finally {
      removeDir(probe);
    }
  } catch (err) {
    removeDir(base);
    return notEnforced(`the cpu cgroup (v${found.version}, ${found.dir}) refused a quota: ${(err as Error).message}`);
  }
  let closed = false;
  return {
    enforced: true,
    reason: undefined,
    limit(pid, name, cores) {
      const dir = path.join(base, name);
      mkdirSync(dir, { recursive: true });
      try {
        writeQuota(found.version, dir, cores);
        writeFileSync(path.join(dir, 'cgroup.procs'), String(pid));
      } catch (err) {
        removeDir(dir);
        throw err;
      }
      return () => removeDir(dir);
    },
    close() {
      if (closed) return;
      closed = true;
      removeDir(base);
    },
  };
}
