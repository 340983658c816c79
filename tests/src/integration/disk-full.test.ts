// A full disk under `fn up`: its state directory on a small tmpfs, filled up. An upload then gets
// 507 NO_SPACE with a hint (not an opaque 500), the log names the file and the cause, and once
// space is freed the same upload and deploy work: nothing was left half-written in the way.
// Needs root to mount a tmpfs; skipped where the machine does not allow one.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { isKubefnError } from '@kubefn/platform';
import { waitFor } from '@kubefn/platform/testing';
import { Api } from '../support/api.js';
import { repoRoot, startPlatform, type RunningPlatform } from '../support/platform-process.js';

const run = promisify(execFile);
const fixture = path.join(repoRoot, 'tests', 'fixtures', 'e2e');

/** Writes zeros to `file` until the disk says ENOSPC. */
async function fill(file: string): Promise<void> {
  const handle = await open(file, 'w');
  const chunk = Buffer.alloc(64 * 1024);
  try {
    for (;;) await handle.write(chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    await handle.close().catch(() => {});
  }
}

describe('fn up on a full disk', () => {
  let mountPoint: string;
  let mounted = false;
  let platform: RunningPlatform | undefined;

  before(async () => {
    mountPoint = await mkdtemp(path.join(tmpdir(), 'kubefn-full-'));
    mounted = await run('mount', ['-t', 'tmpfs', '-o', 'size=16m', 'tmpfs', mountPoint]).then(() => true, () => false);
  });
  after(async () => {
    await platform?.stop();
    if (mounted) await run('umount', [mountPoint]).catch(() => {});
    await rm(mountPoint, { recursive: true, force: true });
  });

  it('answers 507 NO_SPACE with a hint, logs the file, and works again once space is freed', { timeout: 120_000 }, async (t) => {
    if (!mounted) return t.skip('this machine does not allow a tmpfs mount');
    const home = path.join(mountPoint, 'home');
    platform = await startPlatform(home, { args: ['--no-nats'] });
    const api = new Api(platform.url, platform.token);
    const filler = path.join(mountPoint, 'filler');
    await fill(filler);

    await assert.rejects(api.upload(fixture, 'handler.js'), (err: Error) => {
      assert.ok(isKubefnError(err, 'NO_SPACE'), `${err.name}: ${err.message}`);
      assert.match((err as Error & { hint?: string }).hint ?? '', /free space/);
      return true;
    });
    const running = platform;
    await waitFor(() => running.output.some((l) => /ENOSPC/.test(l) && l.includes(home)), { what: 'a log line naming ENOSPC and the file', timeoutMs: 10_000 });

    await rm(filler);
    const image = await api.upload(fixture, 'handler.js');
    await api.deploy({ name: 'after-full', image, scale: { min: 1 } });
    const answered = await fetch(`${platform.url}/function/after-full`);
    assert.equal(answered.status, 200);
  });
});
