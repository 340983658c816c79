// Leaving the machine as a kubelet node found it, synchronously so it also runs on process exit
// (exit-cleanup.ts): any process still naming the node's directory and its descendants (shims,
// containers) is killed, every mount under the directory is unmounted, the bridge, the container
// cgroups, the shims' sockets in /run/containerd/s, libcni's cached results in
// /var/lib/cni/results and the kubelet's /var/log/containers links go, `kube-proxy --cleanup`
// (and a sweep of anything left) removes the KUBE-* iptables chains, and the directory is removed.
// A node whose process died without any of that (SIGKILL) is swept the same way by the next
// startKubeletNode (sweepLeftovers).

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, readlinkSync, rmdirSync, rmSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stopSync } from './exit-cleanup.js';

/** Every node's temporary directory is tmpdir()/<nodeDirPrefix>XXXXXX. */
export const nodeDirPrefix = 'kubefn-kubelet-';

export interface NodeState {
  dir: string;
  bridge: string;
  socket: string;
  kubeProxy?: string;
  /** Container and sandbox ids seen before ctr deleted them (containerIds() finds the rest). */
  ids?: string[];
}

const tryExec = (file: string, args: string[], timeout = 30_000): string | undefined => {
  try {
    return execFileSync(file, args, { stdio: ['ignore', 'pipe', 'ignore'], timeout }).toString();
  } catch {
    return undefined;
  }
};

/** Processes whose command line names `dir`, and all their descendants. */
function processesOf(dir: string): number[] {
  const parent = new Map<number, number>();
  const roots: number[] = [];
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      parent.set(pid, Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').some((arg) => arg.includes(`${dir}/`) || arg === dir)) roots.push(pid);
    } catch {
      // gone
    }
  }
  const found = new Set(roots);
  for (let grew = true; grew; ) {
    grew = false;
    for (const [pid, ppid] of parent) {
      if (!found.has(pid) && found.has(ppid)) {
        found.add(pid);
        grew = true;
      }
    }
  }
  return [...found];
}

/** Mount points at or under `dir`, deepest (latest) first. */
function mountsUnder(dir: string): string[] {
  const points: string[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const point = line.split(' ')[4]?.replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (point && (point === dir || point.startsWith(`${dir}/`))) points.push(point);
  }
  return points.reverse().sort((a, b) => b.split('/').length - a.split('/').length);
}

/** Container and sandbox ids containerd knows under `dir`. */
export function containerIds(dir: string): string[] {
  const ids = new Set<string>();
  for (const d of [
    path.join(dir, 'containerd', 'state', 'io.containerd.runtime.v2.task', 'k8s.io'),
    path.join(dir, 'containerd', 'root', 'io.containerd.grpc.v1.cri', 'containers'),
    path.join(dir, 'containerd', 'root', 'io.containerd.grpc.v1.cri', 'sandboxes'),
    path.join(dir, 'containerd', 'state', 'io.containerd.grpc.v1.cri', 'containers'),
    path.join(dir, 'containerd', 'state', 'io.containerd.grpc.v1.cri', 'sandboxes'),
  ]) {
    try {
      for (const id of readdirSync(d)) if (/^[0-9a-f]{64}$/.test(id)) ids.add(id);
    } catch {
      // not there
    }
  }
  return [...ids];
}

/** Removes every KUBE-* iptables chain left in `table` (and the rules jumping to them). */
function removeKubeChains(iptables: string, table: string): void {
  const saved = tryExec(`${iptables}-save`, ['-t', table]);
  if (!saved || !saved.includes('KUBE-')) return;
  const chains = [...saved.matchAll(/^:(KUBE-\S+)/gm)].map((m) => m[1]!);
  const jumps = saved.split('\n').filter((l) => l.startsWith('-A ') && !l.startsWith('-A KUBE-') && /-j KUBE-\S+/.test(l));
  const script = [`*${table}`, ...jumps.map((l) => `-D ${l.slice(3)}`), ...chains.map((c) => `-F ${c}`), ...chains.map((c) => `-X ${c}`), 'COMMIT', ''].join('\n');
  try {
    execFileSync(`${iptables}-restore`, ['--noflush'], { input: script, stdio: ['pipe', 'ignore', 'ignore'], timeout: 30_000 });
  } catch {
    // best effort
  }
}

/** Everything a node leaves, removed: processes, mounts, bridge, cgroups, sockets, log links, iptables chains, the directory. */
export function teardownSync(state: NodeState): void {
  const { dir } = state;
  // Processes: SIGKILL the lot at once (parents first would reparent their children out of sight).
  stopSync(processesOf(dir), 'SIGKILL');
  const ids = [...new Set([...(state.ids ?? []), ...containerIds(dir)])];
  // The shims' sockets: /run/containerd/s/<sha256(<address>/<namespace>/<id>)>, kept when a shim is killed.
  for (const id of ids) rmSync(`/run/containerd/s/${createHash('sha256').update(path.join(state.socket, 'k8s.io', id)).digest('hex')}`, { force: true });
  // Mounts: overlay rootfs, sandbox shm, network namespaces, kubelet volumes and its own root.
  for (const point of mountsUnder(dir)) {
    if (tryExec('umount', [point]) === undefined) tryExec('umount', ['-l', point]);
  }
  tryExec('ip', ['link', 'delete', state.bridge]);
  // libcni's cached results of sandboxes torn down without a CNI DEL: <network>-<id>-<if>, cni-loopback-<id>-lo.
  try {
    for (const f of readdirSync('/var/lib/cni/results')) if (ids.some((id) => f.includes(`-${id}-`))) rmSync(path.join('/var/lib/cni/results', f), { force: true });
  } catch {
    // no such directory
  }
  // Container cgroups (runc deletes them with the container; not when it was killed).
  const hierarchies = ((): string[] => {
    try {
      const top = readdirSync('/sys/fs/cgroup').map((c) => path.join('/sys/fs/cgroup', c));
      return [...top, '/sys/fs/cgroup'];
    } catch {
      return [];
    }
  })();
  for (const h of hierarchies) {
    for (const id of ids) {
      try {
        rmdirSync(path.join(h, 'k8s.io', id));
      } catch {
        // not there
      }
    }
    try {
      if (existsSync(path.join(h, 'k8s.io')) && !readdirSync(path.join(h, 'k8s.io')).some((e) => /^[0-9a-f]{64}$/.test(e))) rmdirSync(path.join(h, 'k8s.io'));
    } catch {
      // in use
    }
  }
  // The kubelet's /var/log/containers links into our pod log directory.
  try {
    for (const link of readdirSync('/var/log/containers')) {
      const file = path.join('/var/log/containers', link);
      try {
        if (readlinkSync(file).startsWith(`${dir}/`)) unlinkSync(file);
      } catch {
        // not a link
      }
    }
  } catch {
    // no such directory
  }
  // kube-proxy's iptables chains, and whatever its cleanup leaves.
  if (state.kubeProxy && existsSync(state.kubeProxy)) tryExec(state.kubeProxy, ['--cleanup'], 60_000);
  for (const iptables of ['iptables', 'ip6tables']) for (const table of ['nat', 'filter', 'mangle']) removeKubeChains(iptables, table);
  if (!mountsUnder(dir).length) rmSync(dir, { recursive: true, force: true });
}

/** Leftovers of kubelet nodes whose process died without cleaning up (it held the lock: all of them). */
export function sweepLeftovers(kubeProxy: string, onProgress: (line: string) => void): void {
  const dirs = readdirSync(tmpdir()).filter((d) => d.startsWith(nodeDirPrefix)).map((d) => path.join(tmpdir(), d));
  for (const dir of dirs) {
    onProgress(`removing the leftovers of a dead kubelet node in ${dir}`);
    let bridge = '';
    try {
      bridge = (JSON.parse(readFileSync(path.join(dir, 'cni', '10-kubefn.conflist'), 'utf8')) as { plugins: { bridge: string }[] }).plugins[0]!.bridge;
    } catch {
      // no network configured yet
    }
    teardownSync({ dir, bridge: bridge || 'kfnbr-none', socket: path.join(dir, 'containerd.sock'), kubeProxy });
  }
  if (!dirs.length) {
    tryExec(kubeProxy, ['--cleanup'], 60_000);
    for (const iptables of ['iptables', 'ip6tables']) for (const table of ['nat', 'filter', 'mangle']) removeKubeChains(iptables, table);
  }
}
