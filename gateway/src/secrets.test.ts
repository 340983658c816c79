// /system/secrets through inject(), with exactly what faas-cli sends by default: its namespace
// (openfaas-fn) on the list's query and in the bodies, Basic auth with the token as password.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { FileSecretStore, maxSecretBytes } from '@kubefn/platform';
import { createGateway, type Gateway } from './app.js';
import { MemoryDriver } from './testing/memory-driver.js';

const token = 'right-token';
const faasCliAuth = { authorization: `Basic ${Buffer.from(`admin:${token}`).toString('base64')}` };
const json = { 'content-type': 'application/json' };

class SecretsDriver extends MemoryDriver {
  constructor(readonly secrets: FileSecretStore) {
    super();
  }
}

describe('/system/secrets', () => {
  let dir: string;
  let store: FileSecretStore;
  let gateway: Gateway;
  const send = (method: string, url: string, body?: unknown, headers: Record<string, string> = faasCliAuth) =>
    gateway.app.inject({
      method: method as 'GET',
      url,
      headers: { ...headers, ...(body === undefined ? {} : json) },
      ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
    });
  const fails = async (method: string, url: string, body: unknown, status: number, code: string) => {
    const res = await send(method, url, body);
    assert.equal(res.statusCode, status, `${method} ${url}: ${res.body}`);
    const answer = res.json();
    assert.equal(answer.code, code);
    return answer as { message: string; hint?: string };
  };

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'kubefn-gw-secrets-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));
  beforeEach(async () => {
    store = new FileSecretStore(await mkdtemp(path.join(dir, 'home-')));
    gateway = createGateway({ driver: new SecretsDriver(store), token });
  });
  afterEach(() => gateway.close());

  it('lists what faas-cli asks for: GET /system/secrets?namespace=openfaas-fn, names only', async () => {
    let res = await send('GET', '/system/secrets?namespace=openfaas-fn');
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual(res.json(), []);
    await store.create('db-password', Buffer.from('hunter2'));
    await store.create('api-key', Buffer.from('k'));
    res = await send('GET', '/system/secrets?namespace=openfaas-fn');
    assert.deepEqual(res.json(), [
      { name: 'api-key', namespace: 'default' },
      { name: 'db-password', namespace: 'default' },
    ]);
    assert.doesNotMatch(res.body, /hunter2/);
    // Without a namespace, and with the platform's own, too.
    assert.equal((await send('GET', '/system/secrets')).json().length, 2);
    assert.equal((await send('GET', '/system/secrets?namespace=default')).json().length, 2);
  });

  it('creates from faas-cli\'s bodies: {name, namespace, value} and {name, namespace, rawValue}', async () => {
    let res = await send('POST', '/system/secrets', { name: 'db-password', namespace: 'openfaas-fn', value: 'hunter2' });
    assert.equal(res.statusCode, 201, res.body);
    res = await send('POST', '/system/secrets', { name: 'tls-key', namespace: 'openfaas-fn', rawValue: Buffer.from([0, 1, 2, 255]).toString('base64') });
    assert.equal(res.statusCode, 201, res.body);
    const values = await store.read(['db-password', 'tls-key']);
    assert.equal(values.get('db-password')?.toString(), 'hunter2');
    assert.deepEqual([...values.get('tls-key')!], [0, 1, 2, 255]);
  });

  it('answers 409 to a second create of one name, and keeps the first value', async () => {
    await send('POST', '/system/secrets', { name: 'db-password', namespace: 'openfaas-fn', value: 'first' });
    const body = await fails('POST', '/system/secrets', { name: 'db-password', namespace: 'openfaas-fn', value: 'second' }, 409, 'ALREADY_EXISTS');
    assert.match(body.message, /"db-password" already exists/);
    assert.equal((await store.read(['db-password'])).get('db-password')?.toString(), 'first');
  });

  it('updates with PUT, and answers 404 for a secret that does not exist', async () => {
    await store.create('db-password', Buffer.from('old'));
    const res = await send('PUT', '/system/secrets', { name: 'db-password', namespace: 'openfaas-fn', value: 'new' });
    assert.equal(res.statusCode, 200, res.body);
    assert.equal((await store.read(['db-password'])).get('db-password')?.toString(), 'new');
    const body = await fails('PUT', '/system/secrets', { name: 'nope', namespace: 'openfaas-fn', value: 'v' }, 404, 'NOT_FOUND');
    assert.match(body.message, /no secret named "nope"/);
    assert.deepEqual(await store.list(), ['db-password']);
  });

  it('deletes with faas-cli\'s DELETE body {name, namespace}; a second delete is 404', async () => {
    await store.create('db-password', Buffer.from('v'));
    const res = await send('DELETE', '/system/secrets', { name: 'db-password', namespace: 'openfaas-fn' });
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual(await store.list(), []);
    await fails('DELETE', '/system/secrets', { name: 'db-password', namespace: 'openfaas-fn' }, 404, 'NOT_FOUND');
  });

  it('refuses invalid names, empty and oversized values, and namespaces it does not serve', async () => {
    for (const name of ['DB_PASSWORD', 'a.b', '-x', '', 'x'.repeat(64)]) {
      const body = await fails('POST', '/system/secrets', { name, namespace: 'openfaas-fn', value: 'v' }, 400, 'INVALID_NAME');
      assert.match(body.message, /invalid secret name/);
    }
    await fails('DELETE', '/system/secrets', { name: 'Bad' }, 400, 'INVALID_NAME');
    const empty = await fails('POST', '/system/secrets', { name: 'empty', namespace: 'openfaas-fn' }, 400, 'BAD_REQUEST');
    assert.match(empty.message, /has no value/);
    const big = await fails('POST', '/system/secrets', { name: 'big', value: 'x'.repeat(maxSecretBytes + 1) }, 413, 'BODY_TOO_LARGE');
    assert.match(big.message, /over the 524288 byte limit/);
    await fails('POST', '/system/secrets', { name: 'x', namespace: 'other', value: 'v' }, 404, 'NOT_FOUND');
    await fails('GET', '/system/secrets?namespace=other', undefined, 404, 'NOT_FOUND');
    await fails('POST', '/system/secrets', { name: 'x', rawValue: 'not base64!' }, 400, 'BAD_REQUEST');
    assert.deepEqual(await store.list(), []);
  });

  it('needs the token like every /system route: Basic (faas-cli) or Bearer (fn)', async () => {
    const none = await send('GET', '/system/secrets?namespace=openfaas-fn', undefined, {});
    assert.equal(none.statusCode, 401);
    const wrong = await send('POST', '/system/secrets', { name: 'x', value: 'v' }, { authorization: 'Bearer wrong' });
    assert.equal(wrong.statusCode, 401);
    assert.deepEqual(await store.list(), []);
    const bearer = await send('POST', '/system/secrets', { name: 'x', value: 'v' }, { authorization: `Bearer ${token}` });
    assert.equal(bearer.statusCode, 201, bearer.body);
  });

  it('answers 501 when the driver keeps no secrets', async () => {
    const bare = createGateway({ driver: new MemoryDriver(), token });
    try {
      const res = await bare.app.inject({ method: 'GET', url: '/system/secrets?namespace=openfaas-fn', headers: faasCliAuth });
      assert.equal(res.statusCode, 501);
      assert.equal(res.json().code, 'NOT_SUPPORTED');
    } finally {
      await bare.close();
    }
  });
});
