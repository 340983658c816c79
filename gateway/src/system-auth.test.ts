// Every /system route needs the token: the routes are read from the app itself, so one added
// later without the check fails here. Routes outside /system are listed by name, so a new open
// route is a decision someone makes on purpose.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { createGateway, type Gateway } from './app.js';
import { MemoryBundles, MemoryDriver } from './testing/memory-driver.js';

const token = 'right-token';
const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

/** The routes fastify serves, as [method, path] pairs, read from its printed radix tree. */
function servedRoutes(app: FastifyInstance): [string, string][] {
  const routes: [string, string][] = [];
  const prefixes: string[] = [];
  for (const line of app.printRoutes().split('\n')) {
    const m = /^((?:│ {3}| {4})*)[├└]── (\S+)(?: \(([A-Z, ]+)\))?$/.exec(line);
    if (!m) continue;
    const depth = m[1]!.length / 4;
    const path = (depth > 0 ? prefixes[depth - 1] : '') + m[2]!;
    prefixes[depth] = path;
    prefixes.length = depth + 1;
    for (const method of m[3]?.split(', ') ?? []) routes.push([method, path]);
  }
  return routes;
}

/** A concrete URL for a route pattern. */
function concrete(path: string): string {
  return path
    .replace(':digest', `sha256:${'a'.repeat(64)}`)
    .replace(/:[^/]+/g, 'hello')
    .replace('*', 'rest');
}

describe('token on every /system route', () => {
  let gateway: Gateway;
  let routes: [string, string][];

  before(async () => {
    // Every option that adds routes is on, so every route exists.
    gateway = createGateway({
      driver: new MemoryDriver(),
      bundles: new MemoryBundles(),
      token,
      serveStats: true,
      systemPlugins: [async (app) => void app.post('/system/builds', async () => ({ built: true }))],
    });
    await gateway.app.ready();
    routes = servedRoutes(gateway.app);
  });
  after(() => gateway.close());

  it('reads the routes from the app', () => {
    const system = routes.filter(([, p]) => p.startsWith('/system'));
    for (const expected of [
      ['GET', '/system/info'],
      ['POST', '/system/functions'],
      ['DELETE', '/system/functions'],
      ['GET', '/system/function/:name'],
      ['POST', '/system/scale-function/:name'],
      ['GET', '/system/logs'],
      ['GET', '/system/secrets'],
      ['POST', '/system/secrets'],
      ['PUT', '/system/secrets'],
      ['DELETE', '/system/secrets'],
      ['PUT', '/system/bundles/:digest'],
      ['GET', '/system/stats'],
      ['POST', '/system/builds'],
    ]) {
      assert.ok(system.some(([m, p]) => m === expected[0] && p === expected[1]), `${expected.join(' ')} is among ${JSON.stringify(system)}`);
    }
  });

  it('serves nothing outside /system but the invoke paths, /healthz and /metrics', () => {
    const open = new Set(routes.filter(([, p]) => !p.startsWith('/system')).map(([, p]) => p));
    assert.deepEqual([...open].sort(), ['/async-function/:name', '/async-function/:name/*', '/function/:name', '/function/:name/*', '/healthz', '/metrics']);
  });

  it('answers 401 without the token or with a wrong one, and lets the right one through, on every /system route', async () => {
    const system = routes.filter(([, p]) => p.startsWith('/system'));
    for (const [method, path] of system) {
      const url = concrete(path);
      const call = (authorization?: string) =>
        gateway.app.inject({ method: method as 'GET', url, ...(authorization ? { headers: { authorization } } : {}) });
      const what = `${method} ${url}`;

      const none = await call();
      assert.equal(none.statusCode, 401, `${what} without a token`);
      assert.match(String(none.headers['www-authenticate']), /^Basic realm=/, what);
      if (method !== 'HEAD') {
        const body = none.json();
        assert.equal(body.code, 'UNAUTHORIZED', what);
        assert.match(body.message, /token/, what);
        assert.ok(body.hint, what);
      }
      for (const wrong of ['Bearer wrong-token', basic('admin', 'wrong-token'), 'Bearer ', basic('admin', ''), `Token ${token}`, token]) {
        assert.equal((await call(wrong)).statusCode, 401, `${what} with "${wrong}"`);
      }
      for (const right of [`Bearer ${token}`, basic('admin', token)]) {
        assert.notEqual((await call(right)).statusCode, 401, `${what} with the right token`);
      }
    }
  });

  it('names where the token is, as the platform tells it', async () => {
    const told = createGateway({ driver: new MemoryDriver(), token, tokenHint: '`fn up` wrote it to /srv/dev/token' });
    try {
      const res = await told.app.inject({ method: 'GET', url: '/system/functions' });
      assert.equal(res.statusCode, 401);
      assert.match(res.json().hint, /KUBEFN_TOKEN \(`fn up` wrote it to \/srv\/dev\/token\)/);
    } finally {
      await told.close();
    }
  });
});
