import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { stubKubeConfig } from '../testing/stub-kubeconfig.js';
import { loadKubernetesClient } from './client.js';
import { withModelAliases } from './objects.js';

describe('withModelAliases', () => {
  it("keeps what client-node's serializer would drop from an applied manifest: a NetworkPolicy's `from`, a CRD schema's `default` and `enum`", async () => {
    const bodies: Record<string, unknown>[] = [];
    const server = createServer((req, res) => {
      const json = (body: unknown) => res.setHeader('content-type', 'application/json').end(JSON.stringify(body));
      // Discovery, for the resource's plural; then the apply itself, answered with what it sent.
      if (req.url === '/apis/networking.k8s.io/v1') return json({ kind: 'APIResourceList', groupVersion: 'networking.k8s.io/v1', resources: [{ name: 'networkpolicies', kind: 'NetworkPolicy', namespaced: true, verbs: ['patch'] }] });
      if (req.url === '/apis/apiextensions.k8s.io/v1') return json({ kind: 'APIResourceList', groupVersion: 'apiextensions.k8s.io/v1', resources: [{ name: 'customresourcedefinitions', kind: 'CustomResourceDefinition', namespaced: false, verbs: ['patch'] }] });
      const parts: Buffer[] = [];
      req.on('data', (c: Buffer) => parts.push(c));
      req.on('end', () => {
        const body = JSON.parse(Buffer.concat(parts).toString('utf8')) as Record<string, unknown>;
        bodies.push(body);
        json(body);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const k8s = await loadKubernetesClient();
      const kc = await stubKubeConfig(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
      const api = k8s.KubernetesObjectApi.makeApiClient(kc);
      const policy = () => ({
        apiVersion: 'networking.k8s.io/v1',
        kind: 'NetworkPolicy',
        metadata: { name: 'p', namespace: 'n' },
        spec: { podSelector: {}, policyTypes: ['Ingress'], ingress: [{ from: [{ podSelector: { matchLabels: { app: 'gateway' } } }] }] },
      });
      const crd = () => ({
        apiVersion: 'apiextensions.k8s.io/v1',
        kind: 'CustomResourceDefinition',
        metadata: { name: 'things.example.dev' },
        spec: {
          group: 'example.dev',
          names: { kind: 'Thing', plural: 'things' },
          scope: 'Namespaced',
          versions: [{ name: 'v1', served: true, storage: true, schema: { openAPIV3Schema: { type: 'object', properties: { mode: { type: 'string', default: 'a', enum: ['a', 'b'] } } } } }],
        },
      });
      const sentRule = () => (bodies.at(-1) as { spec: { ingress: Record<string, unknown>[] } }).spec.ingress[0];
      const sentMode = () => (bodies.at(-1) as { spec: { versions: { schema: { openAPIV3Schema: { properties: { mode: Record<string, unknown> } } } }[] } }).spec.versions[0]!.schema.openAPIV3Schema.properties.mode;
      // What the serializer does on its own: the rule and the schema lose those fields.
      await api.patch(policy(), undefined, undefined, 'test', true, 'application/apply-patch+yaml');
      assert.deepEqual(sentRule(), {});
      await api.patch(crd(), undefined, undefined, 'test', true, 'application/apply-patch+yaml');
      assert.deepEqual(sentMode(), { type: 'string' });
      // With the aliases, all of it goes out, as the manifest says.
      await api.patch(withModelAliases(policy()), undefined, undefined, 'test', true, 'application/apply-patch+yaml');
      assert.deepEqual(sentRule(), { from: [{ podSelector: { matchLabels: { app: 'gateway' } } }] });
      await api.patch(withModelAliases(crd()), undefined, undefined, 'test', true, 'application/apply-patch+yaml');
      assert.deepEqual(sentMode(), { type: 'string', default: 'a', enum: ['a', 'b'] });
      assert.deepEqual(Object.keys(withModelAliases(policy()).spec.ingress[0]!), ['from'], 'the aliases are not enumerable');
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
