import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createGateway } from '@kubefn/gateway';
import { KubefnError, type Driver } from '@kubefn/platform';
import type { FastifyBaseLogger } from 'fastify';
import { createLogger, humanLine, LineBatch } from './logger.js';

function capture() {
  const lines: string[] = [];
  return { lines, destination: { write: (line: string) => lines.push(line) } };
}

/** A driver whose list() fails the way a bug would, with a cause. */
const brokenDriver = {
  kind: 'broken',
  list: async () => {
    throw new Error('list exploded', { cause: new Error('disk on fire') });
  },
  get: async (name: string) => {
    throw new KubefnError('NOT_FOUND', `function "${name}" not found`);
  },
} as unknown as Driver;

describe('logger', () => {
  it('writes JSON lines with time, level, message and fields', () => {
    const out = capture();
    createLogger({ destination: out.destination }).warn('scrape failed', { gateway: 'g-1' });
    const entry = JSON.parse(out.lines[0]!) as Record<string, unknown>;
    assert.equal(entry.level, 'warn');
    assert.equal(entry.msg, 'scrape failed');
    assert.equal(entry.gateway, 'g-1');
    assert.ok(!Number.isNaN(Date.parse(String(entry.time))));
  });

  it('prints human lines for fn up, an error by its message and its causes', () => {
    const out = capture();
    createLogger({ json: false, destination: out.destination }).error('stop failed', { err: new Error('outer', { cause: new Error('inner') }), dir: 'x' });
    assert.match(out.lines[0]!, /^\d\d:\d\d:\d\d ERROR stop failed dir=x err=outer: inner\n$/);
    assert.match(humanLine('{"level":"info","msg":"up","time":"2026-01-01T00:00:00.000Z"}'), / up\n$/);
    assert.equal(humanLine('not json\n'), 'not json\n');
  });

  it('the gateway logs one line per request and an unhandled error with its cause', async () => {
    const out = capture();
    const log = createLogger({ destination: out.destination });
    const gateway = createGateway({ driver: brokenDriver, logger: log.pino as FastifyBaseLogger, requestLog: true });
    try {
      const res = await gateway.app.inject({ method: 'GET', url: '/system/functions' });
      assert.equal(res.statusCode, 500);
      assert.deepEqual(res.json(), { code: 'INTERNAL', message: 'internal server error' });
      const missing = await gateway.app.inject({ method: 'GET', url: '/system/function/nope' });
      assert.equal(missing.statusCode, 404);
    } finally {
      await gateway.close();
    }
    const entries = out.lines.map((l) => JSON.parse(l) as { level: string; msg: string; status?: number; url?: string; err?: { message: string; stack: string } });
    const unhandled = entries.find((e) => e.msg === 'unhandled error');
    assert.ok(unhandled, 'the unhandled error is logged');
    assert.equal(unhandled.level, 'error');
    assert.match(unhandled.err!.message, /list exploded: disk on fire/);
    const requests = entries.filter((e) => e.msg === 'request');
    assert.deepEqual(requests.map((e) => [e.url, e.status]), [['/system/functions', 500], ['/system/function/nope', 404]]);
    // A refusal of ours (404) is not an error of the gateway's.
    assert.equal(entries.filter((e) => e.level === 'error').length, 1);
  });

  it('writes the lines of one event-loop turn together, in order, at its end', async () => {
    const writes: string[] = [];
    const batch = new LineBatch((text) => writes.push(text));
    batch.write('a\n');
    batch.write('b\n');
    assert.deepEqual(writes, []);
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(writes, ['a\nb\n']);
    batch.write('c\n');
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(writes, ['a\nb\n', 'c\n']);
  });

  it('writes at once when 64 KiB are waiting, and flush() writes the rest', () => {
    const writes: string[] = [];
    const batch = new LineBatch((text) => writes.push(text));
    const line = 'x'.repeat(1023) + '\n';
    for (let i = 0; i < 64; i++) batch.write(line);
    assert.equal(writes.length, 1);
    assert.equal(writes[0]!.length, 64 * 1024);
    batch.write('tail\n');
    batch.flush();
    assert.deepEqual(writes.slice(1), ['tail\n']);
  });
});
