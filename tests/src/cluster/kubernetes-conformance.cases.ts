// The kubernetes driver through the shared driver conformance suite, on the shared cluster of
// cluster.test.ts and its node (the real kubelet on containerd, or the podman node agent, as
// KUBEFN_TEST_NODE says): Functions become Deployments, the real scheduler binds their pods to the
// node, the node runs them, the real EndpointSlice controller feeds the endpoints, and pod logs
// come back through the API server.

import { KubernetesDriver } from '@kubefn/platform';
import { driverConformance } from '@kubefn/platform/testing';
import type { TestCluster } from '../support/cluster.js';
import { fixtureImages } from '../support/podman.js';

const namespace = 'kubefn-conformance';

/** Registers the suite on the cluster `cluster()` returns once the enclosing suite has started it. */
export function kubernetesConformanceCases(sharedCluster: () => TestCluster): void {
  driverConformance(
    'kubernetes',
    async () => {
      const cluster = sharedCluster();
      await cluster.installFunctionCrd();
      await cluster.createNamespace(namespace);
      const images = await fixtureImages();
      await cluster.node!.trustRegistry(images.registry.host);
      const driver = await KubernetesDriver.open({ kubeconfig: cluster.cp.kubeconfig, namespace });
      return {
        driver,
        image: (fixture) => images.image(fixture),
        cleanup: async () => {
          await driver.close();
          await images.registry.close();
        },
      };
    },
    { waitTimeoutMs: 120_000, testTimeoutMs: 300_000 },
  );
}
