import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HandlerLoadError, PlainReply, ResultError, loadHandler, mapResult, type Context } from './handler.js';

describe('mapResult', () => {
  it('passes a Response through untouched', () => {
    const response = new Response('x', { status: 201 });
    assert.equal(mapResult(response), response);
  });

  it('maps a string to 200 text/plain', () => {
    assert.deepEqual(mapResult('hi'), new PlainReply(200, 'text/plain; charset=utf-8', 'hi'));
  });

  it('maps bytes to 200 application/octet-stream', () => {
    const bytes = new Uint8Array([1, 2, 3]);
    assert.deepEqual(mapResult(bytes), new PlainReply(200, 'application/octet-stream', bytes));
    const fromBuffer = mapResult(new Uint8Array([4, 5]).buffer) as PlainReply;
    assert.equal(fromBuffer.contentType, 'application/octet-stream');
    assert.deepEqual([...(fromBuffer.body as Uint8Array)], [4, 5]);
    const view = mapResult(new Uint16Array([1])) as PlainReply;
    assert.equal((view.body as Uint8Array).byteLength, 2);
  });

  it('maps null and undefined to 204', () => {
    assert.equal((mapResult(null) as PlainReply).status, 204);
    assert.equal((mapResult(undefined) as PlainReply).status, 204);
  });

  it('maps other values to 200 JSON', () => {
    assert.deepEqual(mapResult({ a: [1, true] }), new PlainReply(200, 'application/json', '{"a":[1,true]}'));
    assert.deepEqual(mapResult(42), new PlainReply(200, 'application/json', '42'));
    assert.deepEqual(mapResult(false), new PlainReply(200, 'application/json', 'false'));
  });

  it('throws ResultError for values JSON cannot represent', () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    assert.throws(() => mapResult(cyclic), ResultError);
    assert.throws(() => mapResult({ n: 1n }), ResultError);
    assert.throws(() => mapResult(() => 1), ResultError);
  });
});

describe('loadHandler', () => {
  const context = {} as Context;
  const request = new Request('http://x/');

  it('accepts a default-exported function', async () => {
    const loaded = loadHandler({ default: () => 'fn' });
    assert.equal(await loaded.invoke(request, context), 'fn');
    assert.equal(loaded.init, undefined);
  });

  it('accepts a Workers-style object with fetch, keeping `this`', async () => {
    const worker = {
      greeting: 'hello',
      fetch(this: { greeting: string }) {
        return this.greeting;
      },
    };
    assert.equal(await loadHandler({ default: worker }).invoke(request, context), 'hello');
  });

  it('returns the init export', () => {
    const init = (): void => {};
    assert.equal(loadHandler({ default: () => null, init }).init, init);
  });

  it('names what was expected when there is no usable default export', () => {
    assert.throws(() => loadHandler({}), (err: unknown) => {
      assert.ok(err instanceof HandlerLoadError);
      assert.match(err.message, /default export/);
      assert.match(err.message, /fetch\(request, context\)/);
      assert.match(err.message, /it has no default export/);
      return true;
    });
    assert.throws(() => loadHandler({ default: { handler() {} } }), /keys \[handler\]/);
    assert.throws(() => loadHandler({ default: () => 1, init: 'yes' }), /"init" export must be a function/);
  });
});
