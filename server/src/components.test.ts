import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import { buildProxyPlugin, kubefnErrorHandler } from '@kubefn/gateway';
import { CredentialFiles, staticCredential, type PokeBody } from '@kubefn/platform';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { componentEnv, gatewayShare, natsServers, pokePlugin, startBuilder, type RunningComponent } from './components.js';
import { createLogger } from './logger.js';

const quiet = createLogger({ level: 'silent' });
const tok = 'a-token-of-24-bytes-long';

describe('componentEnv', () => {
  it('names every missing setting at once', async () => {
    await assert.rejects(componentEnv({}), /missing environment: KUBEFN_NAMESPACE, KUBEFN_TOKEN \(or KUBEFN_TOKEN_DIR, KUBEFN_COMPONENT_TOKEN_DIR\)/);
    await assert.rejects(componentEnv({ KUBEFN_NAMESPACE: 'ns', KUBEFN_TOKEN: tok, KUBEFN_PORT: '99999' }), /not a port/);
    const { userToken, componentToken, ...env } = await componentEnv({ KUBEFN_NAMESPACE: 'ns', KUBEFN_TOKEN: tok, KUBEFN_INSECURE_REGISTRIES: ' a:1, ,b:2 ', KUBEFN_IMAGE_PULL_SECRETS: 'pull, ', KUBEFN_POD_NAME: 'kubefn-gateway-abc', KUBEFN_WARM_KEY_DIR: '/keys' });
    assert.deepEqual(env, { namespace: 'ns', functionNamespace: 'ns', port: 8080, registry: undefined, base: undefined, insecureRegistries: ['a:1', 'b:2'], nats: [], natsToken: undefined, imagePullSecrets: ['pull'], placement: {}, podName: 'kubefn-gateway-abc', warmKeyDir: '/keys' });
    assert.equal(userToken?.current(), tok);
    assert.equal(componentToken.current(), tok, 'one token for both when the components have none of their own');
    const nats = await componentEnv({ KUBEFN_NAMESPACE: 'ns', KUBEFN_TOKEN: tok, KUBEFN_NATS_URL: 'nats://a:4222, b:4222' });
    assert.deepEqual(nats.nats, ['nats://a:4222', 'b:4222']);
  });
  it('refuses a token under 16 bytes, saying how long it is', async () => {
    await assert.rejects(componentEnv({ KUBEFN_NAMESPACE: 'ns', KUBEFN_TOKEN: 'x' }), /KUBEFN_TOKEN has 1 byte; at least 16 are needed/);
    await assert.rejects(componentEnv({ KUBEFN_NAMESPACE: 'ns', KUBEFN_TOKEN: 'fifteen-bytes!!' }), /has 15 bytes/);
    assert.equal((await componentEnv({ KUBEFN_NAMESPACE: 'ns', KUBEFN_TOKEN: 'sixteen-bytes!!!' })).userToken?.current(), 'sixteen-bytes!!!');
  });
  it('reads the tokens from Secret volumes and follows a rotation: new token, old as previous, then old dropped', async () => {
    const root = await mkdtemp(path.join(tmpdir(), 'kubefn-tokens-'));
    const user = path.join(root, 'user');
    const component = path.join(root, 'component');
    await mkdir(user);
    await mkdir(component);
    const oldUser = 'user-token-number-one';
    const newUser = 'user-token-number-two';
    await writeFile(path.join(user, 'token'), `${oldUser}\n`);
    await writeFile(path.join(component, 'token'), 'component-token-one');
    const warnings: string[] = [];
    // The autoscaler and the builder mount only the components' token.
    const autoscaler = await componentEnv({ KUBEFN_NAMESPACE: 'ns', KUBEFN_COMPONENT_TOKEN_DIR: component });
    assert.equal(autoscaler.userToken, undefined);
    assert.equal(autoscaler.componentToken.current(), 'component-token-one');
    (autoscaler.componentToken as CredentialFiles).close();
    const env = await componentEnv({ KUBEFN_NAMESPACE: 'ns', KUBEFN_TOKEN_DIR: user, KUBEFN_COMPONENT_TOKEN_DIR: component }, (m) => warnings.push(m));
    try {
      assert.ok(env.userToken);
      assert.equal(env.userToken.current(), oldUser);
      assert.equal(env.componentToken.current(), 'component-token-one');
      assert.ok(env.userToken.accepts(oldUser) && !env.userToken.accepts('component-token-one'), 'each token opens its own door');
      await writeFile(path.join(user, 'token'), newUser);
      await writeFile(path.join(user, 'previous'), oldUser);
      assert.equal(await (env.userToken as CredentialFiles).reload(), true);
      assert.ok(env.userToken.accepts(newUser) && env.userToken.accepts(oldUser), 'both during the rotation');
      assert.equal(env.userToken.current(), newUser);
      await rm(path.join(user, 'previous'));
      await (env.userToken as CredentialFiles).reload();
      assert.ok(env.userToken.accepts(newUser) && !env.userToken.accepts(oldUser), 'the old one refused once dropped');
      // A weak token written by mistake is not taken: the last good one stays.
      await writeFile(path.join(user, 'token'), 'short');
      assert.equal(await (env.userToken as CredentialFiles).reload(), false);
      assert.equal(env.userToken.current(), newUser);
      assert.match(warnings.join('\n'), /the user token .* could not be read again; keeping the last one/);
    } finally {
      (env.userToken as CredentialFiles | undefined)?.close();
      (env.componentToken as CredentialFiles).close();
      await rm(root, { recursive: true, force: true });
    }
  });
});

describe('natsServers', () => {
  it('takes KUBEFN_NATS_URL as it is', () => {
    const servers = natsServers({ namespace: 'ns', nats: ['nats://x:4222'] }, undefined);
    assert.equal(servers.what, 'KUBEFN_NATS_URL');
    assert.deepEqual(servers.list(), ['nats://x:4222']);
    assert.equal(servers.onChange, undefined);
  });

  it('else follows the ready pods of the NATS Service, as host:port', () => {
    let peers = [{ id: 'kubefn-nats-0', url: 'http://10.0.0.7:4222' }];
    const listeners: (() => void)[] = [];
    const servers = natsServers({ namespace: 'kubefn', nats: [] }, { list: () => peers, onChange: (l) => listeners.push(l) });
    assert.equal(servers.what, 'the kubefn-nats Service in kubefn');
    assert.deepEqual(servers.list(), ['10.0.0.7:4222']);
    let changed = 0;
    servers.onChange!(() => changed++);
    peers = [{ id: 'kubefn-nats-0', url: 'http://[fd00::9]:4222' }];
    for (const l of listeners) l();
    assert.equal(changed, 1);
    assert.deepEqual(servers.list(), ['[fd00::9]:4222']);
  });
});

describe('the gateway build proxy in front of a builder without a registry', () => {
  let builder: RunningComponent;
  let gateway: FastifyInstance;
  let gatewayUrl: string;
  let peers: { id: string; url: string }[] = [];

  before(async () => {
    builder = await startBuilder({ namespace: 'ns', functionNamespace: 'ns', userToken: staticCredential('tok'), componentToken: staticCredential('tok'), port: 0, registry: undefined, base: 'host', insecureRegistries: [], nats: [], natsToken: undefined, imagePullSecrets: [], placement: {}, podName: 'builder-0', warmKeyDir: undefined }, quiet);
    gateway = Fastify();
    gateway.setErrorHandler(kubefnErrorHandler);
    await gateway.register(buildProxyPlugin({ builders: () => peers, token: 'tok', service: 'kubefn-builder' }));
    gatewayUrl = await gateway.listen({ port: 0, host: '127.0.0.1' });
  });
  after(async () => {
    await gateway.close();
    await builder.close();
  });

  const build = () => fetch(`${gatewayUrl}/system/builds?name=hello&handler=handler.js`, { method: 'POST', headers: { 'content-type': 'application/x-tar' }, body: Buffer.alloc(1024) });

  it('answers 503 when no builder pod is ready', async () => {
    peers = [];
    const res = await build();
    assert.equal(res.status, 503);
    assert.match(((await res.json()) as { message: string }).message, /no ready builder: the kubefn-builder Service has no ready pod/);
  });

  it('passes the build to the builder with its token; the builder says what it lacks', async () => {
    peers = [{ id: 'builder-0', url: builder.url.replace('0.0.0.0', '127.0.0.1') }];
    const res = await build();
    assert.equal(res.status, 503);
    const body = (await res.json()) as { code: string; message: string; hint: string };
    assert.equal(body.code, 'UNAVAILABLE');
    assert.match(body.message, /no registry/);
    assert.match(body.hint, /kubefn-config/);
  });

  it('the builder refuses callers without the token', async () => {
    const res = await fetch(`${builder.url.replace('0.0.0.0', '127.0.0.1')}/system/builds?name=x`, { method: 'POST' });
    assert.equal(res.status, 401);
  });
});

describe('the autoscaler\'s poke route', () => {
  const pokes: [string, PokeBody][] = [];
  let app: FastifyInstance;
  before(async () => {
    app = Fastify();
    app.setErrorHandler(kubefnErrorHandler);
    await app.register(async (scope) => pokePlugin(scope, { poke: async (name, body = {}) => void pokes.push([name, body]) }));
  });
  after(() => app.close());

  it('passes the backlog on; no body or an empty one is a poke with nothing known', async () => {
    pokes.length = 0;
    const json = { 'content-type': 'application/json' };
    for (const [headers, payload] of [
      [json, '{"queued":42}'],
      [{}, undefined],
      [json, ''],
    ] as const) {
      const res = await app.inject({ method: 'POST', url: '/poke/f', headers, ...(payload !== undefined ? { payload } : {}) });
      assert.equal(res.statusCode, 202, res.body);
      assert.deepEqual(res.json(), { function: 'f' });
    }
    assert.deepEqual(pokes, [['f', { queued: 42 }], ['f', {}], ['f', {}]]);
  });

  it('refuses a bad body with 400 BAD_REQUEST and a message saying what is wrong, without poking', async () => {
    pokes.length = 0;
    for (const [payload, why] of [
      ['{"queued":-3}', /"queued" must be a whole number from 0 to 10000000, not -3/],
      ['{"queued":"many"}', /"queued" must be a whole number/],
      ['[1,2]', /must be a JSON object/],
      ['{not json', /a poke's body is not JSON/],
    ] as const) {
      const res = await app.inject({ method: 'POST', url: '/poke/f', headers: { 'content-type': 'application/json' }, payload });
      assert.equal(res.statusCode, 400, payload);
      assert.equal(res.json().code, 'BAD_REQUEST');
      assert.match(res.json().message, why);
    }
    assert.deepEqual(pokes, []);
  });
});

describe('gatewayShare', () => {
  it('is the place of this gateway among the ready ones, in the order every gateway sees', () => {
    assert.deepEqual(gatewayShare(['gw-b', 'gw-a'], 'gw-a'), { index: 0, count: 2 });
    assert.deepEqual(gatewayShare(['gw-b', 'gw-a'], 'gw-b'), { index: 1, count: 2 });
    assert.deepEqual(gatewayShare([], 'gw-a'), { index: 0, count: 1 });
    // Not ready yet: after the others, so it takes none of their slots.
    assert.deepEqual(gatewayShare(['gw-b', 'gw-a'], 'gw-c'), { index: 2, count: 3 });
  });
});
