// The test cluster the kubernetes tests share: a real control plane with the Function CRD
// installed and established, a namespace, and optionally the podman node agent as its node.

import type { KubeConfig, V1CustomResourceDefinition } from '@kubernetes/client-node';
import { functionCrd, loadKubernetesClient, type KubernetesClient } from '@kubefn/platform';
import { waitFor } from '@kubefn/platform/testing';
import { startControlPlane, type ControlPlane } from './control-plane.js';
import { startNodeAgent, type NodeAgent } from './node-agent.js';
import { podmanTestOptions } from './podman.js';

export interface TestCluster {
  cp: ControlPlane;
  k8s: KubernetesClient;
  kc: KubeConfig;
  node: NodeAgent | undefined;
  close(): Promise<void>;
}

export async function startTestCluster(options: { namespace: string; node?: boolean; insecureRegistries?: string[]; onProgress?: (line: string) => void }): Promise<TestCluster> {
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
    const node = options.node ? await startNodeAgent({ kubeconfig: cp.kubeconfig, apiserver: { host: cp.podHost, port: cp.port }, podman: await podmanTestOptions(), insecureRegistries: options.insecureRegistries ?? [] }) : undefined;
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
