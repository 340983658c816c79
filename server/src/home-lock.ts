// One `fn up` per state directory: two would restore, reconcile and garbage-collect the same
// functions, bundles and token. `<home>/fn-up.lock` holds the owner's pid and its start time
// (from /proc, so a pid reused by another process after a crash is not taken for the owner).
// A lock whose owner is gone (SIGKILL, a crash) is taken over.

import { open, readFile, unlink } from 'node:fs/promises';
import { readFileSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import { KubefnError } from '@kubefn/platform';

export interface HomeLock {
  readonly file: string;
  release(): Promise<void>;
}

export const lockFileName = 'fn-up.lock';

/** Takes `<home>/fn-up.lock`, or throws START_FAILED naming the pid that holds it. */
export async function lockHome(home: string): Promise<HomeLock> {
  const file = path.join(home, lockFileName);
  const mine = owner(process.pid);
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const handle = await open(file, 'wx', 0o600);
      try {
        await handle.writeFile(mine);
      } finally {
        await handle.close();
      }
      let released = false;
      const releaseSync = () => {
        if (released) return;
        released = true;
        try {
          if (readFileSync(file, 'utf8') === mine) unlinkSync(file);
        } catch {
          // Gone already.
        }
      };
      process.once('exit', releaseSync);
      return {
        file,
        release: async () => {
          process.removeListener('exit', releaseSync);
          releaseSync();
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const held = await readFile(file, 'utf8').catch(() => '');
    const pid = Number(held.split(' ')[0]);
    if (Number.isSafeInteger(pid) && pid > 0 && held === owner(pid)) {
      throw new KubefnError('START_FAILED', `the state directory ${home} is in use by another \`fn up\` (pid ${pid})`, {
        hint: `stop that one, or give this one a state directory of its own (--home or KUBEFN_HOME)`,
      });
    }
    // Its owner is gone: take it over (unlink, then create again, so only one of two racing wins).
    await unlink(file).catch(() => {});
  }
  throw new KubefnError('START_FAILED', `could not take the lock ${file}`, { hint: 'is another `fn up` starting on the same state directory?' });
}

/** "pid start-time\n", the start time from /proc/<pid>/stat; just the pid where /proc is not there. */
function owner(pid: number): string {
  let started = '';
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 22, counted after the command name in parentheses (which may hold spaces).
    started = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? '';
  } catch {
    if (!isRunning(pid)) return '';
  }
  return `${pid} ${started}\n`;
}

/** Whether a process with this pid exists (ours to signal or not). */
export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
