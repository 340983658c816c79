import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { silentProgress } from './output.js';
import { defaultDeployDir, install, platformImageName, platformNamespaceOf, renderKustomization, replaceImage } from './install.js';

describe('renderKustomization of deploy/', () => {
  it('names a namespace on every namespaced object: the platform in kubefn, what governs functions in kubefn-fn', async () => {
    const rendered = await renderKustomization(defaultDeployDir);
    const { namespace, objects } = rendered;
    assert.equal(namespace, undefined, 'the kustomization sets none');
    assert.equal(platformNamespaceOf(rendered), 'kubefn');
    const kinds = new Set(objects.map((o) => o.kind));
    for (const kind of ['Namespace', 'CustomResourceDefinition', 'ServiceAccount', 'Role', 'RoleBinding', 'ConfigMap', 'Deployment', 'StatefulSet', 'Service', 'NetworkPolicy']) {
      assert.ok(kinds.has(kind), `deploy/ has a ${kind}`);
    }
    const inFunctions: string[] = [];
    for (const o of objects) {
      if (o.kind === 'Namespace' || o.kind === 'CustomResourceDefinition') assert.equal(o.metadata?.namespace, undefined, `${o.kind} ${o.metadata?.name}`);
      else if (o.metadata?.namespace === 'kubefn-fn') inFunctions.push(`${o.kind}/${o.metadata.name}`);
      else assert.equal(o.metadata?.namespace, 'kubefn', `${o.kind} ${o.metadata?.name}`);
    }
    assert.deepEqual(inFunctions.sort(), ['Deployment/kubefn-pool', 'NetworkPolicy/kubefn-functions', 'Role/kubefn-autoscaler', 'Role/kubefn-gateway', 'RoleBinding/kubefn-autoscaler', 'RoleBinding/kubefn-gateway']);
    assert.deepEqual(objects.filter((o) => o.kind === 'Namespace').map((o) => o.metadata!.name), ['kubefn', 'kubefn-fn']);
    const config = objects.find((o) => o.kind === 'ConfigMap' && o.metadata?.name === 'kubefn-config') as { data?: Record<string, string> } | undefined;
    assert.equal(config?.data?.['function-namespace'], 'kubefn-fn', 'the components are told the namespace the Roles are in');
    const gateway = objects.find((o) => o.kind === 'Deployment' && o.metadata?.name === 'kubefn-gateway') as { spec: { replicas: number } } | undefined;
    assert.equal(gateway?.spec.replicas, 2);
  });

  it('replaces the platform image with the one given, by digest', async () => {
    const digest = `sha256:${'a'.repeat(64)}`;
    const { objects } = await renderKustomization(defaultDeployDir, [{ name: platformImageName, newName: '127.0.0.1:5000/kubefn/platform', digest }]);
    const images = objects.flatMap((o) => ((o.spec?.template as { spec?: { containers?: { image: string }[] } })?.spec?.containers ?? []).map((c) => c.image));
    assert.deepEqual(images.filter((i) => i.includes('platform')).length, 3);
    for (const i of images.filter((x) => x.includes('platform'))) assert.equal(i, `127.0.0.1:5000/kubefn/platform@${digest}`);
    assert.ok(images.includes('docker.io/library/nats:2.10-alpine'));
  });

  it('refuses a kustomization with features it does not render, naming them', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'kubefn-kust-'));
    await writeFile(path.join(dir, 'kustomization.yaml'), 'resources: []\npatchesStrategicMerge: []\nconfigMapGenerator: []\n');
    await assert.rejects(renderKustomization(dir), (err: Error & { hint?: string }) => {
      assert.match(err.message, /uses patchesStrategicMerge, configMapGenerator/);
      assert.match(err.hint ?? '', /kubectl apply -k/);
      return true;
    });
    await assert.rejects(renderKustomization(path.join(dir, 'missing')), /no kustomization.yaml/);
  });
});

describe('NATS in deploy/ and deploy/nats-ephemeral/', () => {
  type StatefulSet = {
    spec: {
      volumeClaimTemplates?: { metadata: { name: string }; spec: { accessModes: string[]; storageClassName?: string; resources: { requests: { storage: string } } } }[];
      template: { spec: { securityContext: Record<string, unknown>; volumes: { name: string; emptyDir?: unknown; configMap?: unknown }[]; containers: { image: string }[] } };
    };
  };
  const nats = (objects: { kind?: string; metadata?: { name?: string } }[]) => objects.find((o) => o.kind === 'StatefulSet' && o.metadata?.name === 'kubefn-nats') as unknown as StatefulSet;
  const ephemeralDir = path.join(defaultDeployDir, 'nats-ephemeral');

  it('deploy/ keeps the JetStream store on a 1Gi claim of the default StorageClass, writable by the server', async () => {
    const { objects } = await renderKustomization(defaultDeployDir);
    const set = nats(objects);
    const [claim] = set.spec.volumeClaimTemplates ?? [];
    assert.equal(claim?.metadata.name, 'data');
    assert.deepEqual(claim?.spec.accessModes, ['ReadWriteOnce']);
    assert.equal(claim?.spec.resources.requests.storage, '1Gi');
    assert.equal(claim?.spec.storageClassName, undefined, "the cluster's default class");
    assert.ok(!set.spec.template.spec.volumes.some((v) => v.name === 'data'), 'no pod volume shadows the claim');
    assert.equal(set.spec.template.spec.securityContext.fsGroup, 65534);
    const config = objects.find((o) => o.kind === 'ConfigMap' && o.metadata?.name === 'kubefn-nats') as { data: Record<string, string> } | undefined;
    assert.match(config?.data['nats.conf'] ?? '', /jetstream \{[^}]*store_dir: "\/data"/s);
  });

  it('the nats-ephemeral overlay renders deploy/ with an emptyDir store instead, in the same namespace, with the images given', async () => {
    const digest = `sha256:${'b'.repeat(64)}`;
    const overrides = [{ name: platformImageName, newName: 'r:5000/kubefn/platform', digest }];
    const base = await renderKustomization(defaultDeployDir, overrides);
    const overlay = await renderKustomization(ephemeralDir, overrides);
    assert.equal(platformNamespaceOf(overlay), 'kubefn');
    const key = (o: { kind?: string; metadata?: { name?: string; namespace?: string } }) => `${o.kind}/${o.metadata?.namespace ?? ''}/${o.metadata?.name}`;
    assert.deepEqual(overlay.objects.map(key), base.objects.map(key));
    for (const o of overlay.objects) {
      if (o.kind === 'StatefulSet') continue;
      assert.deepEqual(o, base.objects.find((b) => key(b) === key(o)), key(o));
    }
    const set = nats(overlay.objects);
    assert.equal(set.spec.volumeClaimTemplates, undefined);
    assert.deepEqual(set.spec.template.spec.volumes.find((v) => v.name === 'data'), { name: 'data', emptyDir: { sizeLimit: '1Gi' } });
    const gateway = overlay.objects.find((o) => o.kind === 'Deployment' && o.metadata?.name === 'kubefn-gateway') as unknown as StatefulSet;
    assert.equal(gateway.spec.template.spec.containers[0]?.image, `r:5000/kubefn/platform@${digest}`);
  });

  it('refuses patches it does not render, and names the object a patch does not apply to', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'kubefn-kust-patch-'));
    await writeFile(path.join(dir, 'cm.yaml'), 'apiVersion: v1\nkind: ConfigMap\nmetadata: { name: c }\ndata: { a: "1" }\n');
    const kustomization = (patch: unknown) => writeFile(path.join(dir, 'kustomization.yaml'), `resources: [cm.yaml]\npatches: ${JSON.stringify([patch])}\n`);
    await kustomization({ target: { kind: 'ConfigMap', labelSelector: 'a=b' }, patch: '[]' });
    await assert.rejects(renderKustomization(dir), /selecting by labelSelector, which fn install does not render/);
    await kustomization({ target: { kind: 'ConfigMap' }, patch: 'data: { a: "2" }' });
    await assert.rejects(renderKustomization(dir), /strategic-merge patch/);
    await kustomization({ target: { kind: 'ConfigMap', name: 'c' }, patch: '[{op: remove, path: /data/missing}]' });
    await assert.rejects(renderKustomization(dir), /patches\[0\] does not apply to ConfigMap c/);
    await kustomization({ target: { version: 'v1', kind: 'ConfigMap', name: 'c' }, patch: '[{op: replace, path: /data/a, value: "2"}]' });
    const { objects } = await renderKustomization(dir);
    assert.deepEqual((objects[0] as { data: unknown }).data, { a: '2' });
  });
});

describe('replaceImage', () => {
  it('matches the name before the tag or digest, as kustomize does', () => {
    assert.equal(replaceImage('nats', [{ name: 'nats', newTag: '2.10' }]), 'nats:2.10');
    assert.equal(replaceImage('nats:2.9', [{ name: 'nats', newName: 'r:5000/nats' }]), 'r:5000/nats:2.9');
    assert.equal(replaceImage('host:5000/nats:1', [{ name: 'host:5000/nats', newTag: '2' }]), 'host:5000/nats:2');
    assert.equal(replaceImage('natsx', [{ name: 'nats', newTag: '2' }]), 'natsx');
    assert.equal(replaceImage('a@sha256:1', [{ name: 'a', newTag: 't' }]), 'a:t');
  });
});

describe('install', () => {
  it('says there is no cluster before building or pushing anything', async () => {
    const saved = { HOME: process.env.HOME, KUBECONFIG: process.env.KUBECONFIG, KUBERNETES_SERVICE_HOST: process.env.KUBERNETES_SERVICE_HOST };
    process.env.HOME = await mkdtemp(path.join(tmpdir(), 'kubefn-nohome-'));
    delete process.env.KUBECONFIG;
    delete process.env.KUBERNETES_SERVICE_HOST;
    try {
      await assert.rejects(
        install({ from: defaultDeployDir, registry: '127.0.0.1:1', dryRun: false, timeoutMs: 1000, home: process.env.HOME }, silentProgress, () => {}),
        (err: Error & { hint?: string }) => /no Kubernetes cluster configured/.test(err.message) && /KUBECONFIG/.test(err.hint ?? ''),
      );
    } finally {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });
});
