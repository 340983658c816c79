// `npm run bench:k8s`: on the test cluster (real control plane; the real kubelet on containerd as
// the node where the machine allows, else the podman node agent; KUBEFN_TEST_NODE chooses), the
// time from KubernetesDriver.deploy() of a new function to its first ready replica answering a
// request: Function apply -> reconcile -> Deployment -> scheduler -> node -> readiness ->
// EndpointSlice -> endpoints(). Prints a table and writes bench-results/k8s.json.

import os from 'node:os';
import { KubernetesDriver, parseFunctionSpec } from '@kubefn/platform';
import { waitFor } from '@kubefn/platform/testing';
import { startTestCluster } from '../support/cluster.js';
import { fixtureImages } from '../support/podman.js';
import { percentile } from './cold-start.js';
import { writeBenchResults } from './results.js';

const tries = Number(process.env.BENCH_TRIES ?? 10);
const namespace = 'kubefn-bench';

async function main(): Promise<void> {
  const cluster = await startTestCluster({ namespace, node: true, onProgress: (line) => console.error(line) });
  const images = await fixtureImages();
  await cluster.node!.trustRegistry(images.registry.host);
  const image = await images.image('hello');
  const driver = await KubernetesDriver.open({ kubeconfig: cluster.cp.kubeconfig, namespace });
  const ms: number[] = [];
  try {
    for (let i = 0; i < tries; i++) {
      const name = `bench-${i}`;
      const t0 = performance.now();
      await driver.deploy(parseFunctionSpec({ name, image, scale: { initial: 1 } }));
      const [endpoint] = await waitFor(() => (driver.endpoints(name).current().length ? driver.endpoints(name).current() : false), { timeoutMs: 120_000, what: `${name} ready` });
      const res = await fetch(endpoint!.url);
      await res.text();
      if (res.status !== 200) throw new Error(`${name} answered ${res.status}`);
      ms.push(performance.now() - t0);
      await driver.remove(name);
    }
  } finally {
    await driver.close();
    await images.registry.close();
    await cluster.close();
  }
  const results = { machine: { cpus: os.cpus().length, node: process.version }, clusterNode: cluster.node!.kind, tries, deployToFirstAnswerMs: { p50: percentile(ms, 50), max: Math.max(...ms), all: ms.map((x) => Math.round(x)) } };
  console.log(`| measure (${tries} tries) | p50 | max |\n|---|---|---|\n| deploy() of a new function -> first request answered | ${results.deployToFirstAnswerMs.p50.toFixed(0)} ms | ${results.deployToFirstAnswerMs.max.toFixed(0)} ms |`);
  await writeBenchResults('k8s', results);
  console.log(JSON.stringify(results));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
