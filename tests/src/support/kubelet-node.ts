// A real node for the cluster tests: Kubernetes' own kubelet and kube-proxy (built from the
// k8s.io/kubernetes module like the control plane, see ensureBinaries), on Debian's containerd
// with runc and the CNI plugins of containernetworking-plugins. Everything is started here, as
// root, under one temporary directory (tmpdir()/kubefn-kubelet-*), and close() leaves the machine
// as it found it. It starts in about 5 s (Node Ready, kube-proxy routing 10.96.0.1).
//
// This module starts and stops the processes (containerd, kubelet, kube-proxy); what the machine
// must have and the one-node-per-machine lock are in kubelet-host.ts, the configuration files in
// kubelet-config.ts, the sandbox image in kubelet-pause.ts and the teardown in
// kubelet-teardown.ts. The processes' logs go to <directory>/logs, or to
// $KUBEFN_NODE_LOG_DIR/<node> (kept) when that is set.
//
// close() stops kube-proxy and the kubelet, deletes containerd's tasks and containers with ctr
// (so the shims unmount the rootfs and runc removes the cgroups), stops containerd, then sweeps
// whatever is left (kubelet-teardown.ts); the same sweep runs synchronously on process exit or
// SIGINT/SIGTERM/SIGHUP through exit-cleanup.ts.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Agent, fetch } from 'undici';
import { waitFor } from '@kubefn/platform/testing';
import * as k8s from '@kubernetes/client-node';
import { ensureBinaries, freePort, type ControlPlane } from './control-plane.js';
import { onExit } from './exit-cleanup.js';
import { cniConfig, containerdConfig, freeSubnet, kubeletConfig, kubeProxyConfig, trustRegistryIn } from './kubelet-config.js';
import { acquireLock, kubeletNodePrerequisites, releaseLock, which } from './kubelet-host.js';
import { ensurePause, pauseArchive, pauseImage } from './kubelet-pause.js';
import { containerIds, nodeDirPrefix, sweepLeftovers, teardownSync, type NodeState } from './kubelet-teardown.js';

export { KubeletNodeBusyError, kubeletNodeAvailable, kubeletNodePrerequisites } from './kubelet-host.js';
export { pauseImage } from './kubelet-pause.js';

const run = promisify(execFile);

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
  const missing = kubeletNodePrerequisites();
  if (missing.length) throw new Error(`the kubelet node cannot run on this machine: it needs ${missing.join(', ')}`);
  const [bin, pause] = await Promise.all([ensureBinaries(progress), ensurePause(progress)]);
  const runc = which('runc')!;
  const ctr = which('ctr') ?? 'ctr';

  const { stale } = await acquireLock(options.waitForHostMs ?? 0, progress);
  let dir: string;
  try {
    if (stale) sweepLeftovers(bin['kube-proxy'], progress);
    dir = await mkdtemp(path.join(tmpdir(), nodeDirPrefix));
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
      trustRegistry: (host) => trustRegistryIn(path.join(dir, 'certs.d'), host),
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
