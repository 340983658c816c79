import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { lockFileName, lockHome } from './home-lock.js';

describe('lockHome', () => {
  const homes: string[] = [];
  const newHome = async () => {
    const home = await mkdtemp(path.join(tmpdir(), 'kubefn-lock-'));
    homes.push(home);
    return home;
  };
  after(async () => {
    for (const home of homes) await rm(home, { recursive: true, force: true });
  });

  it('keeps a second owner off, naming the pid, until released', async () => {
    const home = await newHome();
    const lock = await lockHome(home);
    assert.match(await readFile(path.join(home, lockFileName), 'utf8'), new RegExp(`^${process.pid} \\d+\\n$`));
    await assert.rejects(lockHome(home), (err: { code: string; message: string; hint?: string }) => {
      assert.equal(err.code, 'START_FAILED');
      assert.match(err.message, new RegExp(`in use by another \`fn up\` \\(pid ${process.pid}\\)`));
      assert.match(err.hint ?? '', /--home or KUBEFN_HOME/);
      return true;
    });
    await lock.release();
    await assert.rejects(readFile(path.join(home, lockFileName)), { code: 'ENOENT' });
    const again = await lockHome(home);
    await again.release();
  });

  it('takes over the lock of an owner that is gone, and of a pid now owned by another process', async () => {
    const home = await newHome();
    const exited = spawnSync(process.execPath, ['-e', 'console.log(process.pid)'], { encoding: 'utf8' });
    const deadPid = Number(exited.stdout.trim());
    await writeFile(path.join(home, lockFileName), `${deadPid} 12345\n`);
    const lock = await lockHome(home);
    await lock.release();
    // This process's pid, but another start time: the pid was reused after its owner died.
    await writeFile(path.join(home, lockFileName), `${process.pid} 1\n`);
    const reused = await lockHome(home);
    assert.match(await readFile(path.join(home, lockFileName), 'utf8'), new RegExp(`^${process.pid} \\d+\\n$`));
    await reused.release();
  });
});
