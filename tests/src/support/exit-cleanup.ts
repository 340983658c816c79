// Processes the test support starts die with the test process, even when it ends without their
// close(): on process exit (normal end, process.exit(), an uncaught exception) the registered
// hooks run synchronously, newest first. SIGINT, SIGTERM and SIGHUP would kill the process without
// an 'exit' event, so a listener for each runs the hooks too; when it is the only listener it then
// removes itself and re-raises the signal, so the process still dies of it as it would have. When
// the program has listeners of its own, they decide what happens next (their process.exit() runs
// the hooks again, which is harmless: each hook runs once).

import { readFileSync } from 'node:fs';

const hooks: (() => void)[] = [];
let installed = false;

function runHooks(): void {
  for (const hook of hooks.splice(0).reverse()) {
    try {
      hook();
    } catch {
      // best effort: the rest still run
    }
  }
}

function install(): void {
  if (installed) return;
  installed = true;
  process.on('exit', runHooks);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const listener = (): void => {
      runHooks();
      if (process.listenerCount(signal) === 1) {
        process.removeListener(signal, listener);
        process.kill(process.pid, signal);
      }
    };
    process.on(signal, listener);
  }
}

/** Runs `hook` (synchronous, and quick: the process is exiting) when the process exits; the result unregisters it. */
export function onExit(hook: () => void): () => void {
  install();
  hooks.push(hook);
  return () => {
    const i = hooks.indexOf(hook);
    if (i >= 0) hooks.splice(i, 1);
  };
}

/** Whether `pid` still runs (a zombie does not: nothing reaps our children during an exit hook). */
export function runningSync(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * Synchronously: sends `signal` to each process, waits up to `graceMs` for them to go, SIGKILLs
 * the rest and waits for those too (up to 5 s).
 */
export function stopSync(pids: number[], signal: NodeJS.Signals = 'SIGTERM', graceMs = 5_000): void {
  const send = (pid: number, sig: NodeJS.Signals): void => {
    try {
      process.kill(pid, sig);
    } catch {
      // gone
    }
  };
  const wait = (ms: number): number[] => {
    let left = pids.filter(runningSync);
    for (const deadline = Date.now() + ms; left.length && Date.now() < deadline; left = left.filter(runningSync)) sleepSync(25);
    return left;
  };
  for (const pid of pids) send(pid, signal);
  const left = signal === 'SIGKILL' ? wait(5_000) : wait(graceMs);
  if (!left.length || signal === 'SIGKILL') return;
  for (const pid of left) send(pid, 'SIGKILL');
  pids = left;
  wait(5_000);
}
