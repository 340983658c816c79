// A real nats-server (Debian's) on a free loopback port for a test, stopped by close() or when
// the test process ends.

import { spawn } from 'node:child_process';
import { connect } from '@nats-io/transport-node';
import { waitFor } from '@kubefn/platform/testing';
import { freePort } from './control-plane.js';
import { onExit, stopSync } from './exit-cleanup.js';

export interface NatsServer {
  /** nats://127.0.0.1:<port> */
  url: string;
  close(): Promise<void>;
}

export async function startNatsServer(): Promise<NatsServer> {
  const port = await freePort();
  const child = spawn('nats-server', ['-a', '127.0.0.1', '-p', String(port)], { stdio: ['ignore', 'ignore', 'pipe'] });
  const output: string[] = [];
  child.stderr!.on('data', (chunk: Buffer) => output.push(chunk.toString()));
  const forget = onExit(() => stopSync([child.pid!]));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.once('error', (err) => output.push(`cannot start nats-server (apt-get install nats-server): ${err.message}`));
  const url = `nats://127.0.0.1:${port}`;
  await waitFor(
    async () => {
      if (child.exitCode !== null || output.some((l) => l.includes('cannot start'))) throw new Error(`nats-server exited:\n${output.join('')}`);
      const nc = await connect({ servers: url, reconnect: false }).catch(() => undefined);
      await nc?.close();
      return nc !== undefined;
    },
    { timeoutMs: 15_000, what: `nats-server listening on ${url}` },
  );
  return {
    url,
    close: async () => {
      child.kill('SIGTERM');
      await exited;
      forget();
    },
  };
}
