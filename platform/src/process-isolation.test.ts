import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { canIsolate, ProcessIsolation } from './process-isolation.js';

describe('ProcessIsolation', { skip: canIsolate() ? false : 'needs root' }, () => {
  it('gives each function its own uid, kept across restarts, and a private copy of its app, replaced on redeploy', async () => {
    const base = await mkdtemp(path.join(tmpdir(), 'kubefn-isolation-'));
    const options = { runDir: path.join(base, 'run'), usersFile: path.join(base, 'users.json'), nodePath: process.execPath };
    const app = async (name: string, text: string) => {
      const dir = path.join(base, 'apps', name);
      await mkdir(path.join(dir, 'lib'), { recursive: true });
      await writeFile(path.join(dir, 'fn.cjs'), text);
      await writeFile(path.join(dir, 'lib', 'data.txt'), text);
      return { file: path.join(dir, 'fn.cjs'), cwd: dir };
    };
    const isolation = await ProcessIsolation.open(options);
    const a1 = await isolation.place('a', await app('one', 'v1'));
    const a1Again = await isolation.place('a', await app('one', 'v1'));
    const b = await isolation.place('b', await app('one', 'v1'));
    assert.equal(a1Again.cwd, a1.cwd, 'an unchanged app is not copied again');
    assert.notEqual(a1.uid, 0);
    assert.notEqual(a1.uid, b.uid, 'one uid per function, even for the same app');
    assert.notEqual(path.dirname(a1.cwd), path.dirname(b.cwd));
    const root = await stat(path.dirname(a1.cwd));
    assert.equal(root.uid, a1.uid);
    assert.equal(root.mode & 0o777, 0o700, 'the private directory is closed to everyone else');
    assert.equal((await stat(path.join(a1.cwd, 'lib', 'data.txt'))).uid, a1.uid, 'the copy is the function user\'s');
    assert.equal((await stat(options.runDir)).mode & 0o777, 0o711, 'nobody can list the run directory');

    // Two redeploys: the current copy and the one before stay (replicas still draining run from it).
    const a2 = await isolation.place('a', await app('two', 'v2'));
    const a3 = await isolation.place('a', await app('three', 'v3'));
    const copies = (await readdir(path.dirname(a3.cwd))).filter((e) => e.startsWith('app-'));
    assert.deepEqual(copies.sort(), [path.basename(a2.cwd), path.basename(a3.cwd)].sort());

    // A restart keeps the uids, and clears what the last run left in the run directory.
    const again = await ProcessIsolation.open(options);
    assert.equal(await again.userOf('a'), a1.uid);
    assert.equal(await again.userOf('b'), b.uid);
    assert.deepEqual(await readdir(options.runDir), []);
    await again.forget('b');
    assert.equal(await again.userOf('c'), b.uid, 'a removed function frees its uid');
    await again.close();
  });

  it('refuses a node binary other users cannot reach', async () => {
    const base = await mkdtemp(path.join(tmpdir(), 'kubefn-isolation-'));
    const hidden = path.join(base, 'closed');
    await mkdir(hidden, { mode: 0o700 });
    await writeFile(path.join(hidden, 'node'), '', { mode: 0o755 });
    await assert.rejects(
      ProcessIsolation.open({ runDir: path.join(base, 'run'), usersFile: path.join(base, 'users.json'), nodePath: path.join(hidden, 'node') }),
      /closed to other users/,
    );
  });
});
