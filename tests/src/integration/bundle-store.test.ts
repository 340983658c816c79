// The content-addressed bundle store: digests verified, size bounded, nothing partial left behind.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { BundleStore, bundleImageRef, isKubefnError, parseBundleImageRef, type ErrorCode } from '@kubefn/platform';

const digestOf = (data: Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`;

async function* chunks(...parts: (Buffer | Error)[]): AsyncGenerator<Uint8Array> {
  for (const p of parts) {
    if (p instanceof Error) throw p;
    yield p;
  }
}

describe('bundle store', () => {
  let dir: string;
  let store: BundleStore;
  const body = Buffer.from('export default () => "hi";\n'.repeat(100));
  const digest = digestOf(body);

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'kubefn-bundles-'));
    store = await BundleStore.open(path.join(dir, 'store'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const entries = () => readdir(store.dir);

  it('stores a bundle under its digest, from chunks or a Readable', async () => {
    assert.equal(await store.has(digest), false);
    await store.put(digest, chunks(body.subarray(0, 10), body.subarray(10)), { maxBytes: body.length });
    assert.ok(store.path(digest).endsWith('.mjs'), 'bundles load as ES modules');
    assert.equal(await store.has(digest), true);
    assert.deepEqual(await readFile(store.path(digest)), body);
    // Again, from a stream: same content, same place.
    await store.put(digest, Readable.from([body]));
    assert.deepEqual(await entries(), [path.basename(store.path(digest))]);
  });

  it('rejects content that does not match the digest and leaves nothing behind', async () => {
    const other = digestOf(Buffer.from('something else'));
    await expectCode(store.put(other, chunks(body)), 'BAD_REQUEST');
    assert.equal(await store.has(other), false);
    assert.deepEqual((await entries()).filter((e) => e.startsWith('.')), []);
  });

  it('rejects a bundle over maxBytes and leaves nothing behind', async () => {
    const big = Buffer.alloc(4096, 1);
    await expectCode(store.put(digestOf(big), chunks(big.subarray(0, 2048), big.subarray(2048)), { maxBytes: 3000 }), 'BODY_TOO_LARGE');
    assert.equal(await store.has(digestOf(big)), false);
    assert.deepEqual((await entries()).filter((e) => e.startsWith('.')), []);
  });

  it('cleans up when the source fails midway', async () => {
    const data = Buffer.from('partial upload');
    await assert.rejects(store.put(digestOf(data), chunks(data.subarray(0, 4), new Error('connection reset'))), /connection reset/);
    assert.equal(await store.has(digestOf(data)), false);
    assert.deepEqual((await entries()).filter((e) => e.startsWith('.')), []);
  });

  it('refuses malformed digests', async () => {
    for (const bad of ['sha256:abc', 'md5:' + 'a'.repeat(64), `sha256:${'A'.repeat(64)}`, `sha256:${'a'.repeat(64)}/../x`]) {
      assert.throws(() => store.path(bad), (err: unknown) => isKubefnError(err, 'BAD_REQUEST'), bad);
      await expectCode(store.put(bad, chunks(body)), 'BAD_REQUEST');
    }
  });

  it('open() clears temp files a crash left, but not fresh ones', async () => {
    const stale = path.join(store.dir, '.tmp-stale');
    const fresh = path.join(store.dir, '.tmp-fresh');
    await writeFile(stale, 'x');
    await writeFile(fresh, 'x');
    const old = new Date(Date.now() - 2 * 3600_000);
    await utimes(stale, old, old);
    await BundleStore.open(store.dir);
    const names = await entries();
    assert.ok(!names.includes('.tmp-stale'));
    assert.ok(names.includes('.tmp-fresh'), 'an upload in progress is left alone');
    await rm(fresh);
  });

  it('image references round-trip', () => {
    assert.equal(bundleImageRef(digest), `bundle:${digest}`);
    assert.equal(parseBundleImageRef(bundleImageRef(digest)), digest);
    assert.equal(parseBundleImageRef('registry.example/hello:1'), undefined);
    assert.equal(parseBundleImageRef('bundle:sha256:abc'), undefined);
    assert.equal(parseBundleImageRef(undefined), undefined);
    assert.throws(() => bundleImageRef('sha256:nope'), (err: unknown) => isKubefnError(err, 'BAD_REQUEST'));
  });
});

async function expectCode(promise: Promise<unknown>, code: ErrorCode): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(isKubefnError(err, code), `expected ${code}, got ${(err as Error)?.stack ?? String(err)}`);
    return true;
  });
}
