// The podman node agent under a real control plane: the node registers and stays healthy, pods bound
// to it (directly, by the real scheduler, by a real Deployment) run as podman containers reachable
// at their pod IPs, the real EndpointSlice controller lists them once their readiness probe passes,
// and deleting them removes the containers. Pods reach and authenticate to the apiserver as
// in-cluster clients do (KUBERNETES_SERVICE_HOST/PORT, the service-account volume), with real RBAC,
// and mount config map, secret, downward API and emptyDir volumes. Both suites share one control
// plane, each with an agent of its own, one after the other: the only node while it runs.

import assert from 'node:assert/strict';
import { readdir, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import type { AppsV1Api, CoordinationV1Api, CoreV1Api, DiscoveryV1Api, V1Pod, V1PodSpec } from '@kubernetes/client-node';
import { RegistryClient } from '@kubefn/builder';
import { startRegistry, type TestRegistry } from '@kubefn/builder/testing';
import { Podman } from '@kubefn/platform';
import { waitFor } from '@kubefn/platform/testing';
import { startTestCluster, startTestNode, type TestCluster } from '../support/cluster.js';
import type { ControlPlane } from '../support/control-plane.js';
import { nodeAgentLabel, startNodeAgent, type NodeAgent } from '../support/node-agent.js';
import { buildAndPush, fixtureImages, fixturesDir, podmanTestOptions, pushTestBase, type FixtureImages } from '../support/podman.js';

const namespace = 'default';
const waitMs = 60_000;

let shared: TestCluster | undefined;
const sharedCluster = (): TestCluster => {
  if (!shared) throw new Error('the control plane did not start (see the failure of the before hook)');
  return shared;
};

// A cold machine builds the Kubernetes binaries first (many minutes on 2 cores).
before(async () => {
  shared = await startTestCluster({ functionCrd: false, onProgress: (line) => console.log(`# ${line}`) });
}, { timeout: 3_600_000 });

after(async () => {
  await shared?.close();
});

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
    cp = sharedCluster().cp;
    await buildImage;
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(cp.kubeconfig);
    core = kc.makeApiClient(k8s.CoreV1Api);
    apps = kc.makeApiClient(k8s.AppsV1Api);
    discovery = kc.makeApiClient(k8s.DiscoveryV1Api);
    coordination = kc.makeApiClient(k8s.CoordinationV1Api);
    agent = await startNodeAgent({
      kubeconfig: cp.kubeconfig,
      apiserver: { host: cp.podHost, port: cp.port },
      nodeName: `node-${process.pid}`,
      podman: options,
      onLog: log,
    });
    // Pods need the namespace's default ServiceAccount, which the controller-manager creates.
    await waitFor(() => core.readNamespacedServiceAccount({ name: 'default', namespace }), { timeoutMs: waitMs, what: 'the default ServiceAccount' });
  });

  after(async () => {
    await agent?.close();
    await registry?.close();
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

/**
 * What the in-cluster client pod prints, one JSON line: the service-account files and the volumes
 * it read, and the status of listing pods (its Role allows it) and secrets (it does not).
 */
const inClusterScript = String.raw`
const fs = require('node:fs');
const https = require('node:https');
const sa = '/var/run/secrets/kubernetes.io/serviceaccount';
const token = fs.readFileSync(sa + '/token', 'utf8');
const ca = fs.readFileSync(sa + '/ca.crt');
const ns = fs.readFileSync(sa + '/namespace', 'utf8');
const claims = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString());
const greeting = fs.readFileSync('/etc/config/greeting', 'utf8');
const labels = fs.readFileSync('/etc/info/labels', 'utf8');
const password = fs.readFileSync('/etc/info/password', 'utf8');
fs.writeFileSync('/scratch/greeting', greeting.toUpperCase());
const scratch = fs.readFileSync('/scratch/greeting', 'utf8');
const get = (p) => new Promise((resolve, reject) => {
  const options = { host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT, path: p, ca, headers: { authorization: 'Bearer ' + token } };
  https.get(options, (res) => {
    let body = '';
    res.on('data', (d) => (body += d));
    res.on('end', () => resolve({ status: res.statusCode, body }));
  }).on('error', reject);
});
(async () => {
  const pods = await get('/api/v1/namespaces/' + ns + '/pods');
  const secrets = await get('/api/v1/namespaces/' + ns + '/secrets');
  console.log('RESULT ' + JSON.stringify({
    host: process.env.KUBERNETES_SERVICE_HOST, ns, uid: process.getuid(), boundPod: claims['kubernetes.io'] && claims['kubernetes.io'].pod && claims['kubernetes.io'].pod.name,
    greeting, labels, password, scratch,
    pods: pods.status, podNames: pods.status === 200 ? JSON.parse(pods.body).items.map((p) => p.metadata.name) : pods.body,
    secrets: secrets.status,
  }));
})().catch((err) => {
  console.log('ERROR ' + err.message);
  process.exit(1);
});
`;

describe('podman node agent: in-cluster API access and volumes', () => {
  const namespace = 'node-agent-in-cluster';
  let cluster: TestCluster;
  let images: FixtureImages;
  let image: string;
  let core: CoreV1Api;

  before(async () => {
    const building = fixtureImages().then(async (i) => {
      images = i;
      image = await i.image('hello');
    });
    // The shared control plane with this suite's agent as its node (the suite closes the node only).
    const node = await startTestNode(sharedCluster().cp, 'agent');
    cluster = { ...sharedCluster(), node };
    await cluster.createNamespace(namespace);
    await building;
    core = cluster.kc.makeApiClient(k8s.CoreV1Api);
  });

  after(async () => {
    await cluster?.node?.close();
    await images?.registry.close();
  });

  function clientPod(name: string, configMap: string): V1Pod {
    return {
      metadata: { name, labels: { app: 'in-cluster', tier: 'test' } },
      spec: {
        serviceAccountName: 'reader',
        restartPolicy: 'Never',
        terminationGracePeriodSeconds: 1,
        volumes: [
          { name: 'config', configMap: { name: configMap } },
          {
            name: 'info',
            projected: {
              sources: [
                { downwardAPI: { items: [{ path: 'labels', fieldRef: { fieldPath: 'metadata.labels' } }] } },
                { secret: { name: 'credentials', items: [{ key: 'password', path: 'password' }] } },
              ],
            },
          },
          { name: 'scratch', emptyDir: {} },
        ],
        containers: [{
          name: 'client',
          image,
          command: ['node', '-e', inClusterScript],
          volumeMounts: [
            { name: 'config', mountPath: '/etc/config' },
            { name: 'info', mountPath: '/etc/info' },
            { name: 'scratch', mountPath: '/scratch' },
          ],
        }],
      },
    };
  }

  async function finished(name: string): Promise<V1Pod> {
    return waitFor(
      async () => {
        const pod = await core.readNamespacedPod({ name, namespace });
        return pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed' ? pod : undefined;
      },
      { timeoutMs: 120_000, what: `pod ${name} finished` },
    );
  }

  async function result(name: string): Promise<Record<string, unknown>> {
    const lines: string[] = [];
    for await (const line of cluster.node!.agent!.logs(namespace, name)) lines.push(line);
    const line = lines.find((l) => l.startsWith('RESULT '));
    assert.ok(line, lines.join('\n'));
    return JSON.parse(line.slice('RESULT '.length)) as Record<string, unknown>;
  }

  /** The pod's volume directories on the host, under the agent's temp directory. */
  async function podDirs(uid: string): Promise<string[]> {
    const prefix = `kubefn-node-${cluster.node!.nodeName}-`;
    const agentDirs = (await readdir(tmpdir())).filter((d) => d.startsWith(prefix)).map((d) => path.join(tmpdir(), d, 'pods', uid));
    const exists = await Promise.all(agentDirs.map((d) => stat(d).then(() => true, () => false)));
    return agentDirs.filter((_, i) => exists[i]);
  }

  it('a pod lists pods with its ServiceAccount token over the in-cluster address, is refused secrets by RBAC, and reads and writes its volumes', { timeout: 300_000 }, async () => {
    const rbac = cluster.kc.makeApiClient(k8s.RbacAuthorizationV1Api);
    await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name: 'reader' } } });
    await rbac.createNamespacedRole({
      namespace,
      body: { metadata: { name: 'pod-reader' }, rules: [{ apiGroups: [''], resources: ['pods'], verbs: ['get', 'list'] }] },
    });
    await rbac.createNamespacedRoleBinding({
      namespace,
      body: {
        metadata: { name: 'reader-reads-pods' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'pod-reader' },
        subjects: [{ kind: 'ServiceAccount', name: 'reader', namespace }],
      },
    });
    await core.createNamespacedConfigMap({ namespace, body: { metadata: { name: 'settings' }, data: { greeting: 'hello from a config map' } } });
    await core.createNamespacedSecret({ namespace, body: { metadata: { name: 'credentials' }, stringData: { password: 's3cret', unused: 'x' } } });

    const created = await core.createNamespacedPod({ namespace, body: clientPod('in-cluster', 'settings') });
    // The ServiceAccount admission plugin added the service-account volume the agent now mounts.
    assert.ok(created.spec!.volumes!.some((v) => v.name.startsWith('kube-api-access-') && v.projected));
    const pod = await finished('in-cluster');
    const out = await result('in-cluster');
    assert.equal(pod.status!.phase, 'Succeeded', JSON.stringify(out));
    assert.equal(pod.spec!.nodeName, cluster.node!.nodeName);
    assert.equal(out.host, cluster.cp.podHost);
    assert.equal(out.ns, namespace);
    assert.equal(out.uid, 65534);
    assert.equal(out.boundPod, 'in-cluster');
    assert.equal(out.pods, 200);
    assert.ok((out.podNames as string[]).includes('in-cluster'), JSON.stringify(out.podNames));
    assert.equal(out.secrets, 403);
    assert.equal(out.greeting, 'hello from a config map');
    assert.equal(out.labels, 'app="in-cluster"\ntier="test"');
    assert.equal(out.password, 's3cret');
    assert.equal(out.scratch, 'HELLO FROM A CONFIG MAP');
    assert.equal((await podDirs(pod.metadata!.uid!)).length, 1);

    await core.deleteNamespacedPod({ name: 'in-cluster', namespace });
    await waitFor(async () => (await core.listNamespacedPod({ namespace, fieldSelector: 'metadata.name=in-cluster' })).items.length === 0, {
      timeoutMs: 60_000,
      what: 'pod in-cluster deleted',
    });
    await waitFor(async () => (await podDirs(pod.metadata!.uid!)).length === 0, { timeoutMs: 10_000, what: "the pod's volume directory removed" });
  });

  it('a pod whose config map is missing waits with CreateContainerConfigError and runs once it exists', { timeout: 300_000 }, async () => {
    await core.createNamespacedPod({ namespace, body: clientPod('late-config', 'late-settings') });
    const waiting = await waitFor(
      async () => {
        const state = (await core.readNamespacedPod({ name: 'late-config', namespace })).status?.containerStatuses?.[0]?.state;
        return state?.waiting?.reason === 'CreateContainerConfigError' ? state.waiting : undefined;
      },
      { timeoutMs: 60_000, what: 'pod late-config waiting for its config map' },
    );
    assert.match(waiting.message ?? '', /volume "config": configmap "late-settings" not found/);
    await core.createNamespacedConfigMap({ namespace, body: { metadata: { name: 'late-settings' }, data: { greeting: 'late but there' } } });
    const pod = await finished('late-config');
    const out = await result('late-config');
    assert.equal(pod.status!.phase, 'Succeeded', JSON.stringify(out));
    assert.equal(out.greeting, 'late but there');
    assert.equal(out.pods, 200);
    await core.deleteNamespacedPod({ name: 'late-config', namespace });
  });
});
