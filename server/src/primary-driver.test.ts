import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import Fastify from 'fastify';
import { kubefnErrorHandler } from '@kubefn/gateway';
import { isKubefnError, KubefnError } from '@kubefn/platform';
import { PrimaryDriver } from './primary-driver.js';
import type { ToPrimary } from './worker-protocol.js';

describe('PrimaryDriver', () => {
  it('watches a function from the first subscriber until the last leaves, and takes pushes', () => {
    const sent: ToPrimary[] = [];
    const driver = new PrimaryDriver({ kind: 'process', internal: 'http://127.0.0.1:1', token: 't', send: (m) => sent.push(m) });
    const set = driver.endpoints('hello');
    assert.equal(driver.endpoints('hello'), set, 'one set per function');
    const seen: number[] = [];
    const off1 = set.subscribe((eps) => seen.push(eps.length));
    const off2 = set.subscribe(() => {});
    driver.pushed('hello', [{ id: 'hello-1', url: 'http://127.0.0.1:2', adminUrl: 'http://127.0.0.1:3' }]);
    assert.deepEqual(seen, [1]);
    assert.equal(set.current().length, 1);
    off1();
    assert.deepEqual(sent, [{ kind: 'watch', name: 'hello' }]);
    off2();
    assert.deepEqual(sent, [{ kind: 'watch', name: 'hello' }, { kind: 'unwatch', name: 'hello' }]);
    assert.deepEqual(driver.watched, []);
    driver.pushed('hello', []); // after unwatch: ignored
    assert.notEqual(driver.endpoints('hello'), set, 'a later router watches anew');
    assert.deepEqual(sent.at(-1), { kind: 'watch', name: 'hello' });
  });

  it('gets a status from the primary, its errors by code, and refuses what workers never do', async () => {
    const app = Fastify();
    app.setErrorHandler(kubefnErrorHandler);
    app.get<{ Params: { name: string } }>('/internal/functions/:name', async (request) => {
      if (request.headers.authorization !== 'Bearer t') throw new KubefnError('UNAUTHORIZED', 'no');
      if (request.params.name !== 'hello') throw new KubefnError('NOT_FOUND', `function "${request.params.name}" not found`);
      return { spec: { name: 'hello' }, replicas: 1, readyReplicas: 1 };
    });
    const internal = await app.listen({ port: 0, host: '127.0.0.1' });
    try {
      const driver = new PrimaryDriver({ kind: 'process', internal, token: 't', send: () => {} });
      assert.equal((await driver.get('hello')).spec.name, 'hello');
      await assert.rejects(driver.get('nope'), (err) => isKubefnError(err, 'NOT_FOUND'));
      await assert.rejects(driver.deploy(), (err) => isKubefnError(err, 'NOT_SUPPORTED'));
      const wrong = new PrimaryDriver({ kind: 'process', internal, token: 'x', send: () => {} });
      await assert.rejects(wrong.get('hello'), (err) => isKubefnError(err, 'UNAUTHORIZED'));
    } finally {
      await app.close();
    }
  });
});
