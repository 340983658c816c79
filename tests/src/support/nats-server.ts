// A real nats-server (Debian's) on a free loopback port for a test, JetStream on with its store in
// a temp folder, stopped by close() or when the test process ends. stop() and start() again keep
// the port and the store, for tests of NATS going away and coming back.

import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { connect } from '@nats-io/transport-node';
import { waitFor } from '@kubefn/platform/testing';
import { freePort } from './control-plane.js';
import { onExit, stopSync } from './exit-cleanup.js';

export interface NatsServer {
  /** nats://127.0.0.1:<port> */
  url: string;
  /** The JetStream store folder. */
  storeDir: string;
  /** Stops the server, keeping its port and store. */
  stop(): Promise<void>;
  /** Starts it again after stop(). */
  start(): Promise<void>;
  /** Stops it and removes the store. */
  close(): Promise<void>;
}

export async function startNatsServer(): Promise<NatsServer> {
  const port = await freePort();
  const storeDir = await mkdtemp(path.join(tmpdir(), 'kubefn-nats-'));
  let running: Running | undefined = await run(port, storeDir);
  return {
    url: running.url,
    storeDir,
    stop: async () => {
      await running?.stop();
      running = undefined;
    },
    start: async () => {
      running ??= await run(port, storeDir);
    },
    close: async () => {
      await running?.stop();
      running = undefined;
      await rm(storeDir, { recursive: true, force: true });
    },
  };
}

interface Running {
  url: string;
  stop(): Promise<void>;
}

async function run(port: number, storeDir: string): Promise<Running> {
  const child = spawn('nats-server', ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', storeDir], { stdio: ['ignore', 'ignore', 'pipe'] });
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
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
      forget();
    },
  };
}
