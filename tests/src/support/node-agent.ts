// A node agent in the virtual-kubelet style for the cluster tests: registers a Node, keeps its Lease
// and Ready heartbeat fresh, and runs the pods bound to it as podman containers, reporting phase,
// conditions, pod IP and readiness through pods/status, so everything above the node stays real.
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
//
// Volumes: configMap, secret, downwardAPI (metadata.name, namespace, uid, labels, annotations and
// single labels['k']/annotations['k']), emptyDir, and projected with serviceAccountToken (a
// TokenRequest bound to the pod, with the source's audience and expirationSeconds), configMap,
// secret and downwardAPI sources; items, optional, defaultMode and item modes are honoured. Each is
// written to a per-pod directory under the agent's temp directory (files 0644 unless a mode says
// otherwise, directories 0755, emptyDir 0777 so a container running as nobody can use it) and
// bind-mounted with `--volume`; volumeMounts honour readOnly and subPath (configMap, secret,
// downwardAPI and projected volumes are always read-only, as the kubelet mounts them). Contents are
// written when the container starts (again on every restart, emptyDir kept) and not refreshed while
// it runs: no token rotation (tokens live an hour at least, test pods minutes) and no config map or
// secret updates. A missing non-optional config map, secret or key keeps the container waiting
// (CreateContainerConfigError, retried with back-off). Other volume types (hostPath, PVCs, ...),
// subPathExpr, resourceFieldRef and clusterTrustBundle/podCertificate sources make the node refuse
// the pod. A pod's directory goes when the pod does, all of them when the agent closes.
//
// Not a kubelet: one container per pod, no init containers, no liveness/startup probes, readiness
// from httpGet only. Of the kubelet's HTTPS API (which the apiserver proxies `kubectl logs` and
// `exec` to) it serves containerLogs only.

import { Buffer } from 'node:buffer';
import { execFile, type ChildProcess } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { createServer as createHttpsServer, type Server } from 'node:https';
import path from 'node:path';
import { promisify } from 'node:util';
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import { PassThrough } from 'node:stream';
import { createInterface } from 'node:readline';
import * as k8s from '@kubernetes/client-node';
import type {
  CoordinationV1Api,
  CoreV1Api,
  KubeConfig,
  ListWatch,
  V1Container,
  V1ContainerState,
  V1ContainerStateTerminated,
  V1DownwardAPIVolumeFile,
  V1KeyToPath,
  V1Lease,
  V1Pod,
  V1PodCondition,
  V1PodSpec,
  V1Volume,
} from '@kubernetes/client-node';
import { parseQuantity, Podman, podmanError, type PodmanOptions } from '@kubefn/platform';
import { kubernetesVersion } from './control-plane.js';

/** Label on every container and network of an agent, value the node name: what cleanup removes. */
export const nodeAgentLabel = 'kubefn.dev/node-agent';
const podUidLabel = 'kubefn.dev/pod-uid';
/** How often the Lease is renewed and the Ready condition's heartbeat refreshed, in ms. */
const heartbeatMs = 10_000;
const leaseDurationSeconds = 40;
/** Restart back-off after a container exits: doubles from the first value up to the second, in ms. */
const backoffMs = [1_000, 30_000] as const;
/** The node's own address: pods' hostIP, the Node's InternalIP. */
const hostIP = '127.0.0.1';

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

const isoNow = (): string => new Date().toISOString().replace(/\.\d+Z$/, 'Z');
const mergePatch = () => k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch);
const statusCode = (err: unknown): number | undefined => (err as { code?: unknown }).code as number | undefined;
const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

class Agent {
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
  #logServer: Server | undefined;
  #logPort = 0;
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

    await this.#startLogServer();
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
    this.#logServer?.closeAllConnections();
    await new Promise((resolve) => (this.#logServer ? this.#logServer.close(resolve) : resolve(undefined)));
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
      daemonEndpoints: { kubeletEndpoint: { Port: this.#logPort } },
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

  /**
   * The one kubelet endpoint the agent serves: GET /containerLogs/<ns>/<pod>/<container> on the
   * port the Node reports, over HTTPS with a self-signed certificate (the API server does not
   * verify a kubelet's certificate unless told to), so `kubectl logs` and client-node's Log work.
   */
  async #startLogServer(): Promise<void> {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'kubefn-node-tls-'));
    try {
      const [key, cert] = [path.join(dir, 'key.pem'), path.join(dir, 'cert.pem')];
      await promisify(execFile)('openssl', [
        'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-keyout', key, '-out', cert,
        '-subj', `/CN=${this.nodeName}`, '-addext', `subjectAltName=IP:${hostIP}`,
      ]);
      this.#logServer = createHttpsServer({ key: await readFile(key), cert: await readFile(cert) }, (req, res) => void this.#serveLogs(req.url ?? '', res));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    await new Promise<void>((resolve) => this.#logServer!.listen(0, hostIP, resolve));
    this.#logPort = (this.#logServer!.address() as { port: number }).port;
  }

  async #serveLogs(url: string, res: import('node:http').ServerResponse): Promise<void> {
    const u = new URL(url, 'https://node');
    const m = /^\/containerLogs\/([^/]+)\/([^/]+)\/([^/]+)$/.exec(u.pathname);
    if (!m) return void res.writeHead(404).end('only /containerLogs is served by the kubefn node agent\n');
    const [, namespace, pod] = m.map(decodeURIComponent) as [string, string, string];
    const container = await this.#containerOf(namespace, pod);
    if (!container) return void res.writeHead(404).end(`no container of pod ${namespace}/${pod} on this node\n`);
    const q = u.searchParams;
    const args: string[] = [];
    if (q.get('follow') === 'true') args.push('--follow');
    if (q.get('timestamps') === 'true') args.push('--timestamps');
    if (q.get('tailLines')) args.push('--tail', String(Number(q.get('tailLines'))));
    if (q.get('sinceTime')) args.push('--since', q.get('sinceTime')!);
    else if (q.get('sinceSeconds')) args.push('--since', `${Number(q.get('sinceSeconds'))}s`);
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
    const child = this.#podmanLogs(container, args, res);
    res.on('close', () => {
      if (child.exitCode === null) child.kill('SIGTERM');
    });
  }

  /** The (newest) container of a pod on this node, if any. */
  async #containerOf(namespace: string, pod: string): Promise<string | undefined> {
    const names = await this.podman.check(['ps', '--all', '--format', '{{.Names}}', '--filter', `label=${nodeAgentLabel}=${this.nodeName}`]);
    return names.split('\n').find((n) => n.startsWith(containerPrefix(namespace, pod)));
  }

  /** `podman logs <args> <container>`, stdout and stderr merged into `into`, which ends when both do. */
  #podmanLogs(container: string, args: string[], into: NodeJS.WritableStream): ChildProcess {
    const child = this.podman.spawn(['logs', ...args, container], {});
    let open = 2;
    for (const s of [child.stdout!, child.stderr!]) {
      s.pipe(into, { end: false });
      s.on('end', () => --open === 0 && into.end());
    }
    return child;
  }

  async *logs(namespace: string, pod: string, options: { follow?: boolean; signal?: AbortSignal } = {}): AsyncIterable<string> {
    const container = await this.#containerOf(namespace, pod);
    if (!container) throw new Error(`no container of pod ${namespace}/${pod} on node ${this.nodeName}`);
    const merged = new PassThrough();
    const child = this.#podmanLogs(container, options.follow ? ['--follow'] : [], merged);
    const abort = () => child.kill('SIGTERM');
    options.signal?.addEventListener('abort', abort, { once: true });
    try {
      yield* createInterface({ input: merged, crlfDelay: Infinity });
    } finally {
      options.signal?.removeEventListener('abort', abort);
      if (child.exitCode === null) child.kill('SIGTERM');
    }
  }
}

function arch(): string {
  return process.arch === 'x64' ? 'amd64' : process.arch;
}

const containerPrefix = (namespace: string, pod: string): string => `k8s-${namespace}-${pod}-`;

/** One pod on this node: its container's life, restarts, readiness and the status reported for it. */
class PodWorker {
  pod: V1Pod;
  readonly #agent: Agent;
  readonly #ip: string | undefined;
  readonly #startTime = isoNow();
  readonly #transitions = new Map<string, { status: string; time: string }>();
  #phase: 'Pending' | 'Running' | 'Succeeded' | 'Failed' = 'Pending';
  #reason: string | undefined;
  #message: string | undefined;
  #restartCount: number;
  #state: V1ContainerState = { waiting: { reason: 'ContainerCreating' } };
  #lastState: V1ContainerState = {};
  #containerID = '';
  #imageID = '';
  #ready = false;
  #run = 0;
  #backoffMs: number = backoffMs[0];
  #done = false;
  #terminating = false;
  #waitChild: ChildProcess | undefined;
  #timer: NodeJS.Timeout | undefined;
  #reporting: Promise<void> = Promise.resolve();

  constructor(agent: Agent, pod: V1Pod, ip: string | undefined) {
    this.#agent = agent;
    this.pod = pod;
    this.#ip = ip;
    this.#restartCount = pod.status?.containerStatuses?.[0]?.restartCount ?? 0;
  }

  get #key(): string {
    return `${this.pod.metadata!.namespace}/${this.pod.metadata!.name}`;
  }

  get #container(): V1Container {
    return this.pod.spec!.containers[0]!;
  }

  get #containerName(): string {
    return `${containerPrefix(this.pod.metadata!.namespace!, this.pod.metadata!.name!)}${this.#container.name}`;
  }

  begin(): void {
    const spec = this.pod.spec!;
    const refuse = spec.containers.length !== 1
      ? `this node runs pods of exactly one container; the pod has ${spec.containers.length}`
      : spec.initContainers?.length ? 'this node does not run init containers' : !this.#ip ? 'this node has no pod address left' : unsupportedVolume(spec);
    if (refuse) {
      this.#agent.log(`refusing pod ${this.#key}: ${refuse}`);
      this.#finish('Failed', 'UnsupportedPod', refuse);
      return;
    }
    void this.#launch();
  }

  async #launch(): Promise<void> {
    const run = ++this.#run;
    const c = this.#container;
    try {
      const env = await this.#env();
      const volumes = await this.#volumes();
      const image = c.image!;
      const policy = c.imagePullPolicy === 'Never' ? 'never' : c.imagePullPolicy === 'Always' ? 'always' : 'missing';
      const registry = image.split('/')[0]!.replace(/:\d+$/, '');
      const args = [
        'run', '--detach', '--name', this.#containerName, '--hostname', this.pod.metadata!.name!,
        '--network', this.#agent.network, '--ip', this.#ip!,
        '--pull', policy, ...(registry === 'localhost' || /^127\./.test(registry) || this.#agent.insecureRegistries.includes(image.split('/')[0]!) ? ['--tls-verify=false'] : []),
        '--label', `${nodeAgentLabel}=${this.#agent.nodeName}`, '--label', `${podUidLabel}=${this.pod.metadata!.uid}`,
        ...Object.keys(env).flatMap((k) => ['--env', k]),
        ...volumes.flatMap((v) => ['--volume', v]),
        ...(c.workingDir ? ['--workdir', c.workingDir] : []),
        ...(c.resources?.limits?.memory ? ['--memory', String(Math.floor(parseQuantity(c.resources.limits.memory)))] : []),
        ...(c.resources?.limits?.cpu ? ['--cpus', String(parseQuantity(c.resources.limits.cpu))] : []),
        ...(c.ports ?? []).filter((p) => p.hostPort).flatMap((p) => ['--publish', `${hostIP}:${p.hostPort}:${p.containerPort}/${(p.protocol ?? 'TCP').toLowerCase()}`]),
        ...(c.command?.length ? ['--entrypoint', JSON.stringify(c.command)] : []),
        image, ...(c.args ?? []),
      ];
      // A container of an earlier run stays until now so its output can still be read.
      await this.#agent.podman.run(['rm', '--force', '--time', '0', '--ignore', this.#containerName]);
      if (this.#done || run !== this.#run) return;
      const r = await this.#agent.podman.run(args, { env, timeoutMs: 600_000 });
      if (r.code !== 0) {
        const text = podmanError(r) || `podman run exited with code ${r.code}`;
        throw Object.assign(new Error(text), { reason: /pull|manifest|image|registry/i.test(text) ? 'ErrImagePull' : 'RunContainerError' });
      }
      const id = r.stdout.trim();
      if (this.#done || run !== this.#run) return void this.#agent.podman.run(['rm', '--force', '--time', '0', '--ignore', id]);
      const [startedAt, imageID] = (await this.#agent.podman.check(['inspect', id, '--format', '{{.State.StartedAt}}|{{.ImageDigest}}'])).trim().split('|');
      this.#containerID = `podman://${id}`;
      this.#imageID = imageID ?? '';
      this.#state = { running: { startedAt: new Date(startedAt!.replace(/ \+0000 UTC$/, 'Z').replace(' ', 'T')) } };
      this.#phase = 'Running';
      this.#reason = this.#message = undefined;
      this.#ready = !c.readinessProbe;
      this.#report();
      this.#agent.log(`pod ${this.#key} running as ${id.slice(0, 12)} on ${this.#ip}`);
      this.#watchExit(id, run);
      if (c.readinessProbe?.httpGet) void this.#probe(run);
    } catch (err) {
      if (this.#done || run !== this.#run) return;
      const reason = (err as { reason?: string }).reason ?? 'CreateContainerConfigError';
      this.#agent.log(`pod ${this.#key}: ${reason}: ${message(err)}`);
      this.#state = { waiting: { reason, message: message(err) } };
      this.#report();
      this.#retry();
    }
  }

  /**
   * The container's environment: the `kubernetes` Service's variables first (as the kubelet sets
   * them whatever enableServiceLinks says), then the container's env: values, secret and config
   * map keys, pod fields, $(VAR) expanded.
   */
  async #env(): Promise<Record<string, string>> {
    const namespace = this.pod.metadata!.namespace!;
    const core = this.#agent.core;
    const { host, port } = this.#agent.apiserver;
    const link = `tcp://${host}:${port}`;
    const env: Record<string, string> = {
      KUBERNETES_SERVICE_HOST: host,
      KUBERNETES_SERVICE_PORT: String(port),
      KUBERNETES_SERVICE_PORT_HTTPS: String(port),
      KUBERNETES_PORT: link,
      [`KUBERNETES_PORT_${port}_TCP`]: link,
      [`KUBERNETES_PORT_${port}_TCP_PROTO`]: 'tcp',
      [`KUBERNETES_PORT_${port}_TCP_PORT`]: String(port),
      [`KUBERNETES_PORT_${port}_TCP_ADDR`]: host,
    };
    for (const e of this.#container.env ?? []) {
      const from = e.valueFrom;
      if (!from) {
        env[e.name] = (e.value ?? '').replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (m, name?: string) => (name === undefined ? '$' : env[name] ?? m));
      } else if (from.secretKeyRef || from.configMapKeyRef) {
        const ref = (from.secretKeyRef ?? from.configMapKeyRef)!;
        const kind = from.secretKeyRef ? 'secret' : 'config map';
        const value = await (from.secretKeyRef
          ? core.readNamespacedSecret({ name: ref.name!, namespace }).then((s) => (s.data?.[ref.key] === undefined ? undefined : Buffer.from(s.data[ref.key]!, 'base64').toString()))
          : core.readNamespacedConfigMap({ name: ref.name!, namespace }).then((m) => m.data?.[ref.key])
        ).catch((err: unknown) => {
          if (statusCode(err) === 404) return undefined;
          throw err;
        });
        if (value !== undefined) env[e.name] = value;
        else if (!ref.optional) throw new Error(`env ${e.name}: key "${ref.key}" of ${kind} "${ref.name}" not found`);
      } else if (from.fieldRef) {
        const value = this.#field(from.fieldRef.fieldPath);
        if (value === undefined) throw new Error(`env ${e.name}: fieldRef ${from.fieldRef.fieldPath} is not supported by this node`);
        env[e.name] = value;
      } else {
        throw new Error(`env ${e.name}: only value, secretKeyRef, configMapKeyRef and fieldRef are supported by this node`);
      }
    }
    return env;
  }

  /** A pod field for the downward API (env fieldRef, downwardAPI volume items); undefined when not supported. */
  #field(fieldPath: string): string | undefined {
    const meta = this.pod.metadata!;
    const fields: Record<string, string | undefined> = {
      'metadata.name': meta.name, 'metadata.namespace': meta.namespace, 'metadata.uid': meta.uid,
      'metadata.labels': formatMap(meta.labels), 'metadata.annotations': formatMap(meta.annotations),
      'spec.nodeName': this.#agent.nodeName, 'spec.serviceAccountName': this.pod.spec!.serviceAccountName,
      'status.podIP': this.#ip, 'status.podIPs': this.#ip, 'status.hostIP': hostIP, 'status.hostIPs': hostIP,
    };
    if (fieldPath in fields) return fields[fieldPath] ?? '';
    const one = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(fieldPath);
    if (one) return (one[1] === 'labels' ? meta.labels : meta.annotations)?.[one[2]!] ?? '';
    return undefined;
  }

  /**
   * Writes the pod's volumes under its host directory and returns the container's `--volume`
   * values, one per volumeMount. API-data volumes are rewritten on every start; emptyDir is kept.
   */
  async #volumes(): Promise<string[]> {
    const root = path.join(this.#agent.podDir(this.pod.metadata!.uid!), 'volumes');
    const written = new Map<string, { dir: string; emptyDir: boolean }>();
    for (const v of this.pod.spec!.volumes ?? []) {
      const dir = path.join(root, v.name);
      if (v.emptyDir) {
        await mkdir(dir, { recursive: true });
        await chmod(dir, 0o777);
      } else {
        await writeVolume(dir, await this.#volumeFiles(v).catch((err: unknown) => {
          throw new Error(`volume "${v.name}": ${message(err)}`);
        }));
      }
      written.set(v.name, { dir, emptyDir: !!v.emptyDir });
    }
    const mounts: string[] = [];
    for (const m of this.#container.volumeMounts ?? []) {
      const v = written.get(m.name);
      if (!v) throw new Error(`volumeMount ${m.mountPath}: the pod has no volume "${m.name}"`);
      let source = v.dir;
      if (m.subPath) {
        source = path.join(v.dir, safeRelative(m.subPath, `volumeMount ${m.mountPath}: subPath`));
        if (!(await stat(source).catch(() => undefined))) {
          await mkdir(source, { recursive: true });
          await chmod(source, v.emptyDir ? 0o777 : 0o755);
        }
      }
      mounts.push(`${source}:${m.mountPath}${m.readOnly || !v.emptyDir ? ':ro' : ''}`);
    }
    return mounts;
  }

  /** The files of a configMap, secret, downwardAPI or projected volume. */
  async #volumeFiles(v: V1Volume): Promise<VolumeFile[]> {
    const mode = (m: number | undefined): number => (m ?? 0o644) & 0o777;
    if (v.configMap) return this.#configMapFiles(v.configMap.name!, v.configMap, mode(v.configMap.defaultMode));
    if (v.secret) return this.#secretFiles(v.secret.secretName!, v.secret, mode(v.secret.defaultMode));
    if (v.downwardAPI) return this.#downwardFiles(v.downwardAPI.items ?? [], mode(v.downwardAPI.defaultMode));
    const projected = v.projected!;
    const files: VolumeFile[] = [];
    for (const s of projected.sources ?? []) {
      const m = mode(projected.defaultMode);
      if (s.serviceAccountToken) files.push({ path: s.serviceAccountToken.path, content: await this.#token(s.serviceAccountToken), mode: m });
      else if (s.configMap) files.push(...(await this.#configMapFiles(s.configMap.name!, s.configMap, m)));
      else if (s.secret) files.push(...(await this.#secretFiles(s.secret.name!, s.secret, m)));
      else if (s.downwardAPI) files.push(...this.#downwardFiles(s.downwardAPI.items ?? [], m));
    }
    return files;
  }

  async #configMapFiles(name: string, source: KeyedSource, mode: number): Promise<VolumeFile[]> {
    const map = await this.#agent.core.readNamespacedConfigMap({ name, namespace: this.pod.metadata!.namespace! }).catch(notFound);
    const data = map && {
      ...Object.fromEntries(Object.entries(map.data ?? {}).map(([k, v]) => [k, Buffer.from(v)])),
      ...Object.fromEntries(Object.entries(map.binaryData ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64')])),
    };
    return keyedFiles(`configmap "${name}"`, data, source, mode);
  }

  async #secretFiles(name: string, source: KeyedSource, mode: number): Promise<VolumeFile[]> {
    const secret = await this.#agent.core.readNamespacedSecret({ name, namespace: this.pod.metadata!.namespace! }).catch(notFound);
    const data = secret && Object.fromEntries(Object.entries(secret.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64')]));
    return keyedFiles(`secret "${name}"`, data, source, mode);
  }

  #downwardFiles(items: V1DownwardAPIVolumeFile[], mode: number): VolumeFile[] {
    return items.map((item) => {
      const value = item.fieldRef ? this.#field(item.fieldRef.fieldPath) : undefined;
      if (value === undefined) throw new Error(`downward API item ${item.path}: only metadata fieldRefs are supported by this node`);
      return { path: item.path, content: Buffer.from(value), mode: item.mode === undefined ? mode : item.mode & 0o777 };
    });
  }

  /** A token of the pod's ServiceAccount bound to the pod (TokenRequest), as the kubelet gets one. */
  async #token(source: { audience?: string; expirationSeconds?: number }): Promise<Buffer> {
    const { name, namespace, uid } = this.pod.metadata as { name: string; namespace: string; uid: string };
    const request = await this.#agent.core.createNamespacedServiceAccountToken({
      name: this.pod.spec!.serviceAccountName ?? 'default',
      namespace,
      body: {
        spec: {
          audiences: source.audience ? [source.audience] : [],
          expirationSeconds: source.expirationSeconds ?? 3600,
          boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name, uid },
        },
      },
    });
    return Buffer.from(request.status!.token);
  }

  #watchExit(id: string, run: number): void {
    const child = this.#agent.podman.spawn(['wait', id], {});
    this.#waitChild = child;
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.on('close', () => {
      if (this.#done || this.#terminating || run !== this.#run) return;
      void this.#exited(id, Number.parseInt(out.trim(), 10), run);
    });
  }

  async #exited(id: string, waited: number, run: number): Promise<void> {
    let exitCode = waited;
    let finishedAt = new Date();
    const inspected = await this.#agent.podman.run(['inspect', id, '--format', '{{.State.ExitCode}}|{{.State.FinishedAt}}']);
    if (inspected.code === 0) {
      const [code, finished] = inspected.stdout.trim().split('|');
      exitCode = Number(code);
      finishedAt = new Date(finished!.replace(/ \+0000 UTC$/, 'Z').replace(' ', 'T'));
    }
    if (this.#done || this.#terminating || run !== this.#run) return;
    if (!Number.isFinite(exitCode)) exitCode = 137;
    const terminated: V1ContainerStateTerminated = {
      exitCode, reason: exitCode === 0 ? 'Completed' : 'Error', containerID: this.#containerID, startedAt: this.#state.running?.startedAt, finishedAt,
    };
    this.#ready = false;
    this.#agent.log(`pod ${this.#key}: container exited with code ${exitCode}`);
    const policy = this.pod.spec!.restartPolicy ?? 'Always';
    if (policy === 'Always' || (policy === 'OnFailure' && exitCode !== 0)) {
      this.#lastState = { terminated };
      this.#state = { waiting: { reason: 'CrashLoopBackOff', message: `back-off ${this.#backoffMs / 1000} s restarting exited container` } };
      this.#report();
      this.#retry();
    } else {
      this.#state = { terminated };
      this.#finish(exitCode === 0 ? 'Succeeded' : 'Failed', undefined, undefined);
    }
  }

  /** Runs the container again after the back-off: a restart counts once a container had started. */
  #retry(): void {
    const delay = this.#backoffMs;
    this.#backoffMs = Math.min(this.#backoffMs * 2, backoffMs[1]);
    this.#timer = setTimeout(() => {
      if (this.#containerID) this.#restartCount++;
      void this.#launch();
    }, delay);
  }

  /** readinessProbe.httpGet at http://<podIP>:<port><path>: every 200 ms until it first passes, then every periodSeconds. */
  async #probe(run: number): Promise<void> {
    const c = this.#container;
    const p = c.readinessProbe!;
    const get = p.httpGet!;
    const port = typeof get.port === 'number' || /^\d+$/.test(String(get.port)) ? Number(get.port) : c.ports?.find((x) => x.name === get.port)?.containerPort;
    const url = `${(get.scheme ?? 'HTTP').toLowerCase()}://${this.#ip}:${port}${get.path ?? '/'}`;
    const periodMs = Math.max(1, p.periodSeconds ?? 10) * 1000;
    let passes = 0;
    let fails = 0;
    let passedOnce = false;
    await sleep((p.initialDelaySeconds ?? 0) * 1000);
    while (!this.#done && !this.#terminating && run === this.#run) {
      const ok = await fetch(url, { signal: AbortSignal.timeout(Math.max(1, p.timeoutSeconds ?? 1) * 1000) }).then(
        (res) => (void res.body?.cancel(), res.status >= 200 && res.status < 400),
        () => false,
      );
      if (this.#done || this.#terminating || run !== this.#run) return;
      passes = ok ? passes + 1 : 0;
      fails = ok ? 0 : fails + 1;
      passedOnce ||= ok;
      if (!this.#ready && passes >= (p.successThreshold ?? 1)) {
        this.#ready = true;
        this.#report();
      } else if (this.#ready && fails >= (p.failureThreshold ?? 3)) {
        this.#ready = false;
        this.#report();
      }
      await sleep(passedOnce ? periodMs : 200);
    }
  }

  /** The pod got a deletionTimestamp: stop the container within its grace period, then delete the pod. */
  terminate(): void {
    if (this.#terminating) return;
    this.#terminating = true;
    clearTimeout(this.#timer);
    const grace = this.pod.metadata!.deletionGracePeriodSeconds ?? this.pod.spec!.terminationGracePeriodSeconds ?? 30;
    void (async () => {
      if (this.#containerID) {
        await this.#agent.podman.run(['stop', '--ignore', '--time', String(grace), this.#containerName], { timeoutMs: (grace + 10) * 1000 });
      }
      this.#done = true;
      this.#agent.releaseIP(this.#ip);
      await this.#agent.finishDeletion(this.pod);
    })().catch((err: unknown) => this.#agent.log(`pod ${this.#key}: deletion failed: ${message(err)}`));
  }

  /** The pod is gone from the API: remove its container at once. */
  async remove(): Promise<void> {
    this.abandon();
    await this.#agent.podman.run(['rm', '--force', '--time', '0', '--ignore', this.#containerName]);
    await this.#agent.removePodDir(this.pod.metadata!.uid!);
    this.#agent.releaseIP(this.#ip);
  }

  /** Stops everything this worker does; the agent removes the containers. */
  abandon(): void {
    this.#done = true;
    clearTimeout(this.#timer);
    this.#waitChild?.kill('SIGTERM');
  }

  #finish(phase: 'Succeeded' | 'Failed', reason: string | undefined, text: string | undefined): void {
    this.#phase = phase;
    this.#reason = reason;
    this.#message = text;
    this.#ready = false;
    this.#done = true;
    this.#report();
  }

  #condition(type: string, ok: boolean, reason?: string): V1PodCondition {
    const status = ok ? 'True' : 'False';
    let t = this.#transitions.get(type);
    if (t?.status !== status) this.#transitions.set(type, (t = { status, time: isoNow() }));
    return { type, status, lastTransitionTime: t.time as unknown as Date, ...(reason && !ok ? { reason } : {}) };
  }

  /** Sends the current status (merge patch of pods/status: no resourceVersion, no conflicts); reports go in order. */
  #report(): void {
    this.#reporting = this.#reporting.then(async () => {
      const c = this.#container;
      const terminal = this.#phase === 'Succeeded' || this.#phase === 'Failed';
      const notReady = terminal ? 'PodCompleted' : 'ContainersNotReady';
      const status = {
        phase: this.#phase,
        reason: this.#reason ?? null,
        message: this.#message ?? null,
        hostIP, hostIPs: [{ ip: hostIP }],
        ...(this.#ip && this.#reason !== 'UnsupportedPod' ? { podIP: this.#ip, podIPs: [{ ip: this.#ip }] } : {}),
        startTime: this.#startTime,
        conditions: [
          this.#condition('PodScheduled', true),
          this.#condition('Initialized', this.#reason !== 'UnsupportedPod'),
          this.#condition('ContainersReady', this.#ready, notReady),
          this.#condition('Ready', this.#ready, notReady),
        ],
        containerStatuses: c && this.#reason !== 'UnsupportedPod'
          ? [{
              name: c.name, image: c.image, imageID: this.#imageID, containerID: this.#containerID || undefined,
              ready: this.#ready, started: !!this.#state.running, restartCount: this.#restartCount,
              state: this.#state, lastState: this.#lastState,
            }]
          : undefined,
      };
      const { name, namespace } = this.pod.metadata as { name: string; namespace: string };
      for (let attempt = 1; ; attempt++) {
        try {
          await this.#agent.core.patchNamespacedPodStatus({ name, namespace, body: { status } }, mergePatch());
          return;
        } catch (err) {
          const code = statusCode(err);
          if (code === 404 || attempt >= 5 || (code !== undefined && code < 500 && code !== 409 && code !== 429)) {
            if (code !== 404) this.#agent.log(`pod ${namespace}/${name}: status update failed: ${message(err)}`);
            return;
          }
          await sleep(200 * attempt);
        }
      }
    });
  }
}

interface VolumeFile {
  /** Relative to the volume's directory. */
  path: string;
  content: Buffer;
  mode: number;
}

interface KeyedSource {
  items?: V1KeyToPath[];
  optional?: boolean;
}

/** Why the node refuses the pod's volumes, if it does. */
function unsupportedVolume(spec: V1PodSpec): string | undefined {
  const metadataOnly = (items: V1DownwardAPIVolumeFile[] | undefined): boolean => (items ?? []).every((i) => i.fieldRef && !i.resourceFieldRef);
  for (const v of spec.volumes ?? []) {
    if (v.projected) {
      for (const s of v.projected.sources ?? []) {
        if (!s.serviceAccountToken && !s.configMap && !s.secret && !s.downwardAPI) {
          return `volume "${v.name}": of projected sources this node supports serviceAccountToken, configMap, secret and downwardAPI only`;
        }
        if (s.downwardAPI && !metadataOnly(s.downwardAPI.items)) return `volume "${v.name}": this node supports downward API fieldRefs only`;
      }
    } else if (v.downwardAPI) {
      if (!metadataOnly(v.downwardAPI.items)) return `volume "${v.name}": this node supports downward API fieldRefs only`;
    } else if (!v.configMap && !v.secret && !v.emptyDir) {
      return `volume "${v.name}": this node supports configMap, secret, downwardAPI, projected and emptyDir volumes only`;
    }
  }
  const subPathExpr = spec.containers[0]?.volumeMounts?.find((m) => m.subPathExpr);
  return subPathExpr ? `volumeMount ${subPathExpr.mountPath}: subPathExpr is not supported by this node` : undefined;
}

/** Every key of a config map's or secret's data, or the listed items; `data` undefined when it does not exist. */
function keyedFiles(what: string, data: Record<string, Buffer> | undefined, source: KeyedSource, mode: number): VolumeFile[] {
  if (!data) {
    if (source.optional) return [];
    throw new Error(`${what} not found`);
  }
  if (!source.items?.length) return Object.entries(data).map(([key, content]) => ({ path: key, content, mode }));
  return source.items.flatMap((item) => {
    const content = data[item.key];
    if (content !== undefined) return [{ path: item.path, content, mode: item.mode === undefined ? mode : item.mode & 0o777 }];
    if (source.optional) return [];
    throw new Error(`${what} has no key "${item.key}"`);
  });
}

/** A relative path that stays inside its directory. */
function safeRelative(p: string, what: string): string {
  const normal = path.posix.normalize(p);
  if (path.posix.isAbsolute(p) || normal === '..' || normal.startsWith('../')) throw new Error(`${what} ${p} must be a relative path inside the volume`);
  return normal;
}

/** Writes the files into a fresh directory (directories 0755) and puts it in place of `dir`. */
async function writeVolume(dir: string, files: VolumeFile[]): Promise<void> {
  const next = `${dir}.new`;
  await rm(next, { recursive: true, force: true });
  await mkdir(next, { recursive: true });
  await chmod(next, 0o755);
  for (const f of files) {
    const target = path.join(next, safeRelative(f.path, 'volume file'));
    for (let d = path.dirname(target); d !== next && !(await stat(d).catch(() => undefined)); d = path.dirname(d)) {
      await mkdir(d, { recursive: true });
    }
    await writeFile(target, f.content);
    await chmod(target, f.mode);
  }
  // mkdir's mode is masked by the umask: open up every directory made above.
  for (const f of files) {
    for (let d = path.dirname(path.join(next, f.path)); d.startsWith(next) && d !== next; d = path.dirname(d)) await chmod(d, 0o755);
  }
  await rm(dir, { recursive: true, force: true });
  await rename(next, dir);
}

/** Labels or annotations as the kubelet writes them to a downward API file: sorted key="value" lines. */
function formatMap(map: Record<string, string> | undefined): string {
  return Object.keys(map ?? {})
    .sort()
    .map((k) => `${k}=${JSON.stringify(map![k])}`)
    .join('\n');
}

const notFound = (err: unknown): undefined => {
  if (statusCode(err) === 404) return undefined;
  throw err;
};

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
