import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { silentProgress } from './output.js';
import { defaultDeployDir, install, platformImageName, renderKustomization, replaceImage } from './install.js';

describe('renderKustomization of deploy/', () => {
  it('puts every namespaced object in the kustomization namespace and leaves cluster objects alone', async () => {
    const { namespace, objects } = await renderKustomization(defaultDeployDir);
    assert.equal(namespace, 'kubefn');
    const kinds = new Set(objects.map((o) => o.kind));
    for (const kind of ['Namespace', 'CustomResourceDefinition', 'ServiceAccount', 'Role', 'RoleBinding', 'ConfigMap', 'Deployment', 'StatefulSet', 'Service']) {
      assert.ok(kinds.has(kind), `deploy/ has a ${kind}`);
    }
    for (const o of objects) {
      if (o.kind === 'Namespace' || o.kind === 'CustomResourceDefinition') assert.equal(o.metadata?.namespace, undefined, `${o.kind} ${o.metadata?.name}`);
      else assert.equal(o.metadata?.namespace, 'kubefn', `${o.kind} ${o.metadata?.name}`);
    }
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
    await writeFile(path.join(dir, 'kustomization.yaml'), 'resources: []\npatches: []\nconfigMapGenerator: []\n');
    await assert.rejects(renderKustomization(dir), (err: Error & { hint?: string }) => {
      assert.match(err.message, /uses patches, configMapGenerator/);
      assert.match(err.hint ?? '', /kubectl apply -k/);
      return true;
    });
    await assert.rejects(renderKustomization(path.join(dir, 'missing')), /no kustomization.yaml/);
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
