import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { uploadUrl } from './blobs.js';

describe('uploadUrl', () => {
  const d = `sha256:${'0'.repeat(64)}`;
  const base = 'https://reg.example.com';
  const cases: [string, string][] = [
    ['/v2/a/blobs/uploads/u1', `https://reg.example.com/v2/a/blobs/uploads/u1?digest=sha256%3A${'0'.repeat(64)}`],
    ['/v2/a/blobs/uploads/u1?_state=ab%2Bc%3D&x=1', `https://reg.example.com/v2/a/blobs/uploads/u1?_state=ab%2Bc%3D&x=1&digest=sha256%3A${'0'.repeat(64)}`],
    ['https://storage.example.com/up/u1?sig=a+b', `https://storage.example.com/up/u1?sig=a+b&digest=sha256%3A${'0'.repeat(64)}`],
    ['/v2/a/blobs/uploads/u1?', `https://reg.example.com/v2/a/blobs/uploads/u1?digest=sha256%3A${'0'.repeat(64)}`],
  ];
  for (const [location, want] of cases) {
    it(`appends the digest to ${location}`, () => assert.equal(uploadUrl(base, location, d), want));
  }
});
