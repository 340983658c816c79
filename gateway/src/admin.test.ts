// The management API under /system through fastify's inject() on an in-memory driver: every
// route's answers, success and failure, with kubefn error bodies that name what is wrong.

import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { createGateway, type Gateway } from './app.js';
import { MemoryBundles, MemoryDriver } from './testing/memory-driver.js';

const digest = `sha256:${'b'.repeat(64)}`;

describe('management API', () => {
  let driver: MemoryDriver;
  let bundles: MemoryBundles;
  let gateway: Gateway;
  const inject = (method: string, url: string, payload?: unknown, headers: Record<string, string> = {}) =>
    gateway.app.inject({ method: method as 'GET', url, headers, ...(payload === undefined ? {} : { payload: payload as string }) });
  /** Asserts status and error code, and returns the body. */
  const fails = async (method: string, url: string, payload: unknown, status: number, code: string) => {
    const res = await inject(method, url, payload);
    assert.equal(res.statusCode, status, `${method} ${url}: ${res.body}`);
    const body = res.json();
    assert.equal(body.code, code, `${method} ${url}`);
    assert.equal(typeof body.message, 'string');
    return body;
  };

  beforeEach(async () => {
    driver = new MemoryDriver();
    bundles = new MemoryBundles();
    gateway = createGateway({ driver, bundles, maxBundleBytes: 64, serveStats: true, info: { builds: false } });
    assert.equal((await inject('POST', '/system/functions', { name: 'hello', image: 'img', env: { A: '1' } })).statusCode, 202);
  });
  afterEach(() => gateway.close());

  describe('GET /system/info and /system/namespaces', () => {
    it('describes the platform', async () => {
      const res = await inject('GET', '/system/info');
      assert.equal(res.statusCode, 200);
      const info = res.json();
      assert.equal(info.provider.provider, 'kubefn');
      assert.equal(info.provider.orchestration, 'memory');
      assert.deepEqual(info.kubefn, { driver: 'memory', bundles: true, apps: false, builds: false });
      assert.equal(info.version.release, '0.1.0');
    });
    it('lists the one namespace', async () => {
      const res = await inject('GET', '/system/namespaces');
      assert.equal(res.statusCode, 200);
      assert.deepEqual(res.json(), ['default']);
    });
  });

  describe('GET /system/function/:name with the autoscaler defaults known', () => {
    it('reports each scale knob in effect: the spec value, or the default and where it comes from', async () => {
      const told = createGateway({ driver, scaleDefaults: { values: { target: 100, stableWindow: '60s' }, from: 'config' } });
      try {
        await told.app.inject({ method: 'POST', url: '/system/functions', payload: { name: 'knobs', image: 'img', scale: { target: 7 } } });
        const body = (await told.app.inject({ method: 'GET', url: '/system/function/knobs' })).json();
        assert.deepEqual(body.scaling, { target: { value: 7, from: 'spec' }, stableWindow: { value: '60s', from: 'config' } });
        assert.equal((await inject('GET', '/system/function/hello')).json().scaling, undefined, 'not known: left out');
        // A config reloaded while running: the next answer reports the new defaults.
        told.setScaleDefaults({ values: { target: 100, stableWindow: '30s' }, from: 'config' });
        const after = (await told.app.inject({ method: 'GET', url: '/system/function/knobs' })).json();
        assert.deepEqual(after.scaling.stableWindow, { value: '30s', from: 'config' });
      } finally {
        await told.close();
      }
    });
  });

  describe('a stalled activation in the status', () => {
    it('is in GET /system/function/:name and /system/functions while set, and gone once cleared or the function is deleted', async () => {
      const stall = { reason: 'no replica became ready within 4.2 s (p99 start-up); 3 asked for', since: '2026-01-02T12:00:00.000Z' };
      gateway.setActivation('hello', stall);
      const expected = { state: 'ActivationStalled', ...stall };
      assert.deepEqual((await inject('GET', '/system/function/hello')).json().activation, expected);
      assert.deepEqual((await inject('GET', '/system/functions')).json()[0].activation, expected);
      gateway.setActivation('hello', undefined);
      assert.equal((await inject('GET', '/system/function/hello')).json().activation, undefined, 'cleared');
      gateway.setActivation('hello', stall);
      assert.equal((await inject('DELETE', '/system/functions', { functionName: 'hello' })).statusCode, 200);
      assert.equal((await inject('POST', '/system/functions', { name: 'hello', image: 'img' })).statusCode, 202);
      assert.equal((await inject('GET', '/system/function/hello')).json().activation, undefined, 'a function created again starts without it');
    });
  });

  describe('GET /system/functions and /system/function/:name', () => {
    it('lists and gets functions in the OpenFaaS shape plus the spec', async () => {
      assert.equal((await inject('GET', '/system/functions?namespace=openfaas-fn')).statusCode, 200, "faas-cli's default namespace");
      const list = await inject('GET', '/system/functions?namespace=default');
      assert.equal(list.statusCode, 200);
      assert.deepEqual(list.json().map((f: { name: string }) => f.name), ['hello']);
      const one = await inject('GET', '/system/function/hello');
      assert.equal(one.statusCode, 200);
      const body = one.json();
      assert.equal(body.name, 'hello');
      assert.equal(body.namespace, 'default');
      assert.deepEqual(body.envVars, { A: '1' });
      assert.equal(body.labels.faas_function, 'hello');
      assert.equal(body.replicas, 1);
      assert.equal(body.availableReplicas, 0);
      assert.equal(body.invocationCount, 0);
      assert.equal(body.spec.name, 'hello');
    });
    it("adds the rollout and a load error to the OpenFaaS shape, renaming nothing", async () => {
      const before = (await inject('GET', '/system/function/hello')).json();
      assert.deepEqual([before.replicas, before.availableReplicas, before.updatedReplicas, before.generation, before.observedGeneration], [1, 0, 0, 1, 1]);
      assert.equal(before.loadError, undefined);
      assert.equal((await inject('PUT', '/system/functions', { name: 'hello', image: 'img2' })).statusCode, 200);
      driver.failLoad('hello', { message: 'init() threw: db down', location: 'handler.js:3:9' });
      const after = (await inject('GET', '/system/function/hello')).json();
      assert.equal(after.generation, 2);
      assert.deepEqual(after.loadError, { code: 'LOAD_FAILED', message: 'init() threw: db down', location: 'handler.js:3:9' });
      const listed = (await inject('GET', '/system/functions')).json().find((f: { name: string }) => f.name === 'hello');
      assert.equal(listed.loadError.location, 'handler.js:3:9');
    });

    it("passes on what the driver says it does not enforce, and nothing when it enforces all", async () => {
      driver.specWarnings = (spec) => (spec.resources?.cpu ? [`resources.cpu ${spec.resources.cpu} is not enforced`] : []);
      try {
        assert.equal((await inject('GET', '/system/function/hello')).json().warnings, undefined);
        assert.equal((await inject('PUT', '/system/functions', { name: 'hello', image: 'img3', resources: { cpu: '500m' } })).statusCode, 200);
        assert.deepEqual((await inject('GET', '/system/function/hello')).json().warnings, ['resources.cpu 500m is not enforced']);
        const listed = (await inject('GET', '/system/functions')).json().find((f: { name: string }) => f.name === 'hello');
        assert.deepEqual(listed.warnings, ['resources.cpu 500m is not enforced']);
      } finally {
        driver.specWarnings = () => [];
      }
    });

    it('answers 404 for an unknown function or another namespace, 400 for a bad name', async () => {
      const missing = await fails('GET', '/system/function/nope', undefined, 404, 'NOT_FOUND');
      assert.match(missing.message, /"nope"/);
      const ns = await fails('GET', '/system/functions?namespace=other', undefined, 404, 'NOT_FOUND');
      assert.match(ns.hint, /default/);
      await fails('GET', '/system/function/hello?namespace=other', undefined, 404, 'NOT_FOUND');
      await fails('GET', '/system/function/Bad_Name', undefined, 400, 'INVALID_NAME');
      await fails('GET', `/system/function/${'a'.repeat(254)}`, undefined, 400, 'BAD_REQUEST');
    });
  });

  describe('POST and PUT /system/functions', () => {
    it('creates with POST (202) and updates with PUT (200)', async () => {
      assert.equal((await inject('POST', '/system/functions', { name: 'second', image: 'img' })).statusCode, 202);
      const put = await inject('PUT', '/system/functions', { name: 'second', image: 'img2', scale: { min: 2 } });
      assert.equal(put.statusCode, 200);
      const status = await driver.get('second');
      assert.equal(status.spec.image, 'img2');
      assert.equal(status.replicas, 2);
    });
    it('answers 202 "not reconciled yet" with the reason to a change no controller reconciled in time, PUT or POST', async () => {
      const deploy = driver.deploy.bind(driver);
      const late = 'function "hello" was applied but no controller reconciled it within 60000 ms (not reconciled yet); is kubefn-autoscaler running?';
      driver.deploy = async (spec) => ({ ...(await deploy(spec)), notReconciled: late });
      const put = await inject('PUT', '/system/functions', { name: 'hello', image: 'img2' });
      assert.deepEqual([put.statusCode, put.json()], [202, { message: late }]);
      const post = await inject('POST', '/system/functions', { name: 'third', image: 'img' });
      assert.deepEqual([post.statusCode, post.json()], [202, { message: late }]);
    });
    it('answers 409 ALREADY_EXISTS to a second create and 404 NOT_FOUND to updating an unknown function', async () => {
      const dup = await fails('POST', '/system/functions', { name: 'hello', image: 'img' }, 409, 'ALREADY_EXISTS');
      assert.match(dup.hint, /PUT/);
      const unknown = await fails('PUT', '/system/functions', { name: 'unknown', image: 'img' }, 404, 'NOT_FOUND');
      assert.match(unknown.hint, /POST/);
    });
    it('answers 400 INVALID_SPEC naming the field', async () => {
      const bad = await fails('POST', '/system/functions', { name: 'ok', image: 'img', scale: { min: -1 } }, 400, 'INVALID_SPEC');
      assert.equal(bad.fields[0].field, 'scale.min');
      const noImage = await fails('POST', '/system/functions', { name: 'ok' }, 400, 'INVALID_SPEC');
      assert.deepEqual(noImage.fields, [{ field: 'image', message: 'is required' }]);
      assert.ok(noImage.hint);
      const badName = await fails('POST', '/system/functions', { name: 'Not_OK', image: 'img' }, 400, 'INVALID_SPEC');
      assert.equal(badName.fields[0].field, 'name');
      const constraint = await fails('POST', '/system/functions', { service: 'of', image: 'img', constraints: ['no equals sign'] }, 400, 'INVALID_SPEC');
      assert.equal(constraint.fields[0].field, 'constraints');
    });
    it('answers 400 BAD_REQUEST to a body that is not a JSON object, and 413 to one over 1 MiB', async () => {
      await fails('POST', '/system/functions', [{ name: 'x' }], 400, 'BAD_REQUEST');
      const broken = await gateway.app.inject({ method: 'POST', url: '/system/functions', headers: { 'content-type': 'application/json' }, payload: '{"name":' });
      assert.equal(broken.statusCode, 400);
      assert.equal(broken.json().code, 'BAD_REQUEST');
      const huge = { name: 'big', image: 'img', env: { BIG: 'x'.repeat(1024 * 1024) } };
      await fails('POST', '/system/functions', huge, 413, 'BODY_TOO_LARGE');
    });
    it('answers 501 NOT_SUPPORTED for a trigger it does not serve, 404 for another namespace', async () => {
      const trigger = await fails('POST', '/system/functions', { name: 'evented', image: 'img', triggers: [{ type: 'nats', subject: 's' }] }, 501, 'NOT_SUPPORTED');
      assert.equal(trigger.fields[0].field, 'triggers.0.type');
      await fails('POST', '/system/functions', { service: 'of', image: 'img', namespace: 'other' }, 404, 'NOT_FOUND');
      await assert.rejects(driver.get('evented'), 'nothing was deployed');
      await assert.rejects(driver.get('of'), 'nothing was deployed');
    });
    it("takes `faas-cli deploy --image`'s sequence: PUT, then POST on 404, with Go's nulls and empty values", async () => {
      // faas-provider's FunctionDeployment marshalled by Go for `faas-cli deploy --image img --name made`:
      // the fields without omitempty are sent as null or empty, and the update (PUT) comes first.
      const body = {
        service: 'made',
        image: 'registry.local/made:1',
        envProcess: '',
        envVars: null,
        constraints: null,
        secrets: null,
        labels: {},
        annotations: {},
        limits: null,
        requests: null,
        readOnlyRootFilesystem: false,
      };
      await fails('PUT', '/system/functions', body, 404, 'NOT_FOUND');
      await assert.rejects(driver.get('made'), 'the update alone creates nothing');
      assert.equal((await inject('POST', '/system/functions', body)).statusCode, 202);
      assert.equal((await driver.get('made')).spec.image, 'registry.local/made:1');
      const updated = { ...body, image: 'registry.local/made:2', namespace: 'openfaas-fn' };
      assert.equal((await inject('PUT', '/system/functions', updated)).statusCode, 200, 'faas-cli prints "attempting rolling-update" on 200');
      assert.equal((await driver.get('made')).spec.image, 'registry.local/made:2');
      const listed = (await inject('GET', '/system/functions?namespace=openfaas-fn')).json() as { name: string; image: string }[];
      assert.equal(listed.find((f) => f.name === 'made')?.image, 'registry.local/made:2');
    });
    it('maps an OpenFaaS FunctionDeployment onto the spec and back', async () => {
      const fd = {
        service: 'of-fn',
        image: 'img',
        namespace: 'default',
        envVars: { B: '2' },
        labels: { 'com.openfaas.scale.zero': 'false', 'com.openfaas.scale.max': '4', team: 'a' },
        limits: { cpu: '500m', memory: '128Mi' },
        constraints: ['disk=ssd'],
      };
      assert.equal((await inject('POST', '/system/functions', fd)).statusCode, 202);
      const spec = (await driver.get('of-fn')).spec;
      assert.equal(spec.scale.min, 1);
      assert.equal(spec.scale.max, 4);
      assert.deepEqual(spec.placement?.nodeSelector, { disk: 'ssd' });
      const body = (await inject('GET', '/system/function/of-fn')).json();
      assert.deepEqual(body.envVars, { B: '2' });
      assert.deepEqual(body.constraints, ['disk==ssd']);
      assert.deepEqual(body.limits, { cpu: '500m', memory: '128Mi' });
      assert.equal(body.labels.team, 'a');
    });
  });

  describe('DELETE /system/functions', () => {
    it('removes a function (200), then answers 404 for it', async () => {
      assert.equal((await inject('DELETE', '/system/functions', { functionName: 'hello' })).statusCode, 200);
      await fails('GET', '/system/function/hello', undefined, 404, 'NOT_FOUND');
      await fails('DELETE', '/system/functions', { functionName: 'hello' }, 404, 'NOT_FOUND');
    });
    it('answers 400 to a body without functionName, to a bad name, and 404 for another namespace', async () => {
      await fails('DELETE', '/system/functions', {}, 400, 'BAD_REQUEST');
      await fails('DELETE', '/system/functions', { functionName: 'Bad_Name' }, 400, 'INVALID_NAME');
      await fails('DELETE', '/system/functions', { functionName: 'hello', namespace: 'other' }, 404, 'NOT_FOUND');
      assert.equal((await driver.get('hello')).spec.name, 'hello', 'still there');
    });
  });

  describe('POST /system/scale-function/:name', () => {
    it('sets the replica count (202)', async () => {
      const res = await inject('POST', '/system/scale-function/hello', { serviceName: 'hello', replicas: 3 });
      assert.equal(res.statusCode, 202);
      assert.deepEqual(driver.scaleCalls, [['hello', 3]]);
    });
    it('answers 400 to a count that is missing, negative, too large or not a number; 404 to an unknown function', async () => {
      for (const body of [{}, { replicas: -1 }, { replicas: 1001 }, { replicas: 'two' }, { replicas: 1.5 }]) {
        await fails('POST', '/system/scale-function/hello', body, 400, 'BAD_REQUEST');
      }
      await fails('POST', '/system/scale-function/Bad_Name', { replicas: 1 }, 400, 'INVALID_NAME');
      await fails('POST', '/system/scale-function/nope', { replicas: 1 }, 404, 'NOT_FOUND');
      await fails('POST', '/system/scale-function/hello', { replicas: 1, namespace: 'other' }, 404, 'NOT_FOUND');
      assert.deepEqual(driver.scaleCalls, []);
    });
  });

  describe('GET /system/logs', () => {
    it('streams NDJSON lines with the options asked for, filtered by instance', async () => {
      const line = (instance: string, text: string) => ({ name: 'hello', instance, timestamp: '2026-01-01T00:00:00.000Z', text, stream: 'stdout' as const });
      driver.logLines = [line('hello-1', 'one'), line('hello-2', 'two')];
      const res = await inject('GET', '/system/logs?name=hello&tail=5&follow=false&since=2026-01-01T00:00:00Z');
      assert.equal(res.statusCode, 200);
      assert.equal(res.headers['content-type'], 'application/x-ndjson');
      const lines = res.body.trim().split('\n').map((l) => JSON.parse(l));
      assert.deepEqual(lines.map((l) => [l.instance, l.text, l.namespace]), [['hello-1', 'one', 'default'], ['hello-2', 'two', 'default']]);
      assert.deepEqual(driver.logCalls, [{ follow: false, tail: 5, since: new Date('2026-01-01T00:00:00Z') }]);
      const one = await inject('GET', '/system/logs?name=hello&instance=hello-2');
      assert.deepEqual(one.body.trim().split('\n').map((l) => JSON.parse(l).text), ['two']);
    });
    it("takes faas-cli's default query: namespace openfaas-fn and tail=-1 for all lines", async () => {
      driver.logLines = [{ name: 'hello', instance: 'hello-1', timestamp: '2026-01-01T00:00:00.000Z', text: 'one', stream: 'stdout' }];
      const res = await inject('GET', '/system/logs?name=hello&namespace=openfaas-fn&follow=false&tail=-1');
      assert.equal(res.statusCode, 200);
      assert.deepEqual(res.body.trim().split('\n').map((l) => JSON.parse(l).text), ['one']);
      assert.deepEqual(driver.logCalls, [{ follow: false }], 'no tail: every line');
      await fails('GET', '/system/logs?name=hello&tail=-2', undefined, 400, 'BAD_REQUEST');
    });
    it('answers 404 before streaming for an unknown function, 400 for bad parameters', async () => {
      await fails('GET', '/system/logs?name=nope', undefined, 404, 'NOT_FOUND');
      await fails('GET', '/system/logs?name=hello&namespace=other', undefined, 404, 'NOT_FOUND');
      for (const query of ['', '?name=Bad_Name', '?name=hello&tail=abc', '?name=hello&tail=100001', '?name=hello&since=yesterday', '?name=hello&follow=maybe']) {
        const res = await inject('GET', `/system/logs${query}`);
        assert.equal(res.statusCode, 400, query);
        assert.match(res.json().code, /^(BAD_REQUEST|INVALID_NAME)$/, query);
      }
      assert.deepEqual(driver.logCalls, []);
    });
  });

  describe('HEAD and PUT /system/bundles/:digest', () => {
    it('stores a bundle (201 with its image), then knows it (HEAD 200)', async () => {
      assert.equal((await inject('HEAD', `/system/bundles/${digest}`)).statusCode, 404);
      const put = await gateway.app.inject({ method: 'PUT', url: `/system/bundles/${digest}`, headers: { 'content-type': 'application/octet-stream' }, payload: Buffer.from('bundle bytes') });
      assert.equal(put.statusCode, 201);
      assert.deepEqual(put.json(), { image: `bundle:${digest}` });
      assert.equal(bundles.blobs.get(digest)?.toString(), 'bundle bytes');
      assert.equal((await inject('HEAD', `/system/bundles/${digest}`)).statusCode, 200);
    });
    it('answers 400 to a digest that is not sha256 hex, and 413 to a bundle over the limit', async () => {
      for (const bad of ['sha256:xyz', `sha512:${'b'.repeat(64)}`, 'b'.repeat(64)]) {
        await fails('PUT', `/system/bundles/${bad}`, 'x', 400, 'BAD_REQUEST');
      }
      const big = await gateway.app.inject({ method: 'PUT', url: `/system/bundles/${digest}`, headers: { 'content-type': 'application/octet-stream' }, payload: Buffer.alloc(65) });
      assert.equal(big.statusCode, 413);
      assert.equal(big.json().code, 'BODY_TOO_LARGE');
      assert.equal(bundles.blobs.size, 0);
    });
    it('answers 501 NOT_SUPPORTED on a gateway without a bundle store', async () => {
      const bare = createGateway({ driver: new MemoryDriver() });
      try {
        for (const method of ['HEAD', 'PUT'] as const) {
          const res = await bare.app.inject({ method, url: `/system/bundles/${digest}`, headers: { 'content-type': 'application/octet-stream' }, payload: method === 'PUT' ? 'x' : '' });
          assert.equal(res.statusCode, 501, method);
        }
        const res = await bare.app.inject({ method: 'PUT', url: `/system/bundles/${digest}`, headers: { 'content-type': 'application/octet-stream' }, payload: 'x' });
        assert.equal(res.json().code, 'NOT_SUPPORTED');
        assert.match(res.json().hint, /OCI image/);
      } finally {
        await bare.close();
      }
    });
    it('stores apps (a bundle and its files, one tar) under /system/apps when the gateway has an app store', async () => {
      const apps = new MemoryBundles();
      const withApps = createGateway({ driver: new MemoryDriver(), apps, maxBundleBytes: 64 });
      try {
        const put = await withApps.app.inject({ method: 'PUT', url: `/system/apps/${digest}`, headers: { 'content-type': 'application/octet-stream' }, payload: Buffer.from('app tar') });
        assert.equal(put.statusCode, 201);
        assert.deepEqual(put.json(), { image: `app:${digest}` });
        assert.equal(apps.blobs.get(digest)?.toString(), 'app tar');
        assert.equal((await withApps.app.inject({ method: 'HEAD', url: `/system/apps/${digest}` })).statusCode, 200);
        const big = await withApps.app.inject({ method: 'PUT', url: `/system/apps/${digest}`, headers: { 'content-type': 'application/octet-stream' }, payload: Buffer.alloc(65) });
        assert.equal(big.statusCode, 413);
        assert.equal((await inject('HEAD', `/system/apps/${digest}`)).statusCode, 501, 'no app store, no app uploads');
      } finally {
        await withApps.close();
      }
    });
  });

  describe('GET /system/stats', () => {
    it('serves the cumulative counters when asked to, which a scrape leaves as they are, and is not there otherwise', async () => {
      gateway.stats.begin('hello');
      const scrape = async (url = '/system/stats') => {
        const res = await inject('GET', url);
        assert.equal(res.statusCode, 200);
        return res.json() as { instance: string; seq: number; now: number; functions: { name: string; requests: number; queued?: number }[]; history?: unknown };
      };
      const first = await scrape();
      const second = await scrape();
      assert.deepEqual(first.functions.map((f) => [f.name, f.requests, f.queued]), [['hello', 1, 0]]);
      assert.deepEqual(second.functions.map((f) => [f.name, f.requests]), [['hello', 1]], 'the first scrape took nothing');
      assert.equal(second.instance, first.instance);
      assert.ok(second.seq > first.seq);
      assert.equal(first.history, undefined);
      const withHistory = await scrape('/system/stats?history=1');
      assert.ok(Array.isArray((withHistory.history as { seconds: unknown[] }).seconds));
      const bare = createGateway({ driver: new MemoryDriver() });
      try {
        assert.equal((await bare.app.inject({ method: 'GET', url: '/system/stats' })).statusCode, 404);
      } finally {
        await bare.close();
      }
    });

    it('carries the pending messages set per function, also for one with no calls, on every scrape', async () => {
      gateway.stats.begin('hello');
      gateway.stats.setPending('hello', 7);
      gateway.stats.setPending('orders', 42);
      const byName = async () => {
        const res = await inject('GET', '/system/stats');
        assert.equal(res.statusCode, 200);
        return new Map((res.json().functions as { name: string; pending?: number }[]).map((s) => [s.name, s]));
      };
      const first = await byName();
      assert.equal(first.get('hello')?.pending, 7);
      assert.deepEqual(first.get('orders'), { name: 'orders', gen: 0, requests: 0, inFlightMs: 0, completed: 0, inFlight: 0, pending: 42 });
      assert.equal((await byName()).get('orders')?.pending, 42);
      gateway.stats.setPending('orders', undefined);
      const cleared = await byName();
      assert.equal(cleared.has('orders'), false);
      assert.equal('pending' in cleared.get('hello')!, true);
    });
  });
});

describe('create, update and delete of one function', () => {
  /** A driver whose writes take a moment, as every real driver's do. */
  class SlowDriver extends MemoryDriver {
    override async deploy(spec: Parameters<MemoryDriver['deploy']>[0]) {
      await new Promise((r) => setImmediate(r));
      return super.deploy(spec);
    }
    override async remove(name: string) {
      await new Promise((r) => setImmediate(r));
      return super.remove(name);
    }
  }

  it('are serialized and decided on the driver: 50 concurrent update/delete pairs never re-create a deleted function', async () => {
    const driver = new SlowDriver();
    const gateway = createGateway({ driver });
    try {
      const send = (method: 'POST' | 'PUT' | 'DELETE', payload: unknown) => gateway.app.inject({ method, url: '/system/functions', payload: payload as string });
      assert.equal((await send('POST', { name: 'racy', image: 'img:1' })).statusCode, 202);
      await gateway.app.inject({ method: 'GET', url: '/system/function/racy' });
      const answers = await Promise.all(
        Array.from({ length: 50 }, (_, i) => [send('PUT', { name: 'racy', image: `img:${i + 2}` }), send('DELETE', { functionName: 'racy' })]).flat(),
      );
      const deleted = answers.filter((r, i) => i % 2 === 1 && r.statusCode === 200).length;
      const updated = answers.filter((r, i) => i % 2 === 0 && r.statusCode === 200).length;
      assert.equal(deleted, 1, 'one delete removed it; an update never brought it back for another');
      assert.ok(updated <= 1, `updates after the delete answer 404 (${updated} succeeded)`);
      for (const r of answers) assert.ok([200, 404].includes(r.statusCode), r.body);
      await assert.rejects(driver.get('racy'), /not found/);
    } finally {
      await gateway.close();
    }
  });

  it('POST after DELETE creates again, and a second POST of the same name is 409', async () => {
    const gateway = createGateway({ driver: new SlowDriver() });
    try {
      const send = (method: 'POST' | 'DELETE', payload: unknown) => gateway.app.inject({ method, url: '/system/functions', payload: payload as string });
      const [a, b] = await Promise.all([send('POST', { name: 'twice', image: 'img' }), send('POST', { name: 'twice', image: 'img' })]);
      assert.deepEqual([a.statusCode, b.statusCode].sort(), [202, 409]);
      assert.equal((await send('DELETE', { functionName: 'twice' })).statusCode, 200);
      assert.equal((await send('POST', { name: 'twice', image: 'img' })).statusCode, 202);
    } finally {
      await gateway.close();
    }
  });
});
