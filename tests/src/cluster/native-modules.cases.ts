// A function with native code on a real cluster: examples/thumbnail (sharp, its addon and libvips)
// deployed by the real `fn deploy` through a gateway pod of kubefn installed from deploy/ (shared
// with platform-install.cases.ts), built here on the platform's base and pushed to its registry,
// pulled and run by the test cluster's node, and resizing a PNG made here through the gateway.
// One deploy and two calls: the image build is what costs, and podman-native.test.ts covers the
// rest of the build's output.

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { InstalledPlatform } from '../support/platform-install.js';
import { examplesDir } from '../support/podman.js';
import { png, pngSize } from '../support/png.js';

const timeout = 600_000;
const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

let sharedPlatform: () => Promise<InstalledPlatform>;

/** Registers the suite on kubefn as `platform()` installs it on the shared test cluster. */
export function nativeModuleCases(platform: () => Promise<InstalledPlatform>): void {
  sharedPlatform = platform;
  describe('a function with native modules on the cluster', { timeout }, suite);
}

function suite(): void {
  let p: InstalledPlatform;
  let gateway: string;
  let deployed = false;

  before(async () => {
    p = await sharedPlatform();
    gateway = (await p.gateways())[0]!;
  });

  const fn = (...args: string[]) => p.fn(['--gateway', gateway, ...args], { KUBEFN_TOKEN: p.token });

  after(async () => {
    if (deployed) await fn('delete', 'thumbnail');
  });

  it('fn deploy ships sharp in the image, and the pod resizes a PNG through the gateway', async () => {
    const out = JSON.parse(await fn('deploy', path.join(examplesDir, 'thumbnail'), ...p.insecure, '--json')) as {
      mode: string;
      image: string;
      natives: { name: string; platform: string }[];
    };
    deployed = true;
    assert.equal(out.mode, 'image');
    assert.ok(out.image.startsWith(`${p.registry.host}/thumbnail@sha256:`), out.image);
    assert.deepEqual(
      out.natives.map((n) => [n.name, n.platform]),
      [['sharp', 'linux-x64-glibc']],
      'the platform base is glibc, so the glibc addon ships',
    );

    const res = await fetch(`${gateway}/function/thumbnail?width=16`, { method: 'POST', body: png(64, 48) });
    const body = Buffer.from(await res.arrayBuffer());
    assert.equal(res.status, 200, body.toString());
    assert.equal(res.headers.get('content-type'), 'image/png');
    assert.ok(body.subarray(0, 8).equals(signature), `a PNG signature: ${body.subarray(0, 8).toString('hex')}`);
    assert.deepEqual(pngSize(body), [16, 12], 'IHDR: 16 wide, the aspect kept');

    const garbage = await fetch(`${gateway}/function/thumbnail`, { method: 'POST', body: 'not an image' });
    assert.equal(garbage.status, 422, 'sharp itself refused it: the addon loaded in the pod');
    assert.match(((await garbage.json()) as { error: string }).error, /not an image sharp can read/);
  });
}
