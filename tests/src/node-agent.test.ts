// The podman node agent under a real control plane: the node registers and stays healthy, pods bound
// to it (directly, by the real scheduler, by a real Deployment) run as podman containers reachable
// at their pod IPs, the real EndpointSlice controller lists them once their readiness probe passes,
// and deleting them removes the containers.

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import type { AppsV1Api, CoordinationV1Api, CoreV1Api, DiscoveryV1Api, V1Pod, V1PodSpec } from '@kubernetes/client-node';
import { RegistryClient } from '@kubefn/builder';
import { startRegistry, type TestRegistry } from '@kubefn/builder/testing';
import { Podman } from '@kubefn/platform';
import { waitFor } from '@kubefn/platform/testing';
import { startControlPlane, type ControlPlane } from './support/control-plane.js';
import { nodeAgentLabel, startNodeAgent, type NodeAgent } from './support/node-agent.js';
import { buildAndPush, fixturesDir, podmanTestOptions, pushTestBase } from './support/podman.js';

const namespace = 'default';
const waitMs = 60_000;

describe('podman node agent on a real control plane', () => {
  let cp: ControlPlane;
  let registry: TestRegistry;
  let agent: NodeAgent;
  let podman: Podman;
  let image: string;
  let core: CoreV1Api;
  let apps: AppsV1Api;
  let discovery: DiscoveryV1Api;
  let coordination: CoordinationV1Api;
  const log = (line: string): void => console.log(`# ${line}`);

  before(async () => {
    const options = await podmanTestOptions();
    podman = new Podman(options);
    const buildImage = (async () => {
      registry = await startRegistry();
      const client = new RegistryClient();
      const base = await pushTestBase(client, registry.host);
      image = (await buildAndPush(client, { dir: path.join(fixturesDir, 'hello'), name: 'hello', base, registry: registry.host })).ref;
    })();
    cp = await startControlPlane(log);
    await buildImage;
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(cp.kubeconfig);
    core = kc.makeApiClient(k8s.CoreV1Api);
    apps = kc.makeApiClient(k8s.AppsV1Api);
    discovery = kc.makeApiClient(k8s.DiscoveryV1Api);
    coordination = kc.makeApiClient(k8s.CoordinationV1Api);
    agent = await startNodeAgent({ kubeconfig: cp.kubeconfig, nodeName: `node-${process.pid}`, podman: options, onLog: log });
    // Pods need the namespace's default ServiceAccount, which the controller-manager creates.
    await waitFor(() => core.readNamespacedServiceAccount({ name: 'default', namespace }), { timeoutMs: waitMs, what: 'the default ServiceAccount' });
  }, { timeout: 3_600_000 });

  after(async () => {
    await agent?.close();
    await registry?.close();
    await cp?.close();
  });

  /** The fixture's container: greeting from a Secret, ready when the runtime's /readyz answers. */
  function podSpec(greetingSecret: string): V1PodSpec {
    return {
      terminationGracePeriodSeconds: 5,
      containers: [{
        name: 'hello',
        image,
        ports: [{ name: 'http', containerPort: 8080 }, { name: 'admin', containerPort: 8081 }],
        env: [
          { name: 'GREETING', valueFrom: { secretKeyRef: { name: greetingSecret, key: 'greeting' } } },
          { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
        ],
        readinessProbe: { httpGet: { path: '/readyz', port: 8081 }, periodSeconds: 1 },
        resources: { limits: { memory: '256Mi', cpu: '1' } },
      }],
    };
  }

  async function running(name: string): Promise<V1Pod> {
    return waitFor(
      async () => {
        const pod = await core.readNamespacedPod({ name, namespace });
        return pod.status?.phase === 'Running' && pod.status.podIP && pod.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ? pod : undefined;
      },
      { timeoutMs: waitMs, what: `pod ${name} running and ready` },
    );
  }

  async function get(url: string): Promise<string> {
    const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
    assert.equal(res.status, 200);
    return res.text();
  }

  async function agentContainers(): Promise<string[]> {
    return (await podman.check(['ps', '--all', '--format', '{{.Names}}', '--filter', `label=${nodeAgentLabel}=${agent.nodeName}`])).split('\n').filter(Boolean);
  }

  async function deletePod(name: string): Promise<void> {
    await core.deleteNamespacedPod({ name, namespace });
    await waitFor(async () => (await core.listNamespacedPod({ namespace, fieldSelector: `metadata.name=${name}` })).items.length === 0, {
      timeoutMs: waitMs,
      what: `pod ${name} deleted`,
    });
  }

  it('registers a Ready node without taints and renews its Lease', { timeout: 60_000 }, async () => {
    const node = await core.readNode({ name: agent.nodeName });
    const ready = node.status?.conditions?.find((c) => c.type === 'Ready');
    assert.equal(ready?.status, 'True');
    assert.equal(node.status?.capacity?.pods, '110');
    assert.equal(node.status?.nodeInfo?.kubeletVersion, 'v1.34.4');
    assert.equal(node.spec?.podCIDR, agent.podCIDR);
    // The NodeTaint admission plugin adds not-ready:NoSchedule to every new node; the real node
    // lifecycle controller removes it once it sees the Ready condition.
    await waitFor(async () => ((await core.readNode({ name: agent.nodeName })).spec?.taints ?? []).length === 0, {
      timeoutMs: 30_000,
      what: 'the node lifecycle controller to lift the not-ready taint',
    });
    const lease = await coordination.readNamespacedLease({ name: agent.nodeName, namespace: 'kube-node-lease' });
    const first = new Date(lease.spec!.renewTime!).getTime();
    await waitFor(
      async () => new Date((await coordination.readNamespacedLease({ name: agent.nodeName, namespace: 'kube-node-lease' })).spec!.renewTime!).getTime() > first,
      { timeoutMs: 20_000, what: 'the Lease renewed' },
    );
  });

  it('runs a pod bound to the node: Running, a reachable pod IP, env from a Secret, logs', { timeout: 120_000 }, async () => {
    await core.createNamespacedSecret({ namespace, body: { metadata: { name: 'greeting' }, stringData: { greeting: 'from-a-secret' } } });
    await core.createNamespacedPod({ namespace, body: { metadata: { name: 'direct' }, spec: { ...podSpec('greeting'), nodeName: agent.nodeName } } });
    const pod = await running('direct');
    assert.match(pod.status!.podIP!, /^\d+\.\d+\.\d+\.\d+$/);
    assert.deepEqual(pod.status!.podIPs?.map((p) => p.ip), [pod.status!.podIP]);
    const status = pod.status!.containerStatuses![0]!;
    assert.equal(status.ready, true);
    assert.match(status.containerID!, /^podman:\/\/[0-9a-f]{64}$/);
    assert.ok(status.state?.running?.startedAt);
    assert.equal(await get(`http://${pod.status!.podIP}:8080/`), 'greeting=from-a-secret\n');
    const lines: string[] = [];
    for await (const line of agent.logs(namespace, 'direct')) lines.push(line);
    assert.ok(lines.some((l) => l.includes('"msg":"ready"')), lines.join('\n'));
    await deletePod('direct');
    assert.deepEqual(await agentContainers(), []);
  });

  it('runs a pod without nodeName once the real scheduler binds it to the node', { timeout: 120_000 }, async () => {
    await core.createNamespacedPod({ namespace, body: { metadata: { name: 'scheduled' }, spec: podSpec('greeting') } });
    const pod = await running('scheduled');
    assert.equal(pod.spec!.nodeName, agent.nodeName);
    assert.equal(await get(`http://${pod.status!.podIP}:8080/`), 'greeting=from-a-secret\n');
    await deletePod('scheduled');
  });

  it('runs a Deployment of 2 whose Service EndpointSlice lists both ready pod IPs; deleting it removes the containers', { timeout: 180_000 }, async () => {
    const labels = { app: 'hello' };
    await core.createNamespacedService({
      namespace,
      body: { metadata: { name: 'hello' }, spec: { selector: labels, ports: [{ name: 'http', port: 80, targetPort: 'http' }] } },
    });
    await apps.createNamespacedDeployment({
      namespace,
      body: {
        metadata: { name: 'hello' },
        spec: { replicas: 2, selector: { matchLabels: labels }, template: { metadata: { labels }, spec: podSpec('greeting') } },
      },
    });
    const ips = await waitFor(
      async () => {
        const pods = (await core.listNamespacedPod({ namespace, labelSelector: 'app=hello' })).items;
        const ready = pods.filter((p) => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
        return ready.length === 2 ? ready.map((p) => p.status!.podIP!).sort() : undefined;
      },
      { timeoutMs: waitMs, what: '2 ready pods of the Deployment' },
    );
    assert.notEqual(ips[0], ips[1]);
    const sliceIPs = await waitFor(
      async () => {
        const slices = (await discovery.listNamespacedEndpointSlice({ namespace, labelSelector: 'kubernetes.io/service-name=hello' })).items;
        const endpoints = slices.flatMap((s) => s.endpoints ?? []);
        const ready = endpoints.filter((e) => e.conditions?.ready).flatMap((e) => e.addresses).sort();
        return ready.length === 2 ? { ready, port: slices[0]!.ports?.[0]?.port } : undefined;
      },
      { timeoutMs: waitMs, what: 'the EndpointSlice listing 2 ready endpoints' },
    );
    assert.deepEqual(sliceIPs.ready, ips);
    assert.equal(sliceIPs.port, 8080);
    for (const ip of sliceIPs.ready) assert.equal(await get(`http://${ip}:${sliceIPs.port}/`), 'greeting=from-a-secret\n');
    assert.equal((await agentContainers()).length, 2);

    await apps.deleteNamespacedDeployment({ name: 'hello', namespace, propagationPolicy: 'Foreground' });
    await waitFor(async () => (await core.listNamespacedPod({ namespace, labelSelector: 'app=hello' })).items.length === 0, {
      timeoutMs: waitMs,
      what: 'the Deployment pods deleted',
    });
    assert.deepEqual(await agentContainers(), []);
  });
});
