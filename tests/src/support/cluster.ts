// The test cluster the kubernetes tests share: a real control plane with the Function CRD
// installed and established, a namespace, and optionally a node: the real kubelet with kube-proxy
// on containerd (kubelet-node.ts) where the machine can run it, else the podman node agent
// (node-agent.ts). KUBEFN_TEST_NODE=kubelet|agent chooses for tests that take either.

import type { KubeConfig, V1CustomResourceDefinition } from '@kubernetes/client-node';
import { functionCrd, loadKubernetesClient, type KubernetesClient } from '@kubefn/platform';
import { waitFor } from '@kubefn/platform/testing';
import { startControlPlane, type ControlPlane } from './control-plane.js';
import { KubeletNodeBusyError, kubeletNodeAvailable, startKubeletNode, type KubeletNode } from './kubelet-node.js';
import { startNodeAgent, type NodeAgent } from './node-agent.js';
import { podmanTestOptions } from './podman.js';

/** What every kind of test node offers. */
export interface TestNode {
  kind: 'kubelet' | 'agent';
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
  close(): Promise<void>;
}

export interface TestClusterOptions {
  namespace: string;
  /**
   * No node (default), a given kind, or `true`: the kubelet where kubeletNodeAvailable() and no
   * other process runs one on this machine, else the node agent; KUBEFN_TEST_NODE=kubelet|agent
   * decides instead when set.
   */
  node?: boolean | 'kubelet' | 'agent';
  /** Registries the node pulls from over plain HTTP (host:port); more with node.trustRegistry(). */
  insecureRegistries?: string[];
  onProgress?: (line: string) => void;
}

/** How long a forced kubelet node waits for another process's to go. */
const kubeletWaitMs = 30 * 60_000;

async function startNode(cp: ControlPlane, options: TestClusterOptions): Promise<TestNode | undefined> {
  const progress = options.onProgress ?? (() => {});
  const insecureRegistries = options.insecureRegistries ?? [];
  if (!options.node) return undefined;
  const forced = process.env.KUBEFN_TEST_NODE;
  if (options.node === true && forced && forced !== 'kubelet' && forced !== 'agent') throw new Error(`KUBEFN_TEST_NODE is "${forced}", not kubelet or agent`);
  const kind = options.node === true ? (forced as 'kubelet' | 'agent' | undefined) : options.node;
  if (kind !== 'agent') {
    const available = await kubeletNodeAvailable();
    if (kind === 'kubelet' && !available) throw new Error('the kubelet node needs root, containerd, runc, iptables, iproute2, gcc and /usr/lib/cni (containernetworking-plugins)');
    if (available) {
      try {
        const kubelet = await startKubeletNode({ cp, onProgress: progress, insecureRegistries, waitForHostMs: kind === 'kubelet' ? kubeletWaitMs : 0 });
        return { kind: 'kubelet', nodeName: kubelet.nodeName, podCIDR: kubelet.podCIDR, trustRegistry: kubelet.trustRegistry, close: kubelet.close, kubelet };
      } catch (err) {
        if (!(err instanceof KubeletNodeBusyError) || kind === 'kubelet') throw err;
        progress(`${err.message}: using the podman node agent`);
      }
    } else {
      progress('the kubelet node cannot run here (kubeletNodeAvailable): using the podman node agent');
    }
  }
  const agent = await startNodeAgent({ kubeconfig: cp.kubeconfig, apiserver: { host: cp.podHost, port: cp.port }, podman: await podmanTestOptions(), insecureRegistries });
  return { kind: 'agent', nodeName: agent.nodeName, podCIDR: agent.podCIDR, trustRegistry: agent.trustRegistry, close: agent.close, agent };
}

export async function startTestCluster(options: TestClusterOptions): Promise<TestCluster> {
  const cp = await startControlPlane(options.onProgress);
  try {
    const k8s = await loadKubernetesClient();
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(cp.kubeconfig);
    const apiext = kc.makeApiClient(k8s.ApiextensionsV1Api);
    await apiext.createCustomResourceDefinition({ body: functionCrd() as V1CustomResourceDefinition });
    await waitFor(
      async () =>
        (await apiext.readCustomResourceDefinition({ name: 'functions.kubefn.dev' })).status?.conditions?.some(
          (c) => c.type === 'Established' && c.status === 'True',
        ),
      { timeoutMs: 60_000, what: 'the Function CRD established' },
    );
    await kc.makeApiClient(k8s.CoreV1Api).createNamespace({ body: { metadata: { name: options.namespace } } });
    const node = await startNode(cp, options);
    return {
      cp,
      k8s,
      kc,
      node,
      close: async () => {
        await node?.close();
        await cp.close();
      },
    };
  } catch (err) {
    await cp.close();
    throw err;
  }
}
