import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { gunzipSync, gzipSync } from 'node:zlib';
import { reproducibleGzip } from './gzip.js';

/** `n` bytes that compress somewhat, like a binary: sha256 blocks, every other one repeated. */
function binaryLike(n: number): Buffer {
  const out = Buffer.alloc(n);
  for (let off = 0, i = 0; off < n; off += 32, i++) createHash('sha256').update(String(i >> 1)).digest().copy(out, off);
  return out;
}

describe('reproducibleGzip', () => {
  it('gives the bytes gzipSync gives at level 9, with the header naming Unix, and gunzips back', async () => {
    for (const data of [Buffer.alloc(0), Buffer.from('hello\n'), binaryLike(3 * 1024 * 1024 + 5)]) {
      const want = gzipSync(data, { level: 9 });
      want[9] = 3;
      const got = await reproducibleGzip(data);
      assert.ok(got.equals(want), `${data.length} bytes`);
      assert.ok(gunzipSync(got).equals(data));
    }
  });

  it('lets the event loop turn while it compresses a large layer', async () => {
    const data = binaryLike(8 * 1024 * 1024);
    let turns = 0;
    let compressing = true;
    const turn = (): void => {
      turns++;
      if (compressing) setImmediate(turn);
    };
    setImmediate(turn);
    const out = await reproducibleGzip(data);
    compressing = false;
    // Synchronous gzip would finish before the first setImmediate callback could run.
    assert.ok(turns > 10, `the event loop turned ${turns} times while 8 MiB were gzipped`);
    assert.ok(out.length > 0);
  });
});
