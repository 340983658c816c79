// A node agent in the virtual-kubelet style for the cluster tests: registers a Node, keeps its Lease
// and Ready heartbeat fresh, and runs the pods bound to it as podman containers, reporting phase,
// conditions, pod IP and readiness through pods/status, so everything above the node stays real.
// This module is the node (registration, Lease and heartbeat, the pod watch, addresses, teardown);
// each pod's life is node-agent-pod.ts, what its container gets from the API (env, volumes)
// node-agent-volumes.ts, and its logs node-agent-logs.ts.
//
// Networking: each agent owns a podman bridge network (`kubefn-node-<node>`, a /24 podman picks,
// published as the Node's podCIDR) and gives every pod a fixed address in it (`--ip`), the way a
// CNI plugin with host-local IPAM does on a real node. The address is known before the container
// starts (so `fieldRef: status.podIP` works) and survives container restarts, containerPorts are
// reached at <podIP>:<containerPort> from the host as in a real cluster, so Services and the real
// EndpointSlice controller work unchanged, and two pods declaring the same port never collide.
// Checked on this machine: podman bridge addresses (10.88.x.x on the default network, 10.89.x.x on
// a created one) answer from the host. Host networking was rejected: same-port pods would collide.
//
// In-cluster API access: every container gets KUBERNETES_SERVICE_HOST/PORT (and the rest of the
// `kubernetes` Service's link variables) naming the address the agent was given for the apiserver
// (the host's IP, see ControlPlane.podHost), as the kubelet injects even with enableServiceLinks
// false, and the service-account volume the ServiceAccount admission plugin adds (kube-api-access-*:
// a bound token, kube-root-ca.crt's ca.crt, the namespace) is mounted at
// /var/run/secrets/kubernetes.io/serviceaccount, so client-node's loadFromCluster() works in a pod.
// A pod's directory (its volumes) goes when the pod does, all of them when the agent closes.
//
// Of the kubelet's HTTPS API (which the apiserver proxies `kubectl logs` and `exec` to) the agent
// serves containerLogs only.

import { mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import * as k8s from '@kubernetes/client-node';
import type { CoordinationV1Api, CoreV1Api, KubeConfig, ListWatch, V1Lease, V1Pod } from '@kubernetes/client-node';
import { Podman, type PodmanOptions } from '@kubefn/platform';
import { kubernetesVersion } from './control-plane.js';
import { hostIP, isoNow, mergePatch, message, nodeAgentLabel, podUidLabel, statusCode } from './node-agent-common.js';
import { ContainerLogs, type LogEndpoint } from './node-agent-logs.js';
import { PodWorker, type PodHost } from './node-agent-pod.js';

export { nodeAgentLabel } from './node-agent-common.js';

/** How often the Lease is renewed and the Ready condition's heartbeat refreshed, in ms. */
const heartbeatMs = 10_000;
const leaseDurationSeconds = 40;

export interface NodeAgentOptions {
  kubeconfig: string;
  /**
   * Where containers reach the apiserver (ControlPlane.podHost and port): every container gets it
   * as KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT.
   */
  apiserver: { host: string; port: number };
  /** Default "kubefn-node-<random>". */
  nodeName?: string;
  podman: PodmanOptions;
  /** Registries pulled over plain HTTP besides loopback ones (host:port), like a node's containerd config. */
  insecureRegistries?: string[];
  onLog?: (line: string) => void;
}

export interface NodeAgent {
  nodeName: string;
  /** The bridge network's subnet, also the Node's spec.podCIDR, e.g. "10.89.3.0/24". */
  podCIDR: string;
  /** The pod's container output (stdout and stderr, lines), as `podman logs`; `follow` keeps reading. */
  logs(namespace: string, pod: string, options?: { follow?: boolean; signal?: AbortSignal }): AsyncIterable<string>;
  /** Pulls from `host` (host:port) over plain HTTP from now on, as `insecureRegistries`. */
  trustRegistry(host: string): Promise<void>;
  /** Stops watching, removes the agent's containers and network, deletes its Node. Idempotent. */
  close(): Promise<void>;
}

export async function startNodeAgent(options: NodeAgentOptions): Promise<NodeAgent> {
  const agent = new Agent(options);
  try {
    await agent.start();
  } catch (err) {
    await agent.close();
    throw err;
  }
  return {
    nodeName: agent.nodeName,
    podCIDR: agent.podCIDR,
    logs: (namespace, pod, o) => agent.logs(namespace, pod, o),
    trustRegistry: async (host) => {
      if (!agent.insecureRegistries.includes(host)) agent.insecureRegistries.push(host);
    },
    close: () => agent.close(),
  };
}

class Agent implements PodHost {
  readonly nodeName: string;
  podCIDR = '';
  readonly core: CoreV1Api;
  readonly podman: Podman;
  readonly log: (line: string) => void;
  readonly apiserver: { host: string; port: number };
  readonly insecureRegistries: string[];
  readonly #kc: KubeConfig = new k8s.KubeConfig();
  readonly #coordination: CoordinationV1Api;
  readonly #network: string;
  readonly #workers = new Map<string, PodWorker>();
  readonly #finishing = new Set<string>();
  readonly #freeIPs: string[] = [];
  readonly #startedAt = isoNow();
  #informer: ListWatch<V1Pod> | undefined;
  readonly #logs: ContainerLogs;
  #logEndpoint: LogEndpoint | undefined;
  #heartbeat: NodeJS.Timeout | undefined;
  /** The agent's temp directory: pods/<uid>/volumes/<volume> for each pod's volumes. */
  #dir: string | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;

  constructor(options: NodeAgentOptions) {
    this.nodeName = options.nodeName ?? `kubefn-node-${randomUUID().slice(0, 8)}`;
    this.#network = `kubefn-node-${this.nodeName}`;
    this.#kc.loadFromFile(options.kubeconfig);
    this.core = this.#kc.makeApiClient(k8s.CoreV1Api);
    this.#coordination = this.#kc.makeApiClient(k8s.CoordinationV1Api);
    this.podman = new Podman(options.podman);
    this.#logs = new ContainerLogs(this.podman, this.nodeName);
    this.apiserver = options.apiserver;
    this.insecureRegistries = [...(options.insecureRegistries ?? [])];
    const onLog = options.onLog ?? (() => {});
    this.log = (line) => onLog(`[${this.nodeName}] ${line}`);
  }

  async start(): Promise<void> {
    this.#dir = await mkdtemp(path.join(os.tmpdir(), `kubefn-node-${this.nodeName}-`));
    await this.#removeLeftovers();
    await this.podman.check(['network', 'create', '--label', `${nodeAgentLabel}=${this.nodeName}`, this.#network]);
    const subnets = JSON.parse(await this.podman.check(['network', 'inspect', this.#network, '--format', '{{json .Subnets}}'])) as { subnet: string }[];
    this.podCIDR = subnets[0]!.subnet;
    const [base, bits] = this.podCIDR.split('/');
    if (bits !== '24') throw new Error(`podman gave network ${this.#network} subnet ${this.podCIDR}; the agent hands out addresses in a /24 only`);
    const prefix = base!.split('.').slice(0, 3).join('.');
    for (let i = 2; i < 255; i++) this.#freeIPs.push(`${prefix}.${i}`);

    this.#logEndpoint = await this.#logs.serve(hostIP);
    await this.core.createNode({
      body: {
        metadata: { name: this.nodeName, labels: { 'kubernetes.io/hostname': this.nodeName, 'kubernetes.io/os': 'linux', 'kubernetes.io/arch': arch(), [nodeAgentLabel]: 'true' } },
        spec: { podCIDR: this.podCIDR, podCIDRs: [this.podCIDR] },
      },
    });
    await this.#reportNode();
    await this.#renewLease();
    this.#heartbeat = setInterval(() => void this.#beat(), heartbeatMs);

    const fieldSelector = `spec.nodeName=${this.nodeName}`;
    const informer = new k8s.ListWatch<V1Pod>('/api/v1/pods', new k8s.Watch(this.#kc), () => this.core.listPodForAllNamespaces({ fieldSelector }), false, undefined, fieldSelector);
    informer.on('add', (pod) => this.#onPod(pod));
    informer.on('update', (pod) => this.#onPod(pod));
    informer.on('delete', (pod) => this.#onPodGone(pod));
    informer.on('error', (err) => {
      if (this.#closed) return;
      this.log(`pod watch failed (${message(err)}); restarting it in 1 s`);
      setTimeout(() => void (this.#closed || informer.start()), 1000).unref();
    });
    this.#informer = informer;
    await informer.start();
    this.log(`registered node ${this.nodeName}, pods on ${this.podCIDR}`);
  }

  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#heartbeat);
    await this.#informer?.stop();
    await this.#logEndpoint?.close();
    for (const w of this.#workers.values()) w.abandon();
    this.#workers.clear();
    await this.#removeLeftovers();
    if (this.#dir) await rm(this.#dir, { recursive: true, force: true });
    // The Lease is owned by the Node (ownerReference), so the garbage collector removes it too.
    await this.core.deleteNode({ name: this.nodeName }).catch((err: unknown) => {
      if (statusCode(err) !== 404) this.log(`deleting node: ${message(err)}`);
    });
  }

  async #removeLeftovers(): Promise<void> {
    const ids = (await this.podman.check(['ps', '--all', '--quiet', '--filter', `label=${nodeAgentLabel}=${this.nodeName}`])).split('\n').filter(Boolean);
    if (ids.length) await this.podman.run(['rm', '--force', '--time', '0', '--ignore', ...ids]);
    await this.podman.run(['network', 'rm', '--force', this.#network]);
  }

  async #beat(): Promise<void> {
    try {
      await this.#renewLease();
      await this.#reportNode();
    } catch (err) {
      this.log(`heartbeat failed: ${message(err)}`);
    }
  }

  async #reportNode(): Promise<void> {
    const now = isoNow();
    const condition = (type: string, status: string, reason: string, text: string) => ({
      type, status, reason, message: text, lastHeartbeatTime: now, lastTransitionTime: this.#startedAt,
    });
    const resources = { cpu: '4', memory: '8Gi', pods: '110', 'ephemeral-storage': '100Gi' };
    const status = {
      capacity: resources,
      allocatable: resources,
      conditions: [
        condition('MemoryPressure', 'False', 'KubeletHasSufficientMemory', 'node agent has sufficient memory available'),
        condition('DiskPressure', 'False', 'KubeletHasNoDiskPressure', 'node agent has no disk pressure'),
        condition('PIDPressure', 'False', 'KubeletHasSufficientPID', 'node agent has sufficient PID available'),
        condition('Ready', 'True', 'KubeletReady', 'kubefn node agent is posting ready status (pods run as podman containers)'),
      ],
      addresses: [{ type: 'InternalIP', address: hostIP }, { type: 'Hostname', address: this.nodeName }],
      daemonEndpoints: { kubeletEndpoint: { Port: this.#logEndpoint?.port ?? 0 } },
      nodeInfo: {
        machineID: this.nodeName, systemUUID: this.nodeName, bootID: this.#startedAt,
        kernelVersion: os.release(), osImage: 'kubefn node agent', containerRuntimeVersion: 'podman://',
        kubeletVersion: kubernetesVersion, kubeProxyVersion: '', operatingSystem: 'linux', architecture: arch(),
      },
    };
    await this.core.patchNodeStatus({ name: this.nodeName, body: { status } }, mergePatch());
  }

  async #renewLease(): Promise<void> {
    const namespace = 'kube-node-lease';
    const lease = (resourceVersion?: string): V1Lease => ({
      metadata: {
        name: this.nodeName, namespace, resourceVersion,
        ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name: this.nodeName, uid: this.#nodeUid! }],
      },
      spec: { holderIdentity: this.nodeName, leaseDurationSeconds, renewTime: new k8s.V1MicroTime() },
    });
    this.#nodeUid ??= (await this.core.readNode({ name: this.nodeName })).metadata!.uid!;
    try {
      const current = await this.#coordination.readNamespacedLease({ name: this.nodeName, namespace });
      await this.#coordination.replaceNamespacedLease({ name: this.nodeName, namespace, body: lease(current.metadata!.resourceVersion) });
    } catch (err) {
      if (statusCode(err) !== 404) throw err;
      await this.#coordination.createNamespacedLease({ namespace, body: lease() });
    }
  }
  #nodeUid: string | undefined;

  #onPod(pod: V1Pod): void {
    if (this.#closed) return;
    const uid = pod.metadata!.uid!;
    const worker = this.#workers.get(uid);
    if (worker) worker.pod = pod;
    if (pod.metadata!.deletionTimestamp) {
      if (worker) worker.terminate();
      else if (!this.#finishing.has(uid)) {
        // Bound to this node but not run by this agent (ended, or from before a restart): finish the deletion.
        this.#finishing.add(uid);
        void this.finishDeletion(pod).finally(() => this.#finishing.delete(uid));
      }
      return;
    }
    if (worker || pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed') return;
    const ip = this.#freeIPs.shift();
    const w = new PodWorker(this, pod, ip);
    this.#workers.set(uid, w);
    w.begin();
  }

  #onPodGone(pod: V1Pod): void {
    const uid = pod.metadata!.uid!;
    const worker = this.#workers.get(uid);
    if (!worker) return;
    this.#workers.delete(uid);
    void worker.remove();
  }

  releaseIP(ip: string | undefined): void {
    if (ip && !this.#freeIPs.includes(ip)) this.#freeIPs.push(ip);
  }

  get network(): string {
    return this.#network;
  }

  /** Where the pod's volumes are written on the host. */
  podDir(uid: string): string {
    if (!this.#dir) throw new Error('the node agent has not started');
    return path.join(this.#dir, 'pods', uid);
  }

  async removePodDir(uid: string): Promise<void> {
    if (this.#dir) await rm(this.podDir(uid), { recursive: true, force: true });
  }

  /** Removes what is left of the pod's containers and deletes the pod for good, as a kubelet does. */
  async finishDeletion(pod: V1Pod): Promise<void> {
    const { name, namespace, uid } = pod.metadata as { name: string; namespace: string; uid: string };
    const ids = (await this.podman.check(['ps', '--all', '--quiet', '--filter', `label=${podUidLabel}=${uid}`])).split('\n').filter(Boolean);
    if (ids.length) await this.podman.run(['rm', '--force', '--time', '0', '--ignore', ...ids]);
    await this.removePodDir(uid);
    await this.core.deleteNamespacedPod({ name, namespace, gracePeriodSeconds: 0, body: { gracePeriodSeconds: 0, preconditions: { uid } } }).catch((err: unknown) => {
      if (statusCode(err) !== 404 && statusCode(err) !== 409) this.log(`deleting pod ${namespace}/${name}: ${message(err)}`);
    });
  }

  logs(namespace: string, pod: string, options: { follow?: boolean; signal?: AbortSignal } = {}): AsyncIterable<string> {
    return this.#logs.read(namespace, pod, options);
  }
}

function arch(): string {
  return process.arch === 'x64' ? 'amd64' : process.arch;
}
