import assert from 'node:assert/strict';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { stubKubeConfig } from '../testing/stub-kubeconfig.js';
import { apiRequestKind, loadKubernetesClient, withApiTimeout } from './client.js';

describe('withApiTimeout', () => {
  it('fails an API call the server never answers, and leaves answered ones alone', async () => {
    const hung: ServerResponse[] = [];
    const server = createServer((req, res) => {
      if (req.url?.includes('/configmaps/slow')) hung.push(res);
      else res.setHeader('content-type', 'application/json').end(JSON.stringify({ kind: 'ConfigMap', apiVersion: 'v1', metadata: { name: 'fast' }, data: { a: '1' } }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const k8s = await loadKubernetesClient();
      const kc = await stubKubeConfig(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
      // Twice: the second changes nothing.
      const core = withApiTimeout(withApiTimeout(kc, 300), 60_000).makeApiClient(k8s.CoreV1Api);
      assert.deepEqual((await core.readNamespacedConfigMap({ name: 'fast', namespace: 'ns' })).data, { a: '1' });
      const started = Date.now();
      await assert.rejects(core.readNamespacedConfigMap({ name: 'slow', namespace: 'ns' }), /abort/i);
      assert.ok(Date.now() - started < 10_000, 'gave up at its deadline, not the second wrap\'s');
      assert.equal(hung.length, 1);
    } finally {
      for (const res of hung) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe('apiRequestKind', () => {
  it('names a call by verb, resource and subresource, a list apart from one object', () => {
    assert.equal(apiRequestKind('patch', 'https://k:6443/apis/apps/v1/namespaces/fns/deployments/hello/scale'), 'PATCH deployments/scale');
    assert.equal(apiRequestKind('GET', 'https://k:6443/apis/coordination.k8s.io/v1/namespaces/kubefn/leases/kubefn-autoscaler'), 'GET leases/1');
    assert.equal(apiRequestKind('GET', 'https://k:6443/api/v1/namespaces/fns/pods?labelSelector=x'), 'GET pods');
    assert.equal(apiRequestKind('GET', 'https://k:6443/apis/kubefn.dev/v1alpha1/functions'), 'GET functions');
  });
});
