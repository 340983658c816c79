import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isKubefnError } from '@kubefn/platform';
import { credentialHelperFor, defaultConfigPaths, identityTokenUsername, loadCredentials } from './credentials.js';

const b64 = (s: string) => Buffer.from(s).toString('base64');

describe('loadCredentials', () => {
  let dir: string;
  let docker: string;
  let podman: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kubefn-creds-'));
    docker = join(dir, 'docker', 'config.json');
    podman = join(dir, 'run', 'containers', 'auth.json');
    await mkdir(join(dir, 'docker'));
    await mkdir(join(dir, 'run', 'containers'), { recursive: true });
    await writeFile(
      docker,
      JSON.stringify({
        auths: {
          'https://index.docker.io/v1/': { auth: b64('hubuser:hub:pass') },
          'ghcr.io': { username: 'octo', password: 'ghp_x' },
          'http://localhost:5000/v2/': { auth: b64('local:pw') },
          'id.example.com': { auth: b64('someone:'), identitytoken: 'refresh-me' },
          'helper.example.com': {},
        },
        credHelpers: { 'helper.example.com': 'pass' },
      }),
    );
    await writeFile(podman, JSON.stringify({ auths: { 'quay.io': { auth: b64('quayuser:quaypw') }, 'ghcr.io': { auth: b64('other:one') } } }));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const paths = () => defaultConfigPaths({ DOCKER_CONFIG: join(dir, 'docker'), XDG_RUNTIME_DIR: join(dir, 'run') }, '/nonexistent');

  it('reads $DOCKER_CONFIG/config.json, then ${XDG_RUNTIME_DIR}/containers/auth.json', () => {
    assert.deepEqual(paths(), [docker, podman]);
  });

  it('prefers $REGISTRY_AUTH_FILE to the runtime dir, and ~/.docker without $DOCKER_CONFIG', () => {
    assert.deepEqual(defaultConfigPaths({ REGISTRY_AUTH_FILE: '/x/auth.json', XDG_RUNTIME_DIR: '/run/user/1' }, '/home/u'), [
      '/home/u/.docker/config.json',
      '/x/auth.json',
    ]);
  });

  const cases: [string, { username: string; password: string } | undefined][] = [
    // The key is docker's old URL for Hub; the password keeps its own ":".
    ['docker.io', { username: 'hubuser', password: 'hub:pass' }],
    // docker's file comes first; podman's ghcr.io entry is not reached.
    ['ghcr.io', { username: 'octo', password: 'ghp_x' }],
    ['localhost:5000', { username: 'local', password: 'pw' }],
    ['quay.io', { username: 'quayuser', password: 'quaypw' }],
    ['id.example.com', { username: identityTokenUsername, password: 'refresh-me' }],
    ['helper.example.com', undefined],
    ['nowhere.example.com', undefined],
  ];
  for (const [registry, want] of cases) {
    it(`finds ${want ? `"${want.username}"` : 'nothing'} for ${registry}`, async () => {
      assert.deepEqual(await loadCredentials(registry, { configPaths: paths() }), want);
    });
  }

  it('names the credential helper that holds what it cannot read', async () => {
    assert.equal(await credentialHelperFor('helper.example.com', { configPaths: paths() }), 'pass');
    assert.equal(await credentialHelperFor('ghcr.io', { configPaths: paths() }), undefined);
  });

  it('skips missing files and says which file is broken', async () => {
    assert.equal(await loadCredentials('ghcr.io', { configPaths: [join(dir, 'missing.json')] }), undefined);
    const broken = join(dir, 'broken.json');
    await writeFile(broken, '{"auths": ');
    await assert.rejects(loadCredentials('ghcr.io', { configPaths: [broken] }), (err: unknown) => isKubefnError(err, 'BAD_REQUEST') && err.message.includes(broken));
  });
});
