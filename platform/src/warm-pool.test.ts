import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { waitFor } from './testing/index.js';
import { WarmPool } from './warm-pool.js';

// Stand-ins for runtime-node's warm.js: one that says it is warm and waits to be specialized
// (answering with its pid), one that dies before it is warm.
const warmScript = `
process.on('message', (m) => { if (m.type === 'kubefn:specialize') process.send({ type: 'specialized', pid: process.pid, file: m.file }); });
process.once('disconnect', () => process.exit(0));
process.send({ type: 'kubefn:warm' });
`;
const dyingScript = `process.exit(3);`;

describe('WarmPool', () => {
  let dir: string;
  let warm: string;
  let dying: string;
  const pools: WarmPool[] = [];
  const open = (options: Partial<ConstructorParameters<typeof WarmPool>[0]>) => {
    const pool = new WarmPool({ size: 2, nodePath: process.execPath, nodeArgs: [], entry: warm, ...options });
    pools.push(pool);
    return pool;
  };

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'kubefn-warm-pool-'));
    warm = path.join(dir, 'warm.js');
    dying = path.join(dir, 'dying.js');
    await writeFile(warm, warmScript);
    await writeFile(dying, dyingScript);
  });
  after(async () => {
    await Promise.all(pools.map((p) => p.close()));
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps `size` warm runtimes, hands one out for good, and starts its replacement', async () => {
    const pool = open({});
    await waitFor(() => pool.stats().idle === 2, { what: 'two warm runtimes' });
    const child = pool.take();
    assert.ok(child?.pid);
    assert.equal(pool.stats().idle, 1);
    assert.equal(pool.stats().taken, 1);
    const answer = new Promise<{ pid: number; file: string }>((resolve) => child.once('message', resolve as (m: unknown) => void));
    child.send({ type: 'kubefn:specialize', file: '/fn.cjs', cwd: '/', env: {} });
    assert.deepEqual(await answer, { type: 'specialized', pid: child.pid, file: '/fn.cjs' });
    await waitFor(() => pool.stats().idle === 2, { what: 'the pool refilled' });
    const second = pool.take();
    assert.notEqual(second?.pid, child.pid, 'a taken runtime never comes back');
    child.kill('SIGKILL');
    second?.kill('SIGKILL');
  });

  it('counts runtimes that die before they are warm, and waits before trying again', async () => {
    const pool = open({ entry: dying });
    await waitFor(() => pool.stats().failed >= 2, { what: 'two failed starts' });
    const { failed, idle } = pool.stats();
    assert.equal(idle, 0);
    assert.equal(pool.take(), undefined, 'nothing to hand out');
    // Backing off: well under one start per event loop turn.
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.ok(pool.stats().failed - failed <= 2, `${pool.stats().failed - failed} more failures in 300 ms`);
  });

  it('keeps no more runtimes than its memory budget holds', async () => {
    const pool = open({ memoryBytes: 16 * 1024 * 1024 });
    assert.equal(pool.stats().allowed, 0);
    // Runtimes are started in the constructor, synchronously: none was.
    assert.deepEqual({ idle: pool.stats().idle, starting: pool.stats().starting }, { idle: 0, starting: 0 });
  });

  it('keeps no process alive: one that only holds an idle pool exits on its own', { timeout: 30_000 }, async () => {
    const module = path.join(path.dirname(fileURLToPath(import.meta.url)), 'warm-pool.js');
    const script = `import { WarmPool } from ${JSON.stringify(module)};
const pool = new WarmPool({ size: 2, nodePath: process.execPath, nodeArgs: [], entry: ${JSON.stringify(warm)} });
const check = setInterval(() => { if (pool.stats().idle === 2) { clearInterval(check); console.log('warm'); } }, 10);`;
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { timeout: 20_000 });
    assert.equal(stdout.trim(), 'warm', 'it exited on its own once its runtimes were warm');
  });
});
