// `npm run bench:k8s`: on the test cluster (real control plane, podman node agent as the node),
// the time from KubernetesDriver.deploy() of a new function to its first ready replica answering
// a request: Function apply -> reconcile -> Deployment -> scheduler -> node agent -> readiness ->
// EndpointSlice -> endpoints(). Prints a table and writes bench-results/k8s.json.

import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { V1CustomResourceDefinition } from '@kubernetes/client-node';
import { RegistryClient } from '@kubefn/builder';
import { startRegistry } from '@kubefn/builder/testing';
import { functionCrd, KubernetesDriver, loadKubernetesClient, parseFunctionSpec } from '@kubefn/platform';
import { waitFor } from '@kubefn/platform/testing';
import { startControlPlane } from '../support/control-plane.js';
import { startNodeAgent } from '../support/node-agent.js';
import { repoRoot } from '../support/platform-process.js';
import { buildAndPush, fixturesDir, podmanTestOptions, pushTestBase } from '../support/podman.js';
import { percentile } from './cold-start.js';

const tries = Number(process.env.BENCH_TRIES ?? 10);
const namespace = 'kubefn-bench';

async function main(): Promise<void> {
  const cp = await startControlPlane((line) => console.error(line));
  const k8s = await loadKubernetesClient();
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(cp.kubeconfig);
  const apiext = kc.makeApiClient(k8s.ApiextensionsV1Api);
  await apiext.createCustomResourceDefinition({ body: functionCrd() as V1CustomResourceDefinition });
  await waitFor(async () => (await apiext.readCustomResourceDefinition({ name: 'functions.kubefn.dev' })).status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True'), { what: 'CRD established' });
  await kc.makeApiClient(k8s.CoreV1Api).createNamespace({ body: { metadata: { name: namespace } } });
  const node = await startNodeAgent({ kubeconfig: cp.kubeconfig, podman: await podmanTestOptions() });
  const registry = await startRegistry();
  const client = new RegistryClient();
  const image = (await buildAndPush(client, { dir: path.join(fixturesDir, 'hello'), name: 'hello', base: await pushTestBase(client, registry.host), registry: registry.host })).ref;
  const driver = await KubernetesDriver.open({ kubeconfig: cp.kubeconfig, namespace });
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
    await node.close();
    await registry.close();
    await cp.close();
  }
  const results = { machine: { cpus: os.cpus().length, node: process.version }, tries, deployToFirstAnswerMs: { p50: percentile(ms, 50), max: Math.max(...ms), all: ms.map((x) => Math.round(x)) } };
  console.log(`| measure (${tries} tries) | p50 | max |\n|---|---|---|\n| deploy() of a new function -> first request answered | ${results.deployToFirstAnswerMs.p50.toFixed(0)} ms | ${results.deployToFirstAnswerMs.max.toFixed(0)} ms |`);
  const out = path.join(repoRoot, 'bench-results');
  await mkdir(out, { recursive: true });
  await writeFile(path.join(out, 'k8s.json'), JSON.stringify(results, null, 2) + '\n');
  console.log(JSON.stringify(results));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
