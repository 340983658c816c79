// A lock file naming the process that holds it, for work two test processes must not do at once
// on one machine (building the Kubernetes binaries into the cache, running a kubelet node). It is
// written aside and hard-linked into place, so it never exists without its pid; a lock whose
// process has died is taken over (and the taker told, so it can sweep what that process left).

import { readFileSync, rmSync } from 'node:fs';
import { link, writeFile } from 'node:fs/promises';

export interface PidLockOptions {
  /** How long to wait for a live holder to let go, ms; 0 (default) gives up at once. */
  waitMs?: number;
  /** How often to look again while waiting, ms (default 1000). */
  pollMs?: number;
  /** Told once, when the lock is held by another live process and we wait for it. */
  onWait?: (holder: number) => void;
}

/** A live process holds the lock (past the wait, if any). */
export class PidLockBusyError extends Error {
  constructor(
    readonly file: string,
    readonly holder: number,
  ) {
    super(`${holder === process.pid ? 'this process' : `process ${holder}`} holds ${file}`);
  }
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/** The pid in the lock file: undefined when there is none, 0 when it names no process. */
export function lockHolder(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : 0;
  } catch {
    return undefined;
  }
}

/**
 * Takes the lock for this process; resolves whether it was taken over from a dead holder. Throws
 * PidLockBusyError when a live process holds it past `waitMs`, at once when this process does.
 */
export async function acquirePidLock(file: string, options: PidLockOptions = {}): Promise<{ stale: boolean }> {
  const deadline = Date.now() + (options.waitMs ?? 0);
  let told = false;
  let stale = false;
  const mine = `${file}.${process.pid}`;
  await writeFile(mine, `${process.pid}\n`);
  try {
    for (;;) {
      try {
        await link(mine, file);
        return { stale };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const holder = lockHolder(file);
      if (holder === undefined) continue; // just released
      if (holder === 0 || (holder !== process.pid && !alive(holder))) {
        stale = true;
        rmSync(file, { force: true });
        continue;
      }
      // This process's own holding does not end while it waits.
      if (holder === process.pid || Date.now() >= deadline) throw new PidLockBusyError(file, holder);
      if (!told) options.onWait?.(holder);
      told = true;
      await new Promise((r) => setTimeout(r, options.pollMs ?? 1_000));
    }
  } finally {
    rmSync(mine, { force: true });
  }
}

/** Lets go of the lock if this process holds it; synchronous, so exit hooks can call it. */
export function releasePidLock(file: string): void {
  if (lockHolder(file) === process.pid) rmSync(file, { force: true });
}
