// The stores under `fn up` check what they hold, through the real fn binary: an app corrupted on
// disk is found by the next `fn deploy` (which uploads it again), by a replica that fails on it
// and by the next `fn up` (the status says why), and apps no function uses are collected at start.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { waitFor } from '@kubefn/platform/testing';
import { Api } from '../support/api.js';
import { fnBin, newHome, startPlatform, type RunningPlatform } from '../support/platform-process.js';

const exec = promisify(execFile);
const timeout = 180_000;

describe('the app store checks what it holds (fn up)', () => {
  let platform: RunningPlatform;
  let api: Api;
  let home: string;
  let root: string;

  before(async () => {
    home = await newHome();
    // Replicas run from the store's directory: as root, isolation would run them from a copy.
    platform = await startPlatform(home, { args: ['--no-nats', '--no-isolation'] });
    api = new Api(platform.url, platform.token);
    root = await mkdtemp(path.join(tmpdir(), 'kubefn-store-'));
  });
  after(async () => {
    await platform?.stop();
  });

  const fn = async (...args: string[]) => {
    const env = { ...process.env, KUBEFN_HOME: platform.home, KUBEFN_GATEWAY: platform.url };
    try {
      const r = await exec(process.execPath, [fnBin, ...args], { env, timeout: 150_000 });
      return { code: 0, out: r.stdout + r.stderr };
    } catch (err) {
      const e = err as { code: number; stdout: string; stderr: string };
      return { code: e.code, out: e.stdout + e.stderr };
    }
  };
  /** A function directory whose handler answers `answer`, at zero when idle. */
  const writeFunction = async (name: string, answer: string) => {
    const dir = path.join(root, name);
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'fn.yaml'), [`name: ${name}`, 'handler: handler.js', 'scale:', '  min: 0', '  initial: 1', ''].join('\n'));
    await writeFile(path.join(dir, 'handler.js'), `export default () => '${answer}\\n';\n`);
    return dir;
  };
  /** `fn deploy --json`: whether it uploaded the app. */
  const deployed = async (dir: string) => {
    const r = await fn('deploy', dir, '--timeout', '60s', '--json');
    assert.equal(r.code, 0, r.out);
    return JSON.parse(r.out.slice(r.out.indexOf('{'))) as { uploaded: boolean };
  };
  /** The stored archive and unpacked bundle of a deployed function's app. */
  const appFiles = async (name: string) => {
    const image = (await api.status(name)).image;
    const hex = /^app:sha256:([0-9a-f]{64})$/.exec(image)?.[1];
    assert.ok(hex, image);
    return { archive: path.join(home, 'apps', 'archives', `${hex}.tar`), bundle: path.join(home, 'apps', 'run', hex, 'fn.cjs') };
  };
  /** The same, from the spec saved in `home` (while the platform is stopped). */
  const appFilesIn = async (home: string, name: string) => {
    const saved = JSON.parse(await readFile(path.join(home, 'functions', `${name}.json`), 'utf8')) as { spec: { image: string } };
    const hex = saved.spec.image.slice('app:sha256:'.length);
    return { archive: path.join(home, 'apps', 'archives', `${hex}.tar`), bundle: path.join(home, 'apps', 'run', hex, 'fn.cjs') };
  };
  /** Flips bytes in the archive and replaces the unpacked bundle with something that does not parse. */
  const corrupt = async (files: { archive: string; bundle: string }) => {
    const bytes = await readFile(files.archive);
    bytes[512] = bytes[512]! ^ 0xff;
    await writeFile(files.archive, bytes);
    await writeFile(files.bundle, 'this is not javascript {{{\n');
  };
  const scaledTo = async (name: string, n: number) => {
    assert.equal((await fn('scale', name, String(n))).code, 0);
    if (n === 0) await waitFor(async () => (await api.status(name)).availableReplicas === 0, { what: `${name} at zero`, timeoutMs: 60_000 });
  };
  const call = async (name: string) => {
    const res = await fetch(`${platform.url}/function/${name}`, { signal: AbortSignal.timeout(60_000) });
    return { status: res.status, body: await res.text() };
  };

  it('a redeploy finds the corrupted app, uploads it again, and a new replica runs the right code', { timeout }, async () => {
    const dir = await writeFunction('healed', 'good');
    await deployed(dir);
    await corrupt(await appFiles('healed'));

    // Before, the gateway said it had the app, the upload was skipped and the corruption stayed.
    assert.equal((await deployed(dir)).uploaded, true);
    assert.match(platform.output.join('\n'), /the stored app sha256:[0-9a-f]{64} failed its digest check/);
    // A replica started now runs from the store, not from a process started before the corruption.
    await scaledTo('healed', 0);
    assert.deepEqual(await call('healed'), { status: 200, body: 'good\n' });
  });

  it('a corrupted app with no redeploy: the status says the stored app failed its digest check; fn deploy brings it back', { timeout }, async () => {
    const dir = await writeFunction('broken', 'fixed');
    await deployed(dir);
    await scaledTo('broken', 0);
    await corrupt(await appFiles('broken'));

    await scaledTo('broken', 1);
    await waitFor(async () => (await api.status('broken')).lastError?.code === 'CORRUPT', { what: 'lastError CORRUPT', timeoutMs: 60_000 });
    const status = await (await api.call('GET', '/system/function/broken')).json() as { lastError: { code: string; message: string; hint: string } };
    assert.match(status.lastError.message, /the stored app sha256:[0-9a-f]{64} failed its digest check/);
    assert.match(status.lastError.hint, /`fn deploy` uploads it again/);
    const described = await fn('describe', 'broken');
    assert.match(described.out, /^Last error:\s+CORRUPT: .*failed its digest check/m);
    assert.match((await fn('logs', 'broken')).out, /failed its digest check/);

    // The same spec deployed again: the upload replaces the bad app and the replicas retry now.
    assert.equal((await deployed(dir)).uploaded, true);
    assert.deepEqual(await call('broken'), { status: 200, body: 'fixed\n' });
    assert.equal((await api.status('broken')).lastError, undefined);
  });

  it('a corrupted app found by the next fn up: the function stays listed with the reason, and fn deploy brings it back', { timeout }, async () => {
    const dir = await writeFunction('restarted', 'back');
    await deployed(dir);
    await platform.stop();
    await corrupt(await appFilesIn(home, 'restarted'));
    // As root this one isolates: every replica runs from a copy made when it is prepared.
    platform = await startPlatform(home, { args: ['--no-nats'] });
    api = new Api(platform.url, platform.token);

    const status = await api.status('restarted');
    assert.equal(status.lastError?.code, 'CORRUPT', JSON.stringify(status));
    assert.match(status.lastError!.message, /the stored app sha256:[0-9a-f]{64} failed its digest check/);
    assert.equal(status.availableReplicas, 0);
    assert.match((await fn('describe', 'restarted')).out, /^Last error:\s+CORRUPT: .*failed its digest check/m);

    assert.equal((await deployed(dir)).uploaded, true);
    assert.deepEqual(await call('restarted'), { status: 200, body: 'back\n' });
  });
});

describe('fn up collects the apps no function uses', () => {
  it('at start removes an old unreferenced app, and keeps a referenced one and a fresh unreferenced one', { timeout }, async () => {
    const home = await newHome();
    let platform = await startPlatform(home, { args: ['--no-nats'] });
    try {
      const api = new Api(platform.url, platform.token);
      const dir = await mkdtemp(path.join(tmpdir(), 'kubefn-gc-'));
      await writeFile(path.join(dir, 'handler.js'), "export default () => 'kept\\n';\n");
      const image = await api.upload(dir, 'handler.js');
      await api.deploy({ name: 'kept', image });
      const put = async (text: string) => {
        const bytes = Buffer.from(text);
        const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
        const res = await api.call('PUT', `/system/apps/${digest}`, undefined, bytes);
        assert.equal(res.status, 201, await res.text());
        return path.join(home, 'apps', 'archives', `${digest.slice('sha256:'.length)}.tar`);
      };
      const old = await put('an upload whose deploy never came');
      const fresh = await put('an upload whose deploy is on its way');
      const kept = path.join(home, 'apps', 'archives', `${image.slice('app:sha256:'.length)}.tar`);
      await platform.stop();

      const twoHoursAgo = new Date(Date.now() - 2 * 3600_000);
      for (const file of [old, kept]) await utimes(file, twoHoursAgo, twoHoursAgo);
      platform = await startPlatform(home, { args: ['--no-nats'] });
      await assert.rejects(stat(old), /ENOENT/, 'the old unreferenced app is removed');
      assert.ok((await stat(fresh)).isFile(), 'an unreferenced app uploaded a moment ago is kept');
      assert.ok((await stat(kept)).isFile(), 'the app a function runs is kept');
      assert.ok((await readdir(path.join(home, 'apps', 'run'))).includes(image.slice('app:sha256:'.length)));
      assert.match(platform.output.join('\n'), /removed bundles and apps no function uses/);
      const res = await fetch(`${platform.url}/function/kept`, { signal: AbortSignal.timeout(60_000) });
      assert.equal(await res.text(), 'kept\n');
    } finally {
      await platform.stop();
    }
  });
});
