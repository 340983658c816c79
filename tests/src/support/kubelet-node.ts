// A real node for the cluster tests: Kubernetes' own kubelet and kube-proxy (built from the
// k8s.io/kubernetes module like the control plane, see ensureBinaries), on Debian's containerd
// with runc and the CNI plugins of containernetworking-plugins. Everything is started here, as
// root, under one temporary directory (tmpdir()/kubefn-kubelet-*), and close() leaves the machine
// as it found it. It starts in about 5 s (Node Ready, kube-proxy routing 10.96.0.1).
//
// containerd: our own instance (config version 2) with its root, state, runc root and sockets in
// the directory; CRI with the overlayfs snapshotter, the runc v2 shim (runc from PATH, cgroupfs),
// network namespaces mounted under its state directory, restrict_oom_score_adj (this machine
// refuses to lower a process's oom_score_adj, and the kubelet asks for -998 for every sandbox),
// and `config_path` naming a certs.d-style hosts directory: trustRegistry(host) writes
// <host>/hosts.toml there (plain HTTP, pull and resolve), which containerd reads on every pull, so
// a registry can be trusted while the node runs. Loopback registries (127.0.0.1:<port>,
// localhost) need nothing: containerd speaks plain HTTP to them by default.
//
// The sandbox image (registry.k8s.io/pause:3.10.1, what kubeadm v1.34 uses): no registry is
// reachable from here, so it is Kubernetes' own pause (build/pause/linux/pause.c of the
// k8s.io/kubernetes module, found with `go list -m`) compiled with build/pause/Makefile's flags
// (gcc -Os -Wall -Werror -static), cached next to the other binaries, packed by kubefn's builder
// into an OCI archive (one layer: /pause, the entrypoint) and imported with `ctr images import`.
//
// Network: one CNI bridge conflist (a bridge named kfnbr<random>, host-local IPAM, its data in
// the directory, on a free 10.250.X.0/24 that is also the Node's podCIDR, hairpin mode, no
// masquerade: pods only talk to the host and each other), so pod IPs answer from the host.
// kube-proxy in iptables mode makes Services work, in particular the `kubernetes` Service's
// cluster IP 10.96.0.1:443 that in-cluster clients (KUBERNETES_SERVICE_HOST) use to reach the
// apiserver; its conntrack settings are zero and localhostNodePorts off, so it writes no sysctl.
// kube-proxy's chains are host-wide (and every test cluster has the same 10.96.0.1), so one
// kubelet node runs per machine at a time: a lock file in /run names the process that has it;
// startKubeletNode fails with KubeletNodeBusyError or waits, as asked.
//
// kubelet: cgroupfs (no systemd here), cgroup v1 allowed (this kind of machine has only v1
// controllers), no QoS cgroups (pods' containers go under containerd's /k8s.io cgroup), no node
// allocatable enforcement, no eviction thresholds (cadvisor cannot size the root filesystem
// here), no image GC, anonymous AlwaysAllow access to its API (the apiserver's logs and exec
// proxying come in without a client certificate) on the host's address (ControlPlane.podHost,
// also the Node's InternalIP), pod logs and volume plugins under the directory. Its logs, and
// containerd's and kube-proxy's, go to <directory>/logs, or to $KUBEFN_NODE_LOG_DIR/<node> (kept)
// when that is set.
//
// Teardown (close(), and synchronously on process exit or SIGINT/SIGTERM/SIGHUP through
// exit-cleanup.ts): kube-proxy and kubelet stop, containerd's tasks and containers are deleted
// with ctr, containerd stops, then any process still naming the directory and its descendants
// (shims, containers) is killed, every mount under the directory is unmounted, the bridge, the
// container cgroups, the shims' sockets in /run/containerd/s, libcni's cached results in
// /var/lib/cni/results and the kubelet's /var/log/containers links go, `kube-proxy --cleanup`
// (and a sweep of anything left) removes the KUBE-* iptables chains, and the directory is removed.
// A node whose process died without any of that (SIGKILL) is swept the same way by the next
// startKubeletNode.
//
// Needs: root, containerd (with ctr and containerd-shim-runc-v2), runc, iptables, ip (iproute2),
// gcc with a static libc (libc6-dev), /usr/lib/cni/{bridge,host-local,loopback}
// (containernetworking-plugins), and Go for the Kubernetes binaries. kubeletNodeAvailable() checks
// all but Go (the control plane needs it anyway).

import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { accessSync, closeSync, constants, existsSync, openSync, readdirSync, readFileSync, readlinkSync, rmdirSync, rmSync, unlinkSync } from 'node:fs';
import { access, link, mkdir, mkdtemp, readFile, rename, writeFile } from 'node:fs/promises';
import { networkInterfaces, tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Agent, fetch } from 'undici';
import { assembleImage, buildLayer, scratchBase, writeOciArchive } from '@kubefn/builder';
import { waitFor } from '@kubefn/platform/testing';
import * as k8s from '@kubernetes/client-node';
import { binaryDir, ensureBinaries, freePort, type ControlPlane } from './control-plane.js';
import { onExit, stopSync } from './exit-cleanup.js';
import { repoRoot } from './platform-process.js';

const run = promisify(execFile);

/** The sandbox image containerd runs every pod's network namespace in (kubeadm's for v1.34). */
export const pauseImage = 'registry.k8s.io/pause:3.10.1';
/** The host-wide lock: one kubelet node per machine (kube-proxy's iptables chains are global). */
const lockFile = '/run/kubefn-kubelet-node.lock';
/** Every node's temporary directory is tmpdir()/<dirPrefix>XXXXXX. */
const dirPrefix = 'kubefn-kubelet-';
const cniBinDir = '/usr/lib/cni';

export interface KubeletNodeOptions {
  cp: ControlPlane;
  onProgress?: (line: string) => void;
  /** Registries the node pulls from over plain HTTP (host:port), as trustRegistry(). */
  insecureRegistries?: string[];
  /** Default "kubelet-<random>". */
  nodeName?: string;
  /**
   * How long to wait for another process's kubelet node to go, in ms; 0 (default) fails at once
   * with KubeletNodeBusyError.
   */
  waitForHostMs?: number;
}

export interface KubeletNode {
  nodeName: string;
  /** The bridge's subnet, also the Node's spec.podCIDR, e.g. "10.250.17.0/24". */
  podCIDR: string;
  /** containerd's socket (for `ctr --address`). */
  containerdAddress: string;
  /** The node's temporary directory (removed by close()). */
  dir: string;
  /** Lets the node pull from `host` (host:port) over plain HTTP, from the next pull on. */
  trustRegistry(host: string): Promise<void>;
  /** Stops everything started for the node and removes what it left. Idempotent. */
  close(): Promise<void>;
}

/** Another process runs a kubelet node on this machine. */
export class KubeletNodeBusyError extends Error {
  constructor(readonly pid: number) {
    super(`${pid === process.pid ? 'this process' : `process ${pid}`} runs a kubelet node on this machine (${lockFile}); one at a time`);
  }
}

const searchPath = (): string[] => [...(process.env.PATH ?? '').split(':').filter(Boolean), '/usr/local/sbin', '/usr/sbin', '/sbin', '/usr/bin', '/bin'];

function which(command: string): string | undefined {
  for (const dir of searchPath()) {
    const file = path.join(dir, command);
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // not there
    }
  }
  return undefined;
}

async function executable(file: string): Promise<boolean> {
  return access(file, constants.X_OK).then(() => true, () => false);
}

/** Whether this machine can run a kubelet node: root, containerd, runc, iptables, iproute2, gcc and the CNI plugins. */
export async function kubeletNodeAvailable(): Promise<boolean> {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return false;
  const commands = ['containerd', 'containerd-shim-runc-v2', 'ctr', 'runc', 'iptables', 'iptables-save', 'ip', 'gcc'];
  if (commands.some((c) => !which(c))) return false;
  const plugins = await Promise.all(['bridge', 'host-local', 'loopback'].map((p) => executable(path.join(cniBinDir, p))));
  return plugins.every(Boolean);
}

// ---------------------------------------------------------------------------------------------
// The host-wide lock

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
};

function lockHolder(): number | undefined {
  try {
    const pid = Number(readFileSync(lockFile, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : 0;
  } catch {
    return undefined;
  }
}

/**
 * Takes the lock for this process; resolves whether a dead holder's leftovers must be swept.
 * Throws KubeletNodeBusyError when a live process holds it past `waitMs`.
 */
async function acquireLock(waitMs: number, onProgress: (line: string) => void): Promise<{ stale: boolean }> {
  const deadline = Date.now() + waitMs;
  let told = false;
  let stale = false;
  // Written aside and hard-linked into place: the lock never exists without its pid.
  const mine = `${lockFile}.${process.pid}`;
  await writeFile(mine, `${process.pid}\n`);
  try {
    for (;;) {
      try {
        await link(mine, lockFile);
        return { stale };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const holder = lockHolder();
      if (holder === undefined) continue; // just released
      if (holder === 0 || (holder !== process.pid && !alive(holder))) {
        stale = true;
        rmSync(lockFile, { force: true });
        continue;
      }
      // This process's own node is not going anywhere while we wait.
      if (holder === process.pid || Date.now() >= deadline) throw new KubeletNodeBusyError(holder);
      if (!told) onProgress(`waiting for the kubelet node of process ${holder} to go (one per machine)`);
      told = true;
      await new Promise((r) => setTimeout(r, 1_000));
    }
  } finally {
    rmSync(mine, { force: true });
  }
}

function releaseLock(): void {
  if (lockHolder() === process.pid) rmSync(lockFile, { force: true });
}

// ---------------------------------------------------------------------------------------------
// The pause image

/** Kubernetes' pause, compiled from the module's build/pause/linux/pause.c, cached next to the other binaries. */
async function ensurePause(onProgress: (line: string) => void): Promise<string> {
  const version = pauseImage.split(':').pop()!;
  const file = path.join(binaryDir(), `pause-${version}`);
  if (await executable(file)) return file;
  const moduleDir = path.join(repoRoot, 'tests', 'cluster', 'k8s');
  const env = { ...process.env, GOFLAGS: '-mod=mod' };
  const { stdout } = await run('go', ['list', '-m', '-json', 'k8s.io/kubernetes'], { cwd: moduleDir, env, maxBuffer: 1024 * 1024 });
  const source = path.join((JSON.parse(stdout) as { Dir: string }).Dir, 'build', 'pause', 'linux', 'pause.c');
  onProgress(`compiling ${source} into ${file}`);
  await mkdir(binaryDir(), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  // build/pause/Makefile's CFLAGS, with our own VERSION (printed by `pause -v`).
  await run('gcc', ['-Os', '-Wall', '-Werror', '-static', `-DVERSION=v${version}-kubefn`, '-o', tmp, source]);
  await rename(tmp, file);
  return file;
}

async function pauseArchive(binary: string): Promise<Buffer> {
  const layer = await buildLayer([{ path: 'pause', content: await readFile(binary), mode: 0o755 }]);
  const image = assembleImage(scratchBase(), layer, { entrypoint: ['/pause'], createdBy: 'kubefn tests: pause.c of k8s.io/kubernetes, gcc -static' });
  return writeOciArchive(image, [{ digest: layer.digest, content: layer.blob }], pauseImage);
}

// ---------------------------------------------------------------------------------------------
// Configuration files

/** A 10.250.X.0/24 no interface address or route of this machine is in. */
async function freeSubnet(): Promise<string> {
  const used = new Set<number>();
  const note = (address: string): void => {
    const m = /^10\.250\.(\d+)\./.exec(address);
    if (m) used.add(Number(m[1]));
  };
  for (const addresses of Object.values(networkInterfaces())) for (const a of addresses ?? []) note(a.address);
  const routes = await run('ip', ['-4', 'route', 'show', 'table', 'all']).then((r) => r.stdout, () => '');
  for (const line of routes.split('\n')) note(line.split(' ')[0] ?? '');
  const free = Array.from({ length: 254 }, (_, i) => i + 1).filter((x) => !used.has(x));
  if (!free.length) throw new Error('no free 10.250.X.0/24 for the pod network');
  return `10.250.${free[randomBytes(1)[0]! % free.length]}.0/24`;
}

function containerdConfig(dir: string, runc: string): string {
  const q = JSON.stringify;
  return `version = 2
root = ${q(path.join(dir, 'containerd', 'root'))}
state = ${q(path.join(dir, 'containerd', 'state'))}
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = ${q(path.join(dir, 'containerd.sock'))}

[ttrpc]
  address = ${q(path.join(dir, 'containerd.sock.ttrpc'))}

[plugins."io.containerd.internal.v1.opt"]
  path = ${q(path.join(dir, 'containerd', 'opt'))}

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = ${q(pauseImage)}
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  # The kubelet asks for oom_score_adj -998 (sandboxes) and down to -997 (guaranteed pods); lowering
  # it is refused here (runc: "failed to update /proc/self/oom_score_adj: Permission denied"), so
  # containerd raises such values to its own.
  restrict_oom_score_adj = true
  stream_server_port = "0"

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  BinaryName = ${q(runc)}
  Root = ${q(path.join(dir, 'runc'))}
  SystemdCgroup = false

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = ${q(cniBinDir)}
  conf_dir = ${q(path.join(dir, 'cni'))}
  max_conf_num = 1

[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = ${q(path.join(dir, 'certs.d'))}
`;
}

function cniConfig(name: string, bridge: string, subnet: string, dir: string): string {
  return JSON.stringify(
    {
      cniVersion: '1.0.0',
      name,
      plugins: [
        {
          type: 'bridge',
          bridge,
          isGateway: true,
          ipMasq: false,
          hairpinMode: true,
          ipam: { type: 'host-local', ranges: [[{ subnet }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: path.join(dir, 'cni-ipam') },
        },
      ],
    },
    null,
    2,
  );
}

function kubeletConfig(o: { dir: string; address: string; port: number; healthzPort: number; socket: string; resolvConf: string }): string {
  return JSON.stringify(
    {
      apiVersion: 'kubelet.config.k8s.io/v1beta1',
      kind: 'KubeletConfiguration',
      address: o.address,
      port: o.port,
      readOnlyPort: 0,
      healthzBindAddress: '127.0.0.1',
      healthzPort: o.healthzPort,
      authentication: { anonymous: { enabled: true }, webhook: { enabled: false } },
      authorization: { mode: 'AlwaysAllow' },
      containerRuntimeEndpoint: `unix://${o.socket}`,
      cgroupDriver: 'cgroupfs',
      failCgroupV1: false,
      cgroupsPerQOS: false,
      enforceNodeAllocatable: [],
      failSwapOn: false,
      localStorageCapacityIsolation: false,
      protectKernelDefaults: false,
      makeIPTablesUtilChains: false,
      evictionHard: {},
      imageGCHighThresholdPercent: 100,
      imageGCLowThresholdPercent: 99,
      serializeImagePulls: false,
      resolvConf: o.resolvConf,
      podLogsDir: path.join(o.dir, 'pod-logs'),
      volumePluginDir: path.join(o.dir, 'volume-plugins'),
      shutdownGracePeriod: '0s',
      shutdownGracePeriodCriticalPods: '0s',
    },
    null,
    2,
  );
}

function kubeProxyConfig(o: { kubeconfig: string; clusterCIDR: string; nodeName: string; healthzPort: number; metricsPort: number }): string {
  return JSON.stringify(
    {
      apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
      kind: 'KubeProxyConfiguration',
      clientConnection: { kubeconfig: o.kubeconfig },
      mode: 'iptables',
      clusterCIDR: o.clusterCIDR,
      hostnameOverride: o.nodeName,
      bindAddress: '0.0.0.0',
      healthzBindAddress: `127.0.0.1:${o.healthzPort}`,
      metricsBindAddress: `127.0.0.1:${o.metricsPort}`,
      // Zero: leave nf_conntrack_max and the conntrack timeouts as they are (no sysctl writes).
      conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: '0s', tcpCloseWaitTimeout: '0s', udpTimeout: '0s', udpStreamTimeout: '0s' },
      // No NodePorts on 127.0.0.1: that needs the route_localnet sysctl.
      // NodePorts on the Node's InternalIP only.
      nodePortAddresses: ['primary'],
      iptables: { localhostNodePorts: false, masqueradeAll: false, minSyncPeriod: '0s', syncPeriod: '30s' },
    },
    null,
    2,
  );
}

// ---------------------------------------------------------------------------------------------
// Teardown, synchronous so it also runs on process exit

interface NodeState {
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
function containerIds(dir: string): string[] {
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
function teardownSync(state: NodeState): void {
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
function sweepLeftovers(kubeProxy: string, onProgress: (line: string) => void): void {
  const dirs = readdirSync(tmpdir()).filter((d) => d.startsWith(dirPrefix)).map((d) => path.join(tmpdir(), d));
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

// ---------------------------------------------------------------------------------------------
// The node

function startProcess(name: string, command: string, args: string[], logDir: string): { child: ChildProcess; log: string } {
  const log = path.join(logDir, `${name}.log`);
  const fd = openSync(log, 'a');
  try {
    const child = spawn(command, args, { stdio: ['ignore', fd, fd] });
    child.on('error', () => {});
    return { child, log };
  } finally {
    closeSync(fd);
  }
}

async function stopProcess(child: ChildProcess | undefined, graceMs: number): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

async function tail(file: string, lines = 25): Promise<string> {
  try {
    return (await readFile(file, 'utf8')).split('\n').slice(-lines - 1).join('\n');
  } catch {
    return '(no log)';
  }
}

export async function startKubeletNode(options: KubeletNodeOptions): Promise<KubeletNode> {
  const progress = options.onProgress ?? (() => {});
  const { cp } = options;
  const t0 = performance.now();
  const [bin, pause] = await Promise.all([ensureBinaries(progress), ensurePause(progress)]);
  const runc = which('runc');
  if (!runc) throw new Error('runc is not installed');
  const ctr = which('ctr') ?? 'ctr';

  const { stale } = await acquireLock(options.waitForHostMs ?? 0, progress);
  let dir: string;
  try {
    if (stale) sweepLeftovers(bin['kube-proxy'], progress);
    dir = await mkdtemp(path.join(tmpdir(), dirPrefix));
  } catch (err) {
    releaseLock();
    throw err;
  }
  const nodeName = options.nodeName ?? `kubelet-${randomBytes(3).toString('hex')}`;
  const socket = path.join(dir, 'containerd.sock');
  const bridge = `kfnbr${randomBytes(3).toString('hex')}`;
  const state: NodeState = { dir, bridge, socket, kubeProxy: bin['kube-proxy'] };
  const logDir = process.env.KUBEFN_NODE_LOG_DIR ? path.join(process.env.KUBEFN_NODE_LOG_DIR, nodeName) : path.join(dir, 'logs');
  const children: Record<'containerd' | 'kubelet' | 'kube-proxy', { child: ChildProcess; log: string } | undefined> = {
    containerd: undefined,
    kubelet: undefined,
    'kube-proxy': undefined,
  };
  let closed = false;
  const forgetExitHook = onExit(() => {
    closed = true;
    teardownSync(state);
    releaseLock();
  });
  let closing: Promise<void> | undefined;
  const ctrArgs = (...args: string[]): string[] => ['-n', 'k8s.io', '--address', socket, ...args];
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      if (closed) return;
      await stopProcess(children['kube-proxy']?.child, 10_000);
      await stopProcess(children.kubelet?.child, 15_000);
      state.ids = containerIds(dir);
      if (children.containerd?.child.exitCode === null) {
        // Let containerd stop what it runs: the shims unmount the rootfs and runc removes the cgroups.
        const tasks = await run(ctr, ctrArgs('tasks', 'ls', '-q'), { timeout: 30_000 }).then((r) => r.stdout.split('\n').filter(Boolean), () => []);
        await Promise.all(tasks.map((id) => run(ctr, ctrArgs('tasks', 'delete', '--force', id), { timeout: 30_000 }).catch(() => undefined)));
        const containers = await run(ctr, ctrArgs('containers', 'ls', '-q'), { timeout: 30_000 }).then((r) => r.stdout.split('\n').filter(Boolean), () => []);
        if (containers.length) await run(ctr, ctrArgs('containers', 'delete', ...containers), { timeout: 60_000 }).catch(() => undefined);
      }
      await stopProcess(children.containerd?.child, 10_000);
      closed = true;
      forgetExitHook();
      teardownSync(state);
      releaseLock();
    })());

  try {
    const podCIDR = await freeSubnet();
    await Promise.all(['cni', 'certs.d', 'containerd', 'kubelet', 'pki', 'pod-logs'].map((d) => mkdir(path.join(dir, d), { recursive: true })));
    await mkdir(logDir, { recursive: true });
    await writeFile(path.join(dir, 'cni', '10-kubefn.conflist'), cniConfig(`kubefn-${nodeName}`, bridge, podCIDR, dir));
    await writeFile(path.join(dir, 'containerd.toml'), containerdConfig(dir, runc));
    const node: KubeletNode = {
      nodeName,
      podCIDR,
      containerdAddress: socket,
      dir,
      trustRegistry: async (host) => {
        if (!/^[A-Za-z0-9.-]+(:\d+)?$/.test(host)) throw new Error(`not a registry host[:port]: ${host}`);
        const hostDir = path.join(dir, 'certs.d', host);
        await mkdir(hostDir, { recursive: true });
        await writeFile(
          path.join(hostDir, 'hosts.toml'),
          `server = "http://${host}"\n\n[host."http://${host}"]\n  capabilities = ["pull", "resolve"]\n  skip_verify = true\n`,
        );
      },
      close,
    };
    for (const host of options.insecureRegistries ?? []) await node.trustRegistry(host);

    progress(`starting containerd for node ${nodeName} in ${dir}`);
    children.containerd = startProcess('containerd', which('containerd')!, ['--config', path.join(dir, 'containerd.toml'), '--log-level', 'info'], logDir);
    await waitFor(
      async () => {
        if (children.containerd!.child.exitCode !== null) throw new Error(`containerd exited: ${await tail(children.containerd!.log)}`);
        return (await run(ctr, ['--address', socket, 'version'], { timeout: 10_000 }).then(() => true, () => false)) || undefined;
      },
      { timeoutMs: 60_000, what: 'containerd to answer' },
    );
    const archive = path.join(dir, 'pause.oci.tar');
    await writeFile(archive, await pauseArchive(pause));
    await run(ctr, ctrArgs('images', 'import', '--base-name', pauseImage.split(':')[0]!, archive), { timeout: 120_000 });

    const [port, healthzPort, proxyHealthz, proxyMetrics] = await Promise.all([freePort(cp.podHost), freePort(), freePort(), freePort()]);
    const resolvConf = existsSync('/etc/resolv.conf') ? '/etc/resolv.conf' : '';
    await writeFile(path.join(dir, 'kubelet.yaml'), kubeletConfig({ dir, address: cp.podHost, port, healthzPort, socket, resolvConf }));
    progress(`starting kubelet ${nodeName}`);
    children.kubelet = startProcess(
      'kubelet',
      bin.kubelet,
      [
        '--kubeconfig', cp.kubeconfig,
        '--config', path.join(dir, 'kubelet.yaml'),
        '--root-dir', path.join(dir, 'kubelet'),
        '--cert-dir', path.join(dir, 'pki'),
        '--hostname-override', nodeName,
        '--node-ip', cp.podHost,
        '--v=1',
      ],
      logDir,
    );

    const kc = new k8s.KubeConfig();
    kc.loadFromFile(cp.kubeconfig);
    const core = kc.makeApiClient(k8s.CoreV1Api);
    const exitedEarly = async (name: keyof typeof children): Promise<void> => {
      const c = children[name];
      if (c && (c.child.exitCode !== null || c.child.signalCode !== null)) throw new Error(`${name} exited: ${await tail(c.log)}`);
    };
    await waitFor(
      async () => {
        await exitedEarly('kubelet');
        return core.readNode({ name: nodeName });
      },
      { timeoutMs: 120_000, what: `node ${nodeName} registered` },
    );
    // No nodeipam controller runs: the Node gets the bridge's subnet as its podCIDR here.
    await core.patchNode(
      { name: nodeName, body: { spec: { podCIDR, podCIDRs: [podCIDR] } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );

    await writeFile(
      path.join(dir, 'kube-proxy.yaml'),
      kubeProxyConfig({ kubeconfig: cp.kubeconfig, clusterCIDR: podCIDR, nodeName, healthzPort: proxyHealthz, metricsPort: proxyMetrics }),
    );
    progress(`starting kube-proxy (iptables) for ${nodeName}`);
    children['kube-proxy'] = startProcess('kube-proxy', bin['kube-proxy'], ['--config', path.join(dir, 'kube-proxy.yaml'), '--v=1'], logDir);

    await waitFor(
      async () => {
        await exitedEarly('kubelet');
        const n = await core.readNode({ name: nodeName });
        const ready = n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
        return ready && !(n.spec?.taints ?? []).some((t) => t.effect === 'NoSchedule' || t.effect === 'NoExecute');
      },
      { timeoutMs: 120_000, what: `node ${nodeName} Ready without taints` },
    );
    // kube-proxy has synced, and its NAT takes the `kubernetes` Service's cluster IP to the apiserver.
    const verified = new Agent({ connect: { ca: cp.ca } });
    try {
      await waitFor(
        async () => {
          await exitedEarly('kube-proxy');
          const healthz = await fetch(`http://127.0.0.1:${proxyHealthz}/healthz`);
          await healthz.arrayBuffer();
          if (healthz.status !== 200) return false;
          const res = await fetch('https://10.96.0.1:443/readyz', { headers: { authorization: `Bearer ${cp.token}` }, dispatcher: verified, signal: AbortSignal.timeout(5_000) });
          await res.arrayBuffer();
          return res.status === 200;
        },
        { timeoutMs: 60_000, what: 'kube-proxy to route https://10.96.0.1:443 to the apiserver' },
      );
    } finally {
      await verified.close();
    }
    progress(`kubelet node ${nodeName} Ready (pods ${podCIDR}) in ${Math.round(performance.now() - t0)} ms`);
    return node;
  } catch (err) {
    const logs = await Promise.all(
      Object.entries(children).filter(([, c]) => c).map(async ([name, c]) => `--- ${name}\n${await tail(c!.log)}`),
    );
    await close();
    throw new Error(`kubelet node did not start: ${(err as Error).message}\n${logs.join('\n')}`, { cause: err });
  }
}
