// Whether a process is still there, for tests that watch replicas and runtimes come and go.

import { readFileSync } from 'node:fs';

/** Whether `pid` runs: a zombie (killed, not yet reaped: PID 1 in some containers never reaps) counts as gone. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  let stat = '';
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    // not Linux, or gone meanwhile
  }
  return !/^\d+ \(.*\) Z/.test(stat);
}
