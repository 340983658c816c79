// The liveness scenario of liveness.test.ts on `fn up --driver podman`: the spinning replica is
// a container, removed at once (`podman rm --force --time 0`) and replaced.

import { execFile } from 'node:child_process';
import { cp, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { Api } from '../support/api.js';
import { spinningReplicaIsReplaced } from '../support/liveness-case.js';
import { fnBin, newHome, startPlatform, type RunningPlatform } from '../support/platform-process.js';
import { fixturesDir, podmanTestOptions } from '../support/podman.js';

const exec = promisify(execFile);
const timeout = 600_000;

describe('liveness of running replicas (podman driver)', () => {
  let platform: RunningPlatform;
  let api: Api;
  let env: Record<string, string>;

  before(async () => {
    env = (await podmanTestOptions()).env;
    platform = await startPlatform(await newHome(), { args: ['--driver', 'podman'], env, timeoutMs: 120_000 });
    api = new Api(platform.url, platform.token);
  });
  after(async () => {
    await platform?.stop();
  });

  it('removes and replaces a container whose handler spins, within timeout + 5 s, while the other serves', { timeout }, async () => {
    // A copy, so the build output lands outside the repository's fixtures.
    const dir = path.join(await mkdtemp(path.join(tmpdir(), 'kubefn-spin-')), 'spin');
    await cp(path.join(fixturesDir, 'spin'), dir, { recursive: true });
    // fn deploy returns once both replicas of the new image are ready.
    await exec(process.execPath, [fnBin, '--gateway', platform.url, '--token', platform.token, 'deploy', dir, '--json'], {
      env: { ...process.env, ...env, KUBEFN_HOME: platform.home },
      timeout,
    });
    await spinningReplicaIsReplaced(api, 'spinner', 3000);
  });
});
