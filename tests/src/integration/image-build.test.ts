// Function images end to end on real parts: built without a daemon, pushed to a real registry
// (anonymous and with a login), pulled and run by podman, loaded from an archive, reproducible.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { buildFunctionImage, parseReference, pushFunctionImage, RegistryClient, loadCredentials } from '@kubefn/builder';
import { startRegistry, type TestRegistry } from '@kubefn/builder/testing';
import { Podman } from '@kubefn/platform';
import { waitFor } from '@kubefn/platform/testing';
import { buildAndPush, examplesDir, podmanTestOptions, pushTestBase, testCacheDir } from '../support/podman.js';
import { fnBin } from '../support/platform-process.js';

const exec = promisify(execFile);
const timeout = 300_000;

describe('function images', () => {
  let registry: TestRegistry;
  let client: RegistryClient;
  let base: string;
  let podman: Podman;
  let dir: string;

  before(async () => {
    registry = await startRegistry();
    client = new RegistryClient();
    base = await pushTestBase(client, registry.host);
    podman = new Podman(await podmanTestOptions());
    dir = await mkdtemp(path.join(tmpdir(), 'kubefn-image-test-'));
  });

  after(async () => {
    await registry?.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** Runs `image` with its ports published and returns what GET / answers. */
  async function runAndCall(image: string, env: Record<string, string> = {}): Promise<string> {
    const name = `kubefn-image-test-${process.pid}-${Math.random().toString(16).slice(2, 8)}`;
    const envFlags = Object.entries(env).flatMap(([k, v]) => ['--env', `${k}=${v}`]);
    const out = await podman.check(['run', '--detach', '--pull', 'never', '--name', name, '--publish', '127.0.0.1::8080', ...envFlags, image]);
    assert.ok(out.trim(), 'podman run printed a container id');
    try {
      const port = (await podman.check(['port', name, '8080/tcp'])).trim().split(':').pop();
      return await waitFor(async () => {
        const res = await fetch(`http://127.0.0.1:${port}/?name=image`);
        return res.status === 200 ? res.text() : false;
      }, { timeoutMs: 60_000, what: `${image} answering on port ${port}` });
    } finally {
      await podman.run(['rm', '--force', '--time', '0', name]);
    }
  }

  it('build -> push -> podman pull -> podman run answers with the function', { timeout }, async () => {
    const report = await buildAndPush(client, { dir: path.join(examplesDir, 'hello'), name: 'hello', base, registry: registry.host, repository: 'e2e/hello' });
    assert.match(report.ref, new RegExp(`^${registry.host}/e2e/hello@sha256:[0-9a-f]{64}$`));
    assert.equal(report.blobs.mounted, 1, 'the base layer is mounted from kubefn/node-base, not uploaded again');
    assert.equal(report.blobs.uploaded, 2, 'function layer and config');
    await podman.check(['pull', '--quiet', '--tls-verify=false', report.ref]);
    const body = await runAndCall(report.ref);
    assert.match(body, /Hello, image!/);
  });

  it('two builds give the same digest, and a rebuild pushes nothing', { timeout }, async () => {
    const options = { dir: path.join(examplesDir, 'json-api'), name: 'json-api', base, registry: registry.host, repository: 'e2e/json-api' };
    const first = await buildAndPush(client, options);
    const second = await buildAndPush(client, options);
    assert.equal(second.digest, first.digest);
    assert.ok(first.bytesSent > 0);
    assert.equal(second.bytesSent, 0);
    assert.equal(second.manifestPushed, false);
    assert.equal(second.blobs.uploaded + second.blobs.mounted, 0);
  });

  it('fn build --output writes an archive podman load accepts, with the same image', { timeout }, async () => {
    const file = path.join(dir, 'ts-greeter.tar');
    const env = { ...process.env, KUBEFN_HOME: path.join(dir, 'home') };
    const { stdout } = await exec(process.execPath, [fnBin, 'build', path.join(examplesDir, 'ts-greeter'), '--output', file, '--base', base, '--json'], { env, timeout });
    const built = JSON.parse(stdout) as { digest: string; output: string; layerBytes: number };
    assert.equal(built.output, file);
    const loaded = await podman.check(['load', '--input', file]);
    assert.match(loaded, /localhost\/kubefn\/ts-greeter:latest/);
    // podman names an image by its config digest; the archive's manifest names the same config.
    const fi = await buildFunctionImage({ dir: path.join(examplesDir, 'ts-greeter'), handler: 'handler.ts', name: 'ts-greeter', base, client, cacheDir: testCacheDir });
    assert.equal(fi.image.manifestDescriptor.digest, built.digest, 'the CLI and the library build the same image');
    const id = (await podman.check(['image', 'inspect', '--format', '{{.Id}}', 'localhost/kubefn/ts-greeter:latest'])).trim();
    assert.equal(`sha256:${id}`, fi.image.configDescriptor.digest);
    assert.match(await runAndCall('localhost/kubefn/ts-greeter:latest'), /image/);
    await podman.run(['rmi', '--force', 'localhost/kubefn/ts-greeter:latest']);
  });

  it('ships the assets fn.yaml declares next to the bundle; the handler reads them at run time', { timeout }, async () => {
    const fnDir = path.join(dir, 'with-assets');
    await mkdir(path.join(fnDir, 'public', 'css'), { recursive: true });
    await writeFile(path.join(fnDir, 'handler.js'), [
      "import { readFile } from 'node:fs/promises';",
      "export default async () => (await readFile(new URL('./data/words.txt', import.meta.url), 'utf8')) + (await readFile(new URL('./public/css/site.css', import.meta.url), 'utf8'));",
      '',
    ].join('\n'));
    await mkdir(path.join(fnDir, 'data'));
    await writeFile(path.join(fnDir, 'data', 'words.txt'), 'alpha beta\n');
    await writeFile(path.join(fnDir, 'public', 'css', 'site.css'), 'body{}\n');
    const fi = await buildFunctionImage({ dir: fnDir, handler: 'handler.js', name: 'with-assets', base, assets: ['data/words.txt', 'public/'], client, cacheDir: testCacheDir });
    const report = await pushFunctionImage(client, fi, parseReference(`${registry.host}/e2e/with-assets:latest`));
    await podman.check(['pull', '--quiet', '--tls-verify=false', report.ref]);
    assert.equal(await runAndCall(report.ref), 'alpha beta\nbody{}\n');

    await symlink('/etc', path.join(fnDir, 'public', 'etc'));
    await assert.rejects(
      buildFunctionImage({ dir: fnDir, handler: 'handler.js', name: 'with-assets', base, assets: ['public'], client, cacheDir: testCacheDir }),
      (err: { code?: string; message?: string }) => err.code === 'BUILD_FAILED' && /outside the function directory/.test(err.message ?? ''),
    );
  });

  it('pushes to a registry that wants a login, with credentials from docker config.json', { timeout }, async () => {
    const secured = await startRegistry({ auth: 'basic', users: { ada: 's3cret' } });
    try {
      const config = path.join(dir, 'docker');
      await mkdir(config, { recursive: true });
      await writeFile(path.join(config, 'config.json'), JSON.stringify({ auths: { [secured.host]: { auth: Buffer.from('ada:s3cret').toString('base64') } } }));
      const withLogin = new RegistryClient({ credentials: (r) => loadCredentials(r, { configPaths: [path.join(config, 'config.json')] }) });
      const fi = await buildFunctionImage({ dir: path.join(examplesDir, 'hello'), handler: 'handler.js', name: 'hello', base, client, cacheDir: testCacheDir });
      // The base lives in the other registry: its layer is copied across, not mounted.
      const report = await pushFunctionImage(withLogin, fi, parseReference(`${secured.host}/private/hello:v1`));
      assert.equal(report.blobs.mounted, 0);
      assert.equal(report.blobs.uploaded, 3, 'base layer, function layer, config');
      assert.ok(report.bytesSent > fi.layer.blob.length, 'the base layer was sent too');
      const back = await withLogin.getManifest(parseReference(`${secured.host}/private/hello:v1`));
      assert.equal(back.descriptor.digest, report.digest);
      await assert.rejects(pushFunctionImage(new RegistryClient(), fi, parseReference(`${secured.host}/private/hello:v2`)), { code: 'UNAUTHORIZED' });
    } finally {
      await secured.close();
    }
  });
});
