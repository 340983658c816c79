// The kubernetes driver through the shared driver conformance suite, on a real control plane with
// the podman node agent as its node: Functions become Deployments, the real scheduler binds their
// pods to the node, the agent runs them, the real EndpointSlice controller feeds the endpoints,
// and pod logs come back through the API server.

import path from 'node:path';
import type { V1CustomResourceDefinition } from '@kubernetes/client-node';
import { RegistryClient } from '@kubefn/builder';
import { startRegistry } from '@kubefn/builder/testing';
import { functionCrd, KubernetesDriver, loadKubernetesClient } from '@kubefn/platform';
import { driverConformance, waitFor } from '@kubefn/platform/testing';
import { startControlPlane } from './support/control-plane.js';
import { startNodeAgent } from './support/node-agent.js';
import { buildAndPush, fixturesDir, podmanTestOptions, pushTestBase } from './support/podman.js';

const namespace = 'kubefn-conformance';

driverConformance(
  'kubernetes',
  async () => {
    const cp = await startControlPlane((line) => console.log(`# ${line}`));
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
    await kc.makeApiClient(k8s.CoreV1Api).createNamespace({ body: { metadata: { name: namespace } } });
    const node = await startNodeAgent({ kubeconfig: cp.kubeconfig, podman: await podmanTestOptions() });
    const registry = await startRegistry();
    const client = new RegistryClient();
    const base = await pushTestBase(client, registry.host);
    const built = new Map<string, Promise<string>>();
    const driver = await KubernetesDriver.open({ kubeconfig: cp.kubeconfig, namespace });
    return {
      driver,
      image: (fixture) => {
        let ref = built.get(fixture);
        if (!ref) {
          ref = buildAndPush(client, { dir: path.join(fixturesDir, fixture), name: fixture, base, registry: registry.host }).then((r) => r.ref);
          built.set(fixture, ref);
        }
        return ref;
      },
      cleanup: async () => {
        await driver.close();
        await node.close();
        await registry.close();
        await cp.close();
      },
    };
  },
  { waitTimeoutMs: 120_000, testTimeoutMs: 300_000 },
);
