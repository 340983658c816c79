import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { BundleStore } from './bundle-store.js';
import { isKubefnError } from './errors.js';
import { racyMs } from './file-digest.js';

const digestOf = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** Sets a file's mtime back past the racy window, so a check may remember it (ctime moves, and stays older than a later write's). */
async function age(file: string, ms = racyMs * 3): Promise<void> {
  const then = new Date(Date.now() - ms);
  await utimes(file, then, then);
}


describe('BundleStore checks what it holds', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  async function storeWith(body: Buffer): Promise<{ store: BundleStore; digest: string; warnings: string[] }> {
    const dir = await mkdtemp(path.join(tmpdir(), 'kubefn-bundles-'));
    dirs.push(dir);
    const store = await BundleStore.open(dir);
    const warnings: string[] = [];
    store.onWarning = (m) => warnings.push(m);
    const digest = digestOf(body);
    await store.put(digest, Readable.from([body]));
    return { store, digest, warnings };
  }

  it('finds a rewrite of the same size at once, moves the blob aside and says so until a good copy is uploaded', async () => {
    const body = Buffer.from('export default () => "good";\n');
    const { store, digest, warnings } = await storeWith(body);
    assert.equal(await store.verify(digest), true);
    // Same size, written right after a good check: in the same tick of the file clock at worst.
    await writeFile(store.path(digest), Buffer.from('export default () => "evil";\n'));
    await assert.rejects(store.verify(digest), (err: unknown) => {
      assert.ok(isKubefnError(err, 'CORRUPT'), String(err));
      assert.match((err as Error).message, new RegExp(`the stored bundle ${digest} failed its digest check \\(its content hashes to sha256:[0-9a-f]{64}\\); it was moved aside to .*\\.corrupt`));
      assert.match((err as { hint: string }).hint, /fn deploy` uploads it again/);
      return true;
    });
    assert.equal(warnings.length, 1, 'logged once, with the cause');
    assert.match(warnings[0]!, /failed its digest check/);
    assert.deepEqual(await readdir(path.join(store.dir, '.corrupt')), [path.basename(store.path(digest))]);
    // Missing now, but not silently: the reason stays until an upload replaces it.
    await assert.rejects(store.verify(digest), (err: unknown) => isKubefnError(err, 'CORRUPT') && /moved aside/.test((err as Error).message));
    assert.equal(await store.has(digest), false, 'has() says to upload it again');
    await store.put(digest, Readable.from([body]));
    assert.equal(await store.has(digest), true);
    assert.deepEqual(await readFile(store.path(digest)), body);
  });

  it('hashes a blob again only when it was rewritten: a rewrite that keeps the size and sets mtime back is still found', async () => {
    const body = Buffer.alloc(256 * 1024, 7);
    const { store, digest } = await storeWith(body);
    // A check made well after the upload may remember its result (one made at once may not).
    store.clock = () => Date.now() + racyMs * 2;
    assert.equal(await store.verify(digest), true);
    const hashed = store.hashedBytes;
    assert.equal(hashed, body.length);
    for (let i = 0; i < 5; i++) assert.equal(await store.verify(digest), true);
    assert.equal(await store.has(digest), true);
    assert.equal(store.hashedBytes, hashed, 'a cached good result costs no hashing');
    // Corrupt one byte in place and put mtime back where it was: only ctime tells.
    const before = await stat(store.path(digest));
    const bad = Buffer.from(body);
    bad[1000] = 8;
    await writeFile(store.path(digest), bad);
    await utimes(store.path(digest), before.atime, before.mtime);
    await assert.rejects(store.verify(digest), (err: unknown) => isKubefnError(err, 'CORRUPT'));
    assert.equal(store.hashedBytes, hashed + body.length);
  });

  it('collects blobs nothing references once past the grace period, and keeps referenced and fresh ones', async () => {
    const { store, digest: used } = await storeWith(Buffer.from('used'));
    const old = Buffer.from('old and unreferenced');
    const fresh = Buffer.from('fresh and unreferenced');
    await store.put(digestOf(old), Readable.from([old]));
    await store.put(digestOf(fresh), Readable.from([fresh]));
    await writeFile(path.join(store.dir, '.tmp-upload-in-progress'), 'x');
    const hour = 3600_000;
    await age(store.path(used), 2 * hour);
    await age(store.path(digestOf(old)), 2 * hour);
    // Used moments ago by this store (uploaded, checked): kept, however old its file.
    assert.deepEqual(await store.collect(new Set([used]), { graceMs: hour }), []);
    // A store that has not used them (the next `fn up`) goes by the files' age.
    const next = await BundleStore.open(store.dir);
    assert.deepEqual(await next.collect(new Set([used]), { graceMs: hour }), [digestOf(old)]);
    assert.equal(await next.has(used), true, 'referenced: kept');
    assert.equal(await next.has(digestOf(fresh)), true, 'unreferenced but recent: kept');
    assert.equal(await next.has(digestOf(old)), false);
    assert.ok((await readdir(store.dir)).includes('.tmp-upload-in-progress'), "an upload in progress is not the collector's");
  });

  it('collects at most maxRemovals blobs in one call', async () => {
    const { store } = await storeWith(Buffer.from('first'));
    for (const text of ['a', 'b', 'c']) await store.put(digestOf(Buffer.from(text)), Readable.from([Buffer.from(text)]));
    const removed = await store.collect(new Set(), { graceMs: 0, now: Date.now() + 1000, maxRemovals: 2 });
    assert.equal(removed.length, 2);
    assert.equal((await readdir(store.dir)).filter((e) => e.endsWith('.mjs')).length, 2);
  });
});
