import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import type { V1ConfigMap } from '@kubernetes/client-node';
import { waitFor } from '../testing/index.js';
import { loadKubernetesClient } from './client.js';
import { nextBackoffMs, watchedInformer, withJitter } from './informers.js';

describe('informer restarts', () => {
  it('back off from the first pause, doubling up to the cap', () => {
    const pauses: number[] = [];
    let ms = 0;
    for (let i = 0; i < 6; i++) pauses.push((ms = nextBackoffMs(ms, 500, 5000)));
    assert.deepEqual(pauses, [500, 1000, 2000, 4000, 5000, 5000]);
  });

  it('spread each pause over 80..120 %', () => {
    assert.deepEqual([withJitter(5000, () => 0), withJitter(5000, () => 0.5), withJitter(5000, () => 0.999999)], [4000, 5000, 6000]);
  });
});

describe('watchedInformer', () => {
  it('sends timeoutSeconds with every watch request, and makes the next when the server ends one', async () => {
    const watches: URLSearchParams[] = [];
    const server = createServer((req: IncomingMessage, res: ServerResponse) => {
      const url = new URL(req.url ?? '/', 'http://x');
      res.setHeader('content-type', 'application/json');
      if (url.searchParams.get('watch') === 'true') {
        watches.push(url.searchParams);
        // Ends the watch at once, as the server does when timeoutSeconds runs out.
        res.end();
        return;
      }
      res.end(JSON.stringify({ kind: 'ConfigMapList', apiVersion: 'v1', metadata: { resourceVersion: '7' }, items: [] }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const k8s = await loadKubernetesClient();
    const kc = new k8s.KubeConfig();
    const port = (server.address() as AddressInfo).port;
    kc.loadFromOptions({
      clusters: [{ name: 'c', server: `http://127.0.0.1:${port}`, skipTLSVerify: true }],
      users: [{ name: 'u', token: 't' }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
      currentContext: 'x',
    });
    const core = kc.makeApiClient(k8s.CoreV1Api);
    const informer = watchedInformer<V1ConfigMap>(k8s, kc, '/api/v1/namespaces/ns/configmaps', () => core.listNamespacedConfigMap({ namespace: 'ns' }), {
      timeoutSeconds: 42,
      labelSelector: 'a=b',
    });
    try {
      await informer.start();
      await waitFor(() => watches.length >= 2, { what: 'a second watch after the first ended', timeoutMs: 10_000 });
      for (const q of watches) assert.deepEqual([q.get('timeoutSeconds'), q.get('labelSelector')], ['42', 'a=b']);
      assert.equal(watches[0]!.get('resourceVersion'), '7', 'the watch goes on from the list');
    } finally {
      await informer.stop();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
