// The kubernetes driver through the shared driver conformance suite, on the shared cluster of
// cluster.test.ts and its node (the real kubelet on containerd, or the podman node agent, as
// KUBEFN_TEST_NODE says): Functions become Deployments, the real scheduler binds their pods to the
// node, the node runs them, the real EndpointSlice controller feeds the endpoints, and pod logs
// come back through the API server.

import { KubernetesDriver } from '@kubefn/platform';
import { driverConformance } from '@kubefn/platform/testing';
import type { TestCluster } from '../support/cluster.js';
import { clusterComposedDriver } from '../support/kubernetes-compositions.js';
import { fixtureImages } from '../support/podman.js';

/**
 * Registers the suite twice on the cluster `cluster()` returns once the enclosing suite has
 * started it: the driver with its Function controller in one process (KubernetesDriver.open),
 * and composed as the cluster runs it (the gateway's driver with the pending-pod prober and no
 * controller, next to the autoscaler pod's controller on objects of its own).
 */
export function kubernetesConformanceCases(sharedCluster: () => TestCluster): void {
  const compositions = [
    { name: 'kubernetes', namespace: 'kubefn-conformance', open: async (kubeconfig: string, namespace: string) => {
      const driver = await KubernetesDriver.open({ kubeconfig, namespace });
      return { driver, close: () => driver.close() };
    } },
    { name: 'kubernetes (composed as the gateway and the controller run in a cluster)', namespace: 'kubefn-conformance-cluster', open: clusterComposedDriver },
  ];
  for (const { name, namespace, open } of compositions) {
    driverConformance(
      name,
      async () => {
        const cluster = sharedCluster();
        await cluster.installFunctionCrd();
        await cluster.createNamespace(namespace);
        const images = await fixtureImages();
        await cluster.node!.trustRegistry(images.registry.host);
        const composed = await open(cluster.cp.kubeconfig, namespace);
        return {
          driver: composed.driver,
          image: (fixture) => images.image(fixture),
          cleanup: async () => {
            await composed.close();
            await images.registry.close();
          },
        };
      },
      { waitTimeoutMs: 120_000, testTimeoutMs: 300_000 },
    );
  }
}
