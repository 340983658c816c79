// Gateway URL and token resolution: flag > environment > <home>/token > default.

import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { defaultGateway, normalizeGateway, resolveConfig, resolveHome } from './config.js';

const homedir = '/home/ada';
const tokenFiles = (files: Record<string, string>) => (file: string) => files[file];

describe('resolveConfig', () => {
  it('defaults to the local gateway, ~/.kubefn and no token', () => {
    const c = resolveConfig({ env: {}, homedir, readTokenFile: () => undefined });
    assert.equal(c.gateway, defaultGateway);
    assert.equal(c.home, path.join(homedir, '.kubefn'));
    assert.equal(c.tokenFile, path.join(homedir, '.kubefn', 'token'));
    assert.equal(c.token, undefined);
    assert.equal(c.tokenSource, 'none');
  });

  it('prefers --gateway over KUBEFN_GATEWAY over the default', () => {
    const env = { KUBEFN_GATEWAY: 'http://env:1/' };
    assert.equal(resolveConfig({ env, homedir, readTokenFile: () => undefined }).gateway, 'http://env:1');
    assert.equal(resolveConfig({ gateway: 'https://flag:2/', env, homedir, readTokenFile: () => undefined }).gateway, 'https://flag:2');
    assert.equal(resolveConfig({ env: { KUBEFN_GATEWAY: '' }, homedir, readTokenFile: () => undefined }).gateway, defaultGateway);
  });

  it('prefers --token over KUBEFN_TOKEN over <home>/token', () => {
    const read = tokenFiles({ [path.join(homedir, '.kubefn', 'token')]: 'from-file\n' });
    assert.deepEqual(pick(resolveConfig({ env: {}, homedir, readTokenFile: read })), ['from-file', 'file']);
    assert.deepEqual(pick(resolveConfig({ env: { KUBEFN_TOKEN: 'from-env' }, homedir, readTokenFile: read })), ['from-env', 'env']);
    assert.deepEqual(
      pick(resolveConfig({ token: 'from-flag', env: { KUBEFN_TOKEN: 'from-env' }, homedir, readTokenFile: read })),
      ['from-flag', 'flag'],
    );
  });

  it('reads the token file under KUBEFN_HOME when it is set', () => {
    const read = tokenFiles({ '/srv/kubefn/token': 'abc', [path.join(homedir, '.kubefn', 'token')]: 'wrong' });
    const c = resolveConfig({ env: { KUBEFN_HOME: '/srv/kubefn' }, homedir, readTokenFile: read });
    assert.equal(c.home, '/srv/kubefn');
    assert.deepEqual(pick(c), ['abc', 'file']);
  });

  it('ignores an empty token file', () => {
    const c = resolveConfig({ env: {}, homedir, readTokenFile: () => '  \n' });
    assert.deepEqual(pick(c), [undefined, 'none']);
  });
});

describe('resolveHome', () => {
  it('resolves a relative KUBEFN_HOME against the working directory', () => {
    assert.equal(resolveHome({ KUBEFN_HOME: 'state' }, homedir), path.resolve('state'));
  });
});

describe('normalizeGateway', () => {
  it('accepts host:port and keeps a path prefix', () => {
    assert.equal(normalizeGateway('localhost:9000'), 'http://localhost:9000');
    assert.equal(normalizeGateway('https://fn.example.com/kubefn/'), 'https://fn.example.com/kubefn');
  });

  it('rejects other schemes and garbage as usage errors', () => {
    for (const bad of ['ftp://x', 'http://', 'http://x/?a=1']) {
      assert.throws(() => normalizeGateway(bad), (e: { code?: string; exitCode?: number }) => e.code === 'USAGE' && e.exitCode === 2, bad);
    }
  });
});

function pick(c: { token: string | undefined; tokenSource: string }): [string | undefined, string] {
  return [c.token, c.tokenSource];
}
