// A function with native code: examples/thumbnail (sharp, with its @img/sharp-linux-x64 addon
// and libvips) resizing a PNG made here, in a real container (built on the base made from this
// machine's node, pushed to a real registry, run by podman) and on `fn up`'s process driver
// (deployed with `fn deploy`, which ships sharp in the app beside the bundle).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { buildFunctionImage, parseReference, pushFunctionImage, RegistryClient } from '@kubefn/builder';
import { startRegistry, type TestRegistry } from '@kubefn/builder/testing';
import { Podman } from '@kubefn/platform';
import { waitFor } from '@kubefn/platform/testing';
import { examplesDir, podmanTestOptions, pushTestBase, testCacheDir } from '../support/podman.js';
import { fnBin, newHome, startPlatform } from '../support/platform-process.js';
import { png, pngSize } from '../support/png.js';

const timeout = 300_000;

describe('native modules in images', () => {
  let registry: TestRegistry;
  let client: RegistryClient;
  let podman: Podman;

  before(async () => {
    registry = await startRegistry();
    client = new RegistryClient();
    podman = new Podman(await podmanTestOptions());
  });

  after(async () => {
    await registry?.close();
  });

  it('ships sharp with its platform packages, and the container resizes an image', { timeout }, async () => {
    // The base by registry reference, as a cluster names it: its history says it is glibc.
    const base = await pushTestBase(client, registry.host);
    const progress: string[] = [];
    const fi = await buildFunctionImage({
      dir: path.join(examplesDir, 'thumbnail'),
      handler: 'handler.js',
      name: 'thumbnail',
      base,
      client,
      cacheDir: testCacheDir,
      onProgress: (m) => progress.push(m),
    });
    assert.deepEqual(
      fi.bundle.natives.map((n) => [n.name, n.platform]),
      [['sharp', 'linux-x64-glibc']],
    );
    const shipped = fi.bundle.files.map((f) => f.path);
    assert.ok(shipped.some((p) => /^node_modules\/@img\/sharp-linux-x64\/lib\/.*\.node$/.test(p)), 'the addon ships');
    assert.ok(shipped.some((p) => /^node_modules\/@img\/sharp-libvips-linux-x64\/lib\/libvips-cpp\.so/.test(p)), 'libvips ships');
    assert.ok(shipped.includes('node_modules/sharp/package.json'));
    assert.ok(progress.some((m) => /native modules: sharp@\S+ \(linux-x64-glibc\)/.test(m)), progress.join('\n'));

    const report = await pushFunctionImage(client, fi, parseReference(`${registry.host}/e2e/thumbnail:latest`));
    await podman.check(['pull', '--quiet', '--tls-verify=false', report.ref]);
    const name = `kubefn-native-test-${process.pid}`;
    await podman.check(['run', '--detach', '--pull', 'never', '--name', name, '--publish', '127.0.0.1::8080', report.ref]);
    try {
      const port = (await podman.check(['port', name, '8080/tcp'])).trim().split(':').pop();
      const res = await waitFor(
        async () => {
          const r = await fetch(`http://127.0.0.1:${port}/?width=16`, { method: 'POST', body: png(64, 48) }).catch(() => undefined);
          return r ?? false;
        },
        { timeoutMs: 60_000, what: `the thumbnail container answering on port ${port}` },
      );
      const body = Buffer.from(await res.arrayBuffer());
      assert.equal(res.status, 200, body.toString());
      assert.equal(res.headers.get('content-type'), 'image/png');
      assert.equal(body.subarray(1, 4).toString('latin1'), 'PNG');
      assert.deepEqual(pngSize(body), [16, 12], 'resized to 16 wide, aspect kept');

      const bad = await fetch(`http://127.0.0.1:${port}/`, { method: 'POST', body: 'not an image' });
      assert.equal(bad.status, 422, 'sharp itself answered: it loaded');
    } finally {
      await podman.run(['rm', '--force', '--time', '0', name]);
    }
  });
});

describe('native modules on the process driver', () => {
  it('fn deploy ships sharp in the app, and the replica resizes an image', { timeout }, async () => {
    const home = await newHome();
    const platform = await startPlatform(home, { args: ['--no-nats'] });
    try {
      const env = { ...process.env, KUBEFN_GATEWAY: platform.url, KUBEFN_TOKEN: platform.token, KUBEFN_HOME: home };
      const deployed = await promisify(execFile)(process.execPath, [fnBin, 'deploy', path.join(examplesDir, 'thumbnail')], { env });
      assert.match(deployed.stderr, /native: sharp@[\d.]+ for linux-x64-glibc ships beside the bundle/);
      const res = await fetch(`${platform.url}/function/thumbnail?width=16`, { method: 'POST', body: png(64, 48) });
      assert.equal(res.status, 200, await res.clone().text());
      const out = Buffer.from(await res.arrayBuffer());
      assert.equal(out.subarray(1, 4).toString('latin1'), 'PNG');
      assert.deepEqual(pngSize(out), [16, 12], 'IHDR width and height');
      const garbage = await fetch(`${platform.url}/function/thumbnail`, { method: 'POST', body: 'not an image' });
      assert.equal(garbage.status, 422);
    } finally {
      await platform.stop();
    }
  });
});
