// The configuration files of a kubelet node, all under its temporary directory:
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
// Network: one CNI bridge conflist (a bridge named kfnbr<random>, host-local IPAM, its data in
// the directory, on a free 10.250.X.0/24 that is also the Node's podCIDR, hairpin mode, no
// masquerade: pods only talk to the host and each other), so pod IPs answer from the host.
// kube-proxy in iptables mode makes Services work, in particular the `kubernetes` Service's
// cluster IP 10.96.0.1:443 that in-cluster clients (KUBERNETES_SERVICE_HOST) use to reach the
// apiserver; its conntrack settings are zero and localhostNodePorts off, so it writes no sysctl.
//
// kubelet: cgroupfs (no systemd here), cgroup v1 allowed (this kind of machine has only v1
// controllers), no QoS cgroups (pods' containers go under containerd's /k8s.io cgroup), no node
// allocatable enforcement, no eviction thresholds (cadvisor cannot size the root filesystem
// here), no image GC, anonymous AlwaysAllow access to its API (the apiserver's logs and exec
// proxying come in without a client certificate) on the host's address (ControlPlane.podHost,
// also the Node's InternalIP), pod logs and volume plugins under the directory.

import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { networkInterfaces } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { cniBinDir } from './kubelet-host.js';
import { pauseImage } from './kubelet-pause.js';

const run = promisify(execFile);

/** A 10.250.X.0/24 no interface address or route of this machine is in. */
export async function freeSubnet(): Promise<string> {
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

export function containerdConfig(dir: string, runc: string): string {
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

export function cniConfig(name: string, bridge: string, subnet: string, dir: string): string {
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

export function kubeletConfig(o: { dir: string; address: string; port: number; healthzPort: number; socket: string; resolvConf: string }): string {
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
      // Pods are synced, and so their Secret volumes brought up to date (a token rotation), every
      // 10 s rather than every minute: the tests wait for it.
      syncFrequency: '10s',
    },
    null,
    2,
  );
}

export function kubeProxyConfig(o: { kubeconfig: string; clusterCIDR: string; nodeName: string; healthzPort: number; metricsPort: number }): string {
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

/** Lets containerd pull from `host` (host:port) over plain HTTP: a certs.d hosts.toml it reads on every pull. */
export async function trustRegistryIn(certsDir: string, host: string): Promise<void> {
  if (!/^[A-Za-z0-9.-]+(:\d+)?$/.test(host)) throw new Error(`not a registry host[:port]: ${host}`);
  const hostDir = path.join(certsDir, host);
  await mkdir(hostDir, { recursive: true });
  await writeFile(
    path.join(hostDir, 'hosts.toml'),
    `server = "http://${host}"\n\n[host."http://${host}"]\n  capabilities = ["pull", "resolve"]\n  skip_verify = true\n`,
  );
}
