// The kubernetes driver through the shared driver conformance suite, on a real control plane with
// a node (the real kubelet on containerd where the machine allows, else the podman node agent):
// Functions become Deployments, the real scheduler binds their pods to the node, the node runs
// them, the real EndpointSlice controller feeds the endpoints, and pod logs come back through the
// API server.

import { KubernetesDriver } from '@kubefn/platform';
import { driverConformance } from '@kubefn/platform/testing';
import { startTestCluster } from '../support/cluster.js';
import { fixtureImages } from '../support/podman.js';

const namespace = 'kubefn-conformance';

driverConformance(
  'kubernetes',
  async () => {
    const cluster = await startTestCluster({ namespace, node: true, onProgress: (line) => console.log(`# ${line}`) });
    const images = await fixtureImages();
    await cluster.node!.trustRegistry(images.registry.host);
    const driver = await KubernetesDriver.open({ kubeconfig: cluster.cp.kubeconfig, namespace });
    return {
      driver,
      image: (fixture) => images.image(fixture),
      cleanup: async () => {
        await driver.close();
        await images.registry.close();
        await cluster.close();
      },
    };
  },
  { waitTimeoutMs: 120_000, testTimeoutMs: 300_000 },
);
