import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { asyncSubject, callHeaders, decodeCall } from './async-stream.js';

describe('stored async calls', () => {
  it('round-trip the request through the message headers, the body byte for byte', () => {
    const body = new Uint8Array([0, 255, 10, 13]);
    const headers = { 'x-call-id': 'c-1', 'content-type': 'application/octet-stream', 'x-note': 'line\r\nbreak? no: "quoted" ü' };
    const h = callHeaders({ method: 'PUT', path: '/a/b%20c', query: 'x=1&y', headers });
    assert.deepEqual(decodeCall(asyncSubject('hello'), h, body), { name: 'hello', callId: 'c-1', method: 'PUT', path: '/a/b%20c', query: 'x=1&y', headers, body });
  });

  it('refuses a message that is not a stored call', () => {
    assert.throws(() => decodeCall('kubefn.async.hello', undefined, new Uint8Array()), /not an async call/);
    const h = callHeaders({ method: 'POST', path: '', query: '', headers: {} });
    assert.throws(() => decodeCall('other.subject', h, new Uint8Array()), /not an async call/);
    h.set('kubefn-async-call', '{"method":1}');
    assert.throws(() => decodeCall('kubefn.async.hello', h, new Uint8Array()), /malformed/);
  });
});
