// What the podman driver warns about at deploy when podman's containers get no cgroup controller
// for a limit, against a stand-in `podman` that answers `podman info` as a given machine would.

import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { PodmanDriver } from './podman-driver.js';
import { parseFunctionSpec } from './spec.js';

const root = mkdtempSync(path.join(os.tmpdir(), 'kubefn-podman-limits-'));

/** A `podman` that has every image, runs nothing, and answers `info` with `controllers` (or fails). */
function fakePodman(name: string, controllers: string | undefined): string {
  const file = path.join(root, name);
  const info = controllers === undefined ? 'echo "cannot connect" >&2; exit 125' : `echo '${controllers}'`;
  writeFileSync(file, `#!/bin/sh\ncase "$1" in\n  info) ${info} ;;\n  version) echo 5.0.0 ;;\n  *) exit 0 ;;\nesac\n`);
  chmodSync(file, 0o755);
  return file;
}

async function warningsOn(controllers: string | undefined, resources: { memory?: string; cpu?: string }): Promise<string[] | undefined> {
  const driver = await PodmanDriver.open({ path: fakePodman(`podman-${Math.random().toString(36).slice(2)}`, controllers), owner: 'test' });
  try {
    const status = await driver.deploy(parseFunctionSpec({ name: 'hog', image: 'registry.example/hog:1', resources, scale: { initial: 0 } }));
    return status.warnings;
  } finally {
    await driver.close();
  }
}

describe('podman driver limit warnings', () => {
  after(() => rmSync(root, { recursive: true, force: true }));

  it('has none where containers get the memory and cpu controllers', async () => {
    assert.equal(await warningsOn('["cpuset","cpu","memory","pids"]', { memory: '128Mi', cpu: '500m' }), undefined);
  });

  it('warns about each limit whose controller containers do not get', async () => {
    assert.deepEqual(await warningsOn('["cpu","pids"]', { memory: '128Mi', cpu: '500m' }), [
      'resources.memory 128Mi is not enforced by podman on this machine: its containers get no memory cgroup controller (podman info lists cpu, pids)',
    ]);
    assert.deepEqual(await warningsOn('[]', { cpu: '2' }), [
      'resources.cpu 2 is not enforced by podman on this machine: its containers get no cpu cgroup controller (podman info lists none)',
    ]);
  });

  it('says it cannot tell when podman info fails', async () => {
    assert.deepEqual(await warningsOn(undefined, { memory: '1Gi' }), [
      'resources.memory 1Gi may not be enforced: podman info did not say which cgroup controllers its containers get',
    ]);
  });

  it('does not ask podman without limits', async () => {
    assert.equal(await warningsOn(undefined, {}), undefined);
  });
});
