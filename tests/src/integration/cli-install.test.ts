// `fn` installed the npm way, outside the checkout: from the tarball `npm run pack:cli` writes
// (self-contained: installed with --offline, so nothing may come from a registry) and as a link
// to the checkout (`npm install -g ./cli`), each into a temporary global prefix. The installed
// `fn` then scaffolds and bundles a function, which needs the bundled builder, runtime and esbuild.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { repoRoot } from '../support/platform-process.js';

const exec = promisify(execFile);
let work: string;

before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'kubefn-cli-install-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

/** Installs `what` into a fresh global prefix and returns the path of its `fn`. */
async function installGlobally(what: string, extra: string[] = []): Promise<string> {
  const prefix = await mkdtemp(path.join(work, 'prefix-'));
  await exec('npm', ['install', '-g', '--prefix', prefix, '--no-audit', '--no-fund', ...extra, what], { cwd: work, timeout: 300_000, maxBuffer: 16 * 1024 * 1024 });
  return path.join(prefix, 'bin', 'fn');
}

/** Runs the installed `fn` outside the checkout: init a function, bundle it. */
async function initAndBuild(fn: string, name: string): Promise<void> {
  const env = { ...process.env, KUBEFN_HOME: path.join(work, `home-${name}`) };
  await exec(fn, ['init', name, '--dir', path.join(work, name)], { cwd: work, env });
  const { stdout } = await exec(fn, ['build', '--json', path.join(work, name)], { cwd: work, env });
  const built = JSON.parse(stdout) as { name: string; bytes: number; digest: string };
  assert.equal(built.name, name);
  assert.ok(built.bytes > 0);
  assert.match(built.digest, /^sha256:[0-9a-f]{64}$/);
}

describe('fn installed with npm install -g', () => {
  it('from the tarball npm run pack:cli writes, offline', { timeout: 600_000 }, async () => {
    const out = path.join(work, 'pack');
    await exec(process.execPath, [path.join(repoRoot, 'cli', 'dist', 'pack-cli.js'), out], { timeout: 300_000 });
    const [tarball] = await readdir(out);
    assert.match(tarball ?? '', /^kubefn-cli-.*\.tgz$/);
    const fn = await installGlobally(path.join(out, tarball!), ['--offline']);
    const { stdout } = await exec(fn, ['--help'], { cwd: work });
    assert.match(stdout, /Getting started:/);
    await initAndBuild(fn, 'packed');
  });

  it('from the checkout (npm install -g ./cli)', { timeout: 300_000 }, async () => {
    const fn = await installGlobally(path.join(repoRoot, 'cli'));
    await initAndBuild(fn, 'linked');
  });
});
