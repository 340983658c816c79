// The process between `fn up` and its local nats-server: nats-server has no option to exit with
// its parent, so this small Node process runs it as a child and stops it when the IPC channel to
// `fn up` closes, which happens however `fn up` ends (SIGKILL included), the same signal the
// process driver's replicas use. Run as: node nats-supervisor.js <stopGraceMs> <nats-server> [args...]
//
// nats-server's stdout and stderr are this process's (pipes to `fn up`). This process exits with
// nats-server's exit code, or 128 + the signal number when a signal ended it.

import { spawn } from 'node:child_process';
import { constants } from 'node:os';

/** What the supervisor tells `fn up` over IPC. */
export interface SupervisorMessage {
  type: 'spawned';
  pid: number;
}

function main(argv: string[]): void {
  const [grace, bin, ...args] = argv;
  const graceMs = Number(grace);
  if (!process.send || !bin || !Number.isFinite(graceMs)) {
    process.stderr.write('usage: node nats-supervisor.js <stopGraceMs> <nats-server> [args...] (with an IPC channel)\n');
    process.exit(2);
  }
  const send = (message: SupervisorMessage): void => {
    if (process.connected) process.send?.(message);
  };
  const child = spawn(bin, args, { stdio: ['ignore', 'inherit', 'inherit'] });
  let stopping = false;
  const stop = (): void => {
    if (stopping || child.exitCode !== null || child.signalCode !== null) return;
    stopping = true;
    child.kill('SIGTERM');
    setTimeout(() => child.kill('SIGKILL'), graceMs).unref();
  };
  child.once('spawn', () => send({ type: 'spawned', pid: child.pid! }));
  child.once('error', (err) => {
    process.stderr.write(`cannot run ${bin}: ${err.message}\n`);
    process.exit(127);
  });
  child.once('exit', (code, signal) => process.exit(code ?? 128 + (signal ? constants.signals[signal] : 0)));
  // `fn up` went away, or asked us to stop (close() disconnects): either way nats-server goes.
  process.once('disconnect', stop);
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('SIGHUP', stop);
}

main(process.argv.slice(2));
