import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import { describe, it } from 'node:test';
import type { HandlerModule } from './handler.js';
import { startRuntime } from './testkit.js';

describe('startup', () => {
  it('runs init() once before listening, and fails with the init error', async () => {
    let inits = 0;
    const { server, base } = await startRuntime({ default: () => ({ inits }), async init() { inits++; } });
    try {
      assert.deepEqual(await (await fetch(base)).json(), { inits: 1 });
    } finally {
      await server.close();
    }
    await assert.rejects(
      startRuntime({ default: () => 'x', init() { throw new Error('no database'); } }),
      (err: Error) => err.message === 'init() failed' && (err.cause as Error).message === 'no database',
    );
  });

  it('rejects a module without a handler', async () => {
    await assert.rejects(startRuntime({ handler: () => 'x' } as HandlerModule), /default export/);
  });

  it('reports a busy port', async () => {
    const blocker = http.createServer();
    blocker.listen(0, '127.0.0.1');
    await once(blocker, 'listening');
    const port = (blocker.address() as { port: number }).port;
    try {
      await assert.rejects(startRuntime({ default: () => 'x' }, { port }), /cannot listen on the function port/);
    } finally {
      blocker.close();
    }
  });
});
