// The cluster suite: one real control plane (etcd, kube-apiserver, controller-manager, scheduler)
// and one node, started once for every topic below instead of once per topic. The node is the kind
// testNodeKind() names (KUBEFN_TEST_NODE=kubelet|agent, else what the machine can run, said on
// stderr), and the suite's name says which. Each topic registers its own suite and works in a
// namespace of its own; they run in this order, the Function CRD's first (it creates the CRD).
// kubefn installed from deploy/ (in the kubefn namespace) is shared the same way by the topics
// that need it: installed by the first to ask, left in place for the next.
// The node agent's own tests are node-agent.test.ts, on a control plane of their own.

import { after, before, describe } from 'node:test';
import { startTestCluster, testNodeKind, type TestCluster } from '../support/cluster.js';
import { installTestPlatform, type InstalledPlatform } from '../support/platform-install.js';
import { eventCases } from './events.cases.js';
import { failureCases } from './failures.cases.js';
import { functionCrdCases } from './function-crd.cases.js';
import { kubernetesConformanceCases } from './kubernetes-conformance.cases.js';
import { kubernetesDriverCases } from './kubernetes-driver.cases.js';
import { nativeModuleCases } from './native-modules.cases.js';
import { platformInstallCases } from './platform-install.cases.js';
import { warmPoolCases } from './warm-pool.cases.js';

const kind = testNodeKind();

describe(`kubefn on a real cluster (${kind} node)`, () => {
  let cluster: TestCluster | undefined;
  const shared = (): TestCluster => {
    if (!cluster) throw new Error('the test cluster did not start (see the failure of the suite before hook)');
    return cluster;
  };
  let installed: Promise<InstalledPlatform> | undefined;
  const platform = (): Promise<InstalledPlatform> =>
    (installed ??= installTestPlatform({ cluster: shared(), onProgress: (line) => process.stderr.write(`# ${line}\n`) }));

  // A cold machine builds the Kubernetes binaries first (many minutes on 2 cores).
  before(async () => {
    cluster = await startTestCluster({ node: kind, functionCrd: false, onProgress: (line) => process.stderr.write(`# ${line}\n`) });
  }, { timeout: 3_600_000 });

  after(async () => {
    await installed?.then((p) => p.close(), () => {});
    await cluster?.close();
  });

  functionCrdCases(shared);
  kubernetesDriverCases(shared);
  kubernetesConformanceCases(shared);
  platformInstallCases(shared, platform);
  nativeModuleCases(platform);
  eventCases(platform);
  warmPoolCases(platform);
  failureCases(platform);
});
