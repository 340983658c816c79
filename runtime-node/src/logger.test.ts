import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RootLogger } from './logger.js';

function capture(level?: 'debug' | 'info' | 'warn' | 'error'): { logger: RootLogger; lines: string[] } {
  const lines: string[] = [];
  return { logger: new RootLogger('fn', 'fn-0', level, (line) => lines.push(line)), lines };
}

describe('RootLogger', () => {
  it('writes one JSON object per line with the fixed fields first', () => {
    const { logger, lines } = capture();
    logger.forCall('c-1').info('hello', { n: 1 });
    assert.equal(lines.length, 1);
    const record = JSON.parse(lines[0]!) as Record<string, unknown>;
    assert.deepEqual(Object.keys(record), ['time', 'level', 'msg', 'function', 'instance', 'callId', 'n']);
    assert.equal(record.level, 'info');
    assert.equal(record.msg, 'hello');
    assert.equal(record.function, 'fn');
    assert.equal(record.instance, 'fn-0');
    assert.equal(record.callId, 'c-1');
    assert.ok(!Number.isNaN(Date.parse(record.time as string)));
  });

  it('filters below the configured level', () => {
    const { logger, lines } = capture('warn');
    logger.debug('d');
    logger.info('i');
    logger.warn('w');
    logger.error('e');
    assert.deepEqual(lines.map((l) => (JSON.parse(l) as { msg: string }).msg), ['w', 'e']);
    assert.equal(capture().logger.enabled('debug'), false, 'debug is off by default');
  });

  it('serialises errors with their stack and keeps its own fields authoritative', () => {
    const { logger, lines } = capture();
    logger.error('failed', { err: new Error('boom'), level: 'trace', msg: 'other' });
    const record = JSON.parse(lines[0]!) as { level: string; msg: string; err: { message: string; stack: string } };
    assert.equal(record.level, 'error');
    assert.equal(record.msg, 'failed');
    assert.equal(record.err.message, 'boom');
    assert.match(record.err.stack, /Error: boom\n\s+at /);
  });

  it('survives fields that cannot be serialised', () => {
    const { logger, lines } = capture();
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    logger.info('cyclic', { cyclic });
    const record = JSON.parse(lines[0]!) as { msg: string; logError: string };
    assert.equal(record.msg, 'cyclic');
    assert.match(record.logError, /could not be serialised/);
  });
});
