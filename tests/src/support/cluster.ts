// The test cluster the kubernetes tests share: a real control plane with the Function CRD
// installed and established, namespaces, and optionally a node: the real kubelet with kube-proxy
// on containerd (kubelet-node.ts) or the podman node agent (node-agent.ts).
//
// Which node is never a silent choice: KUBEFN_TEST_NODE=kubelet|agent decides, and a kubelet that
// cannot start then fails with its reason (the missing prerequisite, or the kubelet's own output)
// rather than giving way to the agent. Unset, the kubelet is used where the machine has what it
// needs, else the agent, and stderr says which and why (testNodeKind).

import type { KubeConfig, V1CustomResourceDefinition } from '@kubernetes/client-node';
import { functionCrd, loadKubernetesClient, type KubernetesClient } from '@kubefn/platform';
import { waitFor } from '@kubefn/platform/testing';
import { startControlPlane, type ControlPlane } from './control-plane.js';
import { kubeletNodePrerequisites, startKubeletNode, type KubeletNode } from './kubelet-node.js';
import { startNodeAgent, type NodeAgent } from './node-agent.js';
import { podmanTestOptions } from './podman.js';

export type NodeKind = 'kubelet' | 'agent';

/** What every kind of test node offers. */
export interface TestNode {
  kind: NodeKind;
  nodeName: string;
  /** The Node's spec.podCIDR: pod IPs come from it and answer from the host. */
  podCIDR: string;
  /** Lets the node pull from `host` (host:port) over plain HTTP; loopback registries need no call. */
  trustRegistry(host: string): Promise<void>;
  close(): Promise<void>;
  /** The podman node agent, when `kind` is 'agent'. */
  agent?: NodeAgent;
  /** The kubelet node, when `kind` is 'kubelet'. */
  kubelet?: KubeletNode;
}

export interface TestCluster {
  cp: ControlPlane;
  k8s: KubernetesClient;
  kc: KubeConfig;
  node: TestNode | undefined;
  /** Creates the namespace unless it is there. */
  createNamespace(name: string): Promise<void>;
  /** Creates the Function CRD unless it is there, and waits until it is established. */
  installFunctionCrd(): Promise<void>;
  /** Deletes the Function CRD (and with it every Function), and waits until it is gone. */
  removeFunctionCrd(): Promise<void>;
  /** Stops the node and the control plane. */
  close(): Promise<void>;
}

export interface TestClusterOptions {
  /** A namespace to create; more with createNamespace(). */
  namespace?: string;
  /** Whether to install the Function CRD (default true). */
  functionCrd?: boolean;
  /** No node (default), a given kind, or `true`: the kind testNodeKind() chooses. */
  node?: boolean | NodeKind;
  /** Registries the node pulls from over plain HTTP (host:port); more with node.trustRegistry(). */
  insecureRegistries?: string[];
  onProgress?: (line: string) => void;
}

/** How long a kubelet node waits for another process's to go (one per machine), ms. */
const kubeletWaitMs = 30 * 60_000;
const crdName = 'functions.kubefn.dev';

let chosenKind: NodeKind | undefined;

/**
 * The node the cluster tests run pods on: KUBEFN_TEST_NODE when set; else the kubelet where
 * kubeletNodePrerequisites() finds nothing missing, else the node agent, said on stderr (once per
 * process) with the reason. Synchronous, so a suite can carry the kind in its name.
 */
export function testNodeKind(): NodeKind {
  if (chosenKind) return chosenKind;
  const forced = process.env.KUBEFN_TEST_NODE;
  if (forced === 'kubelet' || forced === 'agent') return (chosenKind = forced);
  if (forced) throw new Error(`KUBEFN_TEST_NODE is "${forced}": set it to kubelet or agent, or unset it`);
  const missing = kubeletNodePrerequisites();
  chosenKind = missing.length ? 'agent' : 'kubelet';
  process.stderr.write(
    missing.length
      ? `# KUBEFN_TEST_NODE is not set and the kubelet node cannot run here (it needs ${missing.join(', ')}): the cluster tests run pods on the podman node agent; KUBEFN_TEST_NODE=kubelet fails instead\n`
      : '# KUBEFN_TEST_NODE is not set: the cluster tests run pods on the kubelet node (this machine has what it needs); KUBEFN_TEST_NODE=agent for the podman node agent\n',
  );
  return chosenKind;
}

/** Starts a node of `kind` for the control plane. */
export async function startTestNode(
  cp: ControlPlane,
  kind: NodeKind,
  options: Pick<TestClusterOptions, 'insecureRegistries' | 'onProgress'> = {},
): Promise<TestNode> {
  const insecureRegistries = options.insecureRegistries ?? [];
  if (kind === 'kubelet') {
    // Throws with the missing prerequisite or the kubelet's own output; waits for another
    // process's kubelet node rather than using another kind.
    const kubelet = await startKubeletNode({ cp, onProgress: options.onProgress, insecureRegistries, waitForHostMs: kubeletWaitMs });
    return { kind, nodeName: kubelet.nodeName, podCIDR: kubelet.podCIDR, trustRegistry: kubelet.trustRegistry, close: kubelet.close, kubelet };
  }
  const agent = await startNodeAgent({ kubeconfig: cp.kubeconfig, apiserver: { host: cp.podHost, port: cp.port }, podman: await podmanTestOptions(), insecureRegistries });
  return { kind, nodeName: agent.nodeName, podCIDR: agent.podCIDR, trustRegistry: agent.trustRegistry, close: agent.close, agent };
}

export async function startTestCluster(options: TestClusterOptions = {}): Promise<TestCluster> {
  // Before anything starts: a bad KUBEFN_TEST_NODE fails at once.
  const kind = options.node === true ? testNodeKind() : options.node || undefined;
  const cp = await startControlPlane(options.onProgress);
  let node: TestNode | undefined;
  try {
    const k8s = await loadKubernetesClient();
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(cp.kubeconfig);
    const apiext = kc.makeApiClient(k8s.ApiextensionsV1Api);
    const core = kc.makeApiClient(k8s.CoreV1Api);
    const status = (err: unknown): number | undefined => (err as { code?: number }).code;
    const cluster: TestCluster = {
      cp,
      k8s,
      kc,
      node: undefined,
      createNamespace: async (name) => {
        await core.createNamespace({ body: { metadata: { name } } }).catch((err: unknown) => {
          if (status(err) !== 409) throw err;
        });
      },
      installFunctionCrd: async () => {
        await apiext.createCustomResourceDefinition({ body: functionCrd() as V1CustomResourceDefinition }).catch((err: unknown) => {
          if (status(err) !== 409) throw err;
        });
        await waitFor(
          async () => (await apiext.readCustomResourceDefinition({ name: crdName })).status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True'),
          { timeoutMs: 60_000, what: 'the Function CRD established' },
        );
      },
      removeFunctionCrd: async () => {
        await apiext.deleteCustomResourceDefinition({ name: crdName }).catch((err: unknown) => {
          if (status(err) !== 404) throw err;
        });
        await waitFor(
          () => apiext.readCustomResourceDefinition({ name: crdName }).then(() => false, (err: unknown) => status(err) === 404),
          { timeoutMs: 120_000, what: 'the Function CRD deleted' },
        );
      },
      close: async () => {
        await node?.close();
        await cp.close();
      },
    };
    if (options.functionCrd ?? true) await cluster.installFunctionCrd();
    if (options.namespace) await cluster.createNamespace(options.namespace);
    if (kind) cluster.node = node = await startTestNode(cp, kind, options);
    return cluster;
  } catch (err) {
    await cp.close();
    throw err;
  }
}
