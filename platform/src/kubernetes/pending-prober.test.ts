import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { waitFor } from '../testing/wait-for.js';
import { PendingPodProber } from './pending-prober.js';

describe('pending-pod prober', () => {
  let server: Server;
  let adminUrl: string;
  let ready = false;
  let probes = 0;

  before(async () => {
    server = createServer((req, res) => {
      probes++;
      res.writeHead(req.url === '/readyz' && ready ? 200 : 503).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    adminUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('counts a pending pod ready once its own /readyz answers, and tells its listener', async () => {
    const prober = new PendingPodProber({ intervalMs: 10, probedReadyMs: 60_000 });
    const changed: string[] = [];
    prober.subscribe((name) => changed.push(name));
    const pod = { id: 'hello-abc', url: 'http://127.0.0.1:1', adminUrl };
    try {
      assert.deepEqual(prober.track('hello', [pod]), []);
      await waitFor(() => probes >= 2, { timeoutMs: 5000, what: 'probes of a pod that is not ready' });
      assert.deepEqual(prober.track('hello', [pod]), [], 'not ready while /readyz answers 503');
      ready = true;
      await waitFor(() => changed.includes('hello'), { timeoutMs: 5000, what: 'the listener told of the ready pod' });
      assert.deepEqual(prober.track('hello', [pod]), [pod]);
      // Gone from the pending list (ready per its slice, or deleted): no longer counted here.
      assert.deepEqual(prober.track('hello', []), []);
    } finally {
      prober.close();
    }
  });

  it('stops counting on its probe after probedReadyMs when the slice does not confirm it', async () => {
    ready = true;
    const prober = new PendingPodProber({ intervalMs: 10, probedReadyMs: 200 });
    const changes: number[] = [];
    prober.subscribe(() => changes.push(Date.now()));
    const pod = { id: 'hello-def', url: 'http://127.0.0.1:1', adminUrl };
    try {
      prober.track('hello', [pod]);
      await waitFor(() => changes.length >= 1, { timeoutMs: 5000, what: 'the probe answered' });
      await waitFor(() => changes.length >= 2, { timeoutMs: 5000, what: 'the probed readiness expired' });
      assert.deepEqual(prober.track('hello', [pod]), []);
    } finally {
      prober.close();
    }
  });
});
