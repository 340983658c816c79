import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readdir, readFile, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { readClaimHead, signClaim, unpackLayer, verifyClaim, type WarmClaim } from './warm-claim.js';

type Entry = { name: string; type?: 'file' | 'directory' | 'symlink' | 'link' | 'character-device'; content?: string; linkname?: string };

async function layerOf(entries: Entry[]): Promise<{ blob: Buffer; digest: string }> {
  const pack = tar.pack();
  for (const e of entries) {
    const type = e.type ?? 'file';
    if (type === 'file') pack.entry({ name: e.name, mode: 0o644 }, e.content ?? '');
    else pack.entry({ name: e.name, type, ...(e.linkname ? { linkname: e.linkname } : {}) });
  }
  pack.finalize();
  const parts: Buffer[] = [];
  for await (const c of pack) parts.push(c as Buffer);
  const blob = gzipSync(Buffer.concat(parts));
  return { blob, digest: `sha256:${createHash('sha256').update(blob).digest('hex')}` };
}

const keys = generateKeyPairSync('ed25519');
const claim: WarmClaim = { pod: 'pool-a', function: 'f', layer: { digest: `sha256:${'0'.repeat(64)}`, size: 1 }, bundle: 'fn.cjs', env: {}, files: {}, expires: Date.now() + 60_000 };

describe('warm claims', () => {
  it('verifies only a fresh claim for this pod, signed by the key, unaltered', () => {
    const { head, signature } = signClaim(claim, keys.privateKey);
    const json = head.subarray(4);
    assert.deepEqual(verifyClaim(json, signature, keys.publicKey, 'pool-a'), claim);
    assert.match(verifyClaim(json, signature, keys.publicKey, 'pool-b') as string, /for pod "pool-a", not this one/);
    assert.match(verifyClaim(json, signature, keys.publicKey, 'pool-a', claim.expires + 1) as string, /expired/);
    const altered = Buffer.from(json.toString().replace('"f"', '"g"'));
    assert.match(verifyClaim(altered, signature, keys.publicKey, 'pool-a') as string, /not signed/);
    assert.match(verifyClaim(json, signature, generateKeyPairSync('ed25519').publicKey, 'pool-a') as string, /not signed/);
    const { head: h2, signature: s2 } = signClaim({ ...claim, bundle: '../etc/x.cjs' }, keys.privateKey);
    assert.match(verifyClaim(h2.subarray(4), s2, keys.publicKey, 'pool-a') as string, /only fn.cjs or fn.mjs/);
  });

  it('reads the head off a stream in pieces and leaves the rest of the body', async () => {
    const { head } = signClaim(claim, keys.privateKey);
    const body = Buffer.concat([head, Buffer.from('LAYER')]);
    const stream = Readable.from([body.subarray(0, 2), body.subarray(2, 10), body.subarray(10)], { objectMode: false });
    const { json, rest } = await readClaimHead(stream);
    assert.deepEqual(JSON.parse(json.toString()), claim);
    let tail = rest;
    for await (const c of stream) tail = Buffer.concat([tail, c as Buffer]);
    assert.equal(tail.toString(), 'LAYER');
  });

  describe('unpacking a layer', () => {
    let dir: string;
    before(async () => (dir = await mkdtemp(path.join(tmpdir(), 'kubefn-unpack-'))));
    after(() => rm(dir, { recursive: true, force: true }));

    const unpack = async (entries: Entry[], to: string, tamper?: (l: { blob: Buffer; digest: string }) => { blob: Buffer; digest: string }) => {
      let l = await layerOf(entries);
      if (tamper) l = tamper(l);
      await unpackLayer(Readable.from([l.blob.subarray(5)]), l.blob.subarray(0, 5), { digest: l.digest, size: l.blob.length }, to);
    };

    it('writes files, directories and inner symlinks under app/', async () => {
      const to = await mkdtemp(path.join(dir, 'ok-'));
      await unpack([{ name: 'app/', type: 'directory' }, { name: 'app/fn.cjs', content: 'x' }, { name: 'app/lib/a.txt', content: 'a' }, { name: 'app/link', type: 'symlink', linkname: 'lib/a.txt' }], to);
      assert.equal(await readFile(path.join(to, 'fn.cjs'), 'utf8'), 'x');
      assert.equal(await readFile(path.join(to, 'link'), 'utf8'), 'a');
      assert.equal(await readlink(path.join(to, 'link')), 'lib/a.txt');
    });

    for (const [what, entries, message] of [
      ['outside app/', [{ name: 'etc/passwd', content: 'x' }], /outside \/app/],
      ['climbing out', [{ name: 'app/../../x', content: 'x' }], /escapes|outside/],
      ['a symlink out', [{ name: 'app/out', type: 'symlink', linkname: '../../etc' }], /symlink out/],
      ['a hard link', [{ name: 'app/f', content: 'x' }, { name: 'app/h', type: 'link', linkname: 'app/f' }], /only files, directories and symlinks/],
      ['a whiteout', [{ name: 'app/.wh.x', content: '' }], /whiteout/],
    ] as [string, Entry[], RegExp][]) {
      it(`refuses ${what}, and leaves the directory empty`, async () => {
        const to = await mkdtemp(path.join(dir, 'bad-'));
        await assert.rejects(unpack([{ name: 'app/first.txt', content: 'written first' }, ...entries], to), message);
        assert.deepEqual(await readdir(to), []);
      });
    }

    it('refuses a layer whose digest is not the claim\'s', async () => {
      const to = await mkdtemp(path.join(dir, 'digest-'));
      await assert.rejects(unpack([{ name: 'app/fn.cjs', content: 'x' }], to, (l) => ({ ...l, digest: `sha256:${'1'.repeat(64)}` })), /digest is sha256:/);
      assert.deepEqual(await readdir(to), []);
    });
  });
});
