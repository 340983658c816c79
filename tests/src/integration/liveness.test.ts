// A handler that spins (`while (true) {}`) wedges its replica's event loop: on the embedded
// platform (process driver) the replica fails its liveness probe, leaves rotation, is killed
// and replaced, and says so in the logs and the status, while the other replica keeps serving.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { waitFor } from '@kubefn/platform/testing';
import { Api } from '../support/api.js';
import { spinningReplicaIsReplaced } from '../support/liveness-case.js';
import { fnBin, newHome, repoRoot, startPlatform, type RunningPlatform } from '../support/platform-process.js';

const exec = promisify(execFile);

const fixture = path.join(repoRoot, 'tests', 'fixtures', 'spin');

describe('liveness of running replicas (process driver)', () => {
  let platform: RunningPlatform;
  let api: Api;

  before(async () => {
    platform = await startPlatform(await newHome());
    api = new Api(platform.url, platform.token);
  });
  after(async () => {
    await platform?.stop();
  });

  it('kills and replaces a replica whose handler spins, within timeout + 5 s, while the other serves', { timeout: 180_000 }, async () => {
    const image = await api.upload(fixture, 'handler.js');
    await api.deploy({ name: 'spinner', image, timeout: '3s', scale: { min: 2, max: 2, initial: 2 } });
    await waitFor(async () => (await api.status('spinner')).availableReplicas === 2, { what: 'two ready replicas', timeoutMs: 30_000 });
    await spinningReplicaIsReplaced(api, 'spinner', 3000);
    // `fn describe` says why, and `fn logs` too.
    const cli = (...args: string[]) =>
      exec(process.execPath, [fnBin, '--gateway', platform.url, '--token', platform.token, ...args], { env: { ...process.env, KUBEFN_HOME: platform.home } });
    const described = (await cli('describe', 'spinner')).stdout;
    assert.match(described, /^Last error:\s+UNHEALTHY: replica spinner-\d+ was unresponsive: 3 liveness probe\(s\) in a row failed/m);
    assert.match(described, /^\s+hint: a handler kept the replica's event loop busy/m);
    assert.match((await cli('logs', 'spinner')).stdout, /replica spinner-\d+ was unresponsive: .*killed with SIGKILL/);
  });
});
