// startLocalNats with Debian's nats-server and with stand-in executables: readiness on a port the
// OS picked, a stop that leaves nothing running, a stale server from an earlier run stopped (and
// nothing else), and start failures that say why with the server's own output.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { connect } from '@nats-io/transport-node';
import { isKubefnError } from '@kubefn/platform';
import { waitFor } from '@kubefn/platform/testing';
import { findOnPath, startLocalNats } from './nats-server.js';

const running = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function script(body: string): Promise<string> {
  const file = path.join(await mkdtemp(path.join(tmpdir(), 'kubefn-fake-nats-')), 'nats-server');
  await writeFile(file, `#!/bin/sh\n${body}\n`);
  await chmod(file, 0o755);
  return file;
}

describe('startLocalNats', () => {
  it('starts nats-server on a free loopback port with JetStream, and close() stops it', async () => {
    const home = await mkdtemp(path.join(tmpdir(), 'kubefn-home-'));
    const nats = await startLocalNats({ home });
    try {
      assert.match(nats.url, /^nats:\/\/127\.0\.0\.1:\d+$/);
      assert.equal(Number((await readFile(path.join(home, 'nats', 'nats-server.pid'), 'utf8')).trim()), nats.pid);
      const nc = await connect({ servers: nats.url });
      assert.equal(nc.info?.jetstream, true);
      await nc.close();
      assert.ok(nats.output().some((l) => l.includes('Server is ready')), nats.output().join('\n'));
    } finally {
      await nats.close();
    }
    assert.equal(running(nats.pid), false);
    assert.equal(nats.connection.isClosed(), true);
    await nats.close();
  });

  it('stops a nats-server an earlier run left on the same store, and no other process', async () => {
    const home = await mkdtemp(path.join(tmpdir(), 'kubefn-home-'));
    const dir = path.join(home, 'nats');
    await mkdir(dir);
    // As a killed `fn up` whose supervisor died too would leave it: running, owning the pid file.
    const stale = spawn((await findOnPath('nats-server', process.env))!, ['-a', '127.0.0.1', '-p', '-1', '-js', '-sd', dir, '-P', path.join(dir, 'nats-server.pid')], {
      stdio: 'ignore',
    });
    const staleExit = new Promise((resolve) => stale.once('exit', resolve));
    await waitFor(async () => (await readFile(path.join(dir, 'nats-server.pid'), 'utf8').catch(() => '')).trim() === String(stale.pid), {
      timeoutMs: 10_000,
      what: 'the stale server\'s pid file',
    });
    const nats = await startLocalNats({ home });
    try {
      await staleExit;
      assert.notEqual(nats.pid, stale.pid);
    } finally {
      await nats.close();
    }

    // A pid file naming a process that is not nats-server on this store: left alone.
    await writeFile(path.join(dir, 'nats-server.pid'), String(process.pid));
    const again = await startLocalNats({ home });
    await again.close();
    assert.ok(running(process.pid));
  });

  it('says nats-server is missing, and how to get it', async () => {
    const empty = await mkdtemp(path.join(tmpdir(), 'kubefn-path-'));
    await assert.rejects(startLocalNats({ home: await mkdtemp(path.join(tmpdir(), 'kubefn-home-')), env: { PATH: empty } }), (err: unknown) => {
      assert.ok(isKubefnError(err, 'NOT_SUPPORTED'));
      assert.match(err.message, /nats-server is not on PATH/);
      assert.match(err.hint ?? '', /apt-get install nats-server, or pass --nats nats:\/\/host:4222/);
      return true;
    });
  });

  it('says why a server that exits at once did not start, with its output', async () => {
    const bin = await script('echo "nats-server: bad store" >&2; exit 3');
    await assert.rejects(startLocalNats({ home: await mkdtemp(path.join(tmpdir(), 'kubefn-home-')), bin }), (err: unknown) => {
      assert.ok(isKubefnError(err, 'START_FAILED'));
      assert.match(err.message, /nats-server exited with code 3 before accepting connections; its last output:\n {2}nats-server: bad store/);
      return true;
    });
  });

  it('gives up on a server that never listens, within the bound, and stops it', async () => {
    const marker = await mkdtemp(path.join(tmpdir(), 'kubefn-marker-'));
    const bin = await script(`echo $$ > ${marker}/pid; echo "waiting forever"; exec sleep 60`);
    const started = Date.now();
    await assert.rejects(startLocalNats({ home: await mkdtemp(path.join(tmpdir(), 'kubefn-home-')), bin, startTimeoutMs: 500, stopGraceMs: 500 }), (err: unknown) => {
      assert.ok(isKubefnError(err, 'START_FAILED'));
      assert.match(err.message, /did not accept connections within 500 ms; its last output:\n {2}waiting forever/);
      return true;
    });
    assert.ok(Date.now() - started < 5_000);
    const pid = Number((await readFile(path.join(marker, 'pid'), 'utf8')).trim());
    await waitFor(() => !running(pid), { timeoutMs: 5_000, what: `the never-ready server (pid ${pid}) to be stopped` });
  });
});
