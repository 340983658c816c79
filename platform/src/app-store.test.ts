import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, stat, unlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { pack, type Header } from 'tar-stream';
import { AppStore, appImageRef, parseAppImageRef } from './app-store.js';
import { isKubefnError } from './errors.js';
import { racyMs } from './file-digest.js';

type Entry = Partial<Header> & { name: string; body?: string };

async function tarOf(entries: Entry[]): Promise<Buffer> {
  const p = pack();
  const chunks: Buffer[] = [];
  p.on('data', (c: unknown) => void chunks.push(c as Buffer));
  const done = new Promise<void>((resolve) => p.on('end', () => resolve()));
  for (const e of entries) p.entry({ type: 'file', mode: 0o644, ...e }, e.body ?? '');
  p.finalize();
  await done;
  return Buffer.concat(chunks);
}

const digestOf = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

describe('AppStore', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  async function storeWith(tar: Buffer): Promise<{ store: AppStore; digest: string }> {
    const dir = await mkdtemp(path.join(tmpdir(), 'kubefn-apps-'));
    dirs.push(dir);
    const store = await AppStore.open(dir);
    const digest = digestOf(tar);
    await store.put(digest, Readable.from([tar]));
    return { store, digest };
  }

  it('unpacks an app once per digest and finds its bundle', async () => {
    const tar = await tarOf([
      { name: 'fn.cjs', body: 'module.exports = 1;\n' },
      { name: 'templates/', type: 'directory', mode: 0o755 },
      { name: 'templates/page.html', body: '<p>x</p>' },
      { name: 'bin/run', body: '#!/bin/sh\n', mode: 0o755 },
    ]);
    const { store, digest } = await storeWith(tar);
    const [a, b] = await Promise.all([store.unpack(digest), store.unpack(digest)]);
    assert.deepEqual(a, b);
    assert.equal(a.entry, path.join(a.dir, 'fn.cjs'));
    assert.equal(await readFile(path.join(a.dir, 'templates', 'page.html'), 'utf8'), '<p>x</p>');
    assert.equal((await stat(path.join(a.dir, 'bin', 'run'))).mode & 0o777, 0o755);
    assert.deepEqual((await readdir(store.runDir)).filter((d) => d.startsWith('.tmp-')), [], 'no temp directory left');
    // A second store on the same directory reuses what is unpacked.
    assert.deepEqual(await (await AppStore.open(path.dirname(store.runDir))).unpack(digest), a);
  });

  it('refuses links, escaping names, repeated paths and an app without a bundle, leaving nothing unpacked', async () => {
    const hostile: Entry[][] = [
      [{ name: 'fn.cjs' }, { name: 'link', type: 'symlink', linkname: '/etc/passwd' }],
      [{ name: 'fn.cjs' }, { name: '../escape.txt' }],
      [{ name: 'fn.cjs' }, { name: '/abs.txt' }],
      [{ name: 'fn.cjs' }, { name: 'a\\b.txt' }],
      [{ name: 'fn.cjs' }, { name: 'fn.cjs' }],
      [{ name: 'page.html' }],
    ];
    for (const entries of hostile) {
      const { store, digest } = await storeWith(await tarOf(entries));
      await assert.rejects(store.unpack(digest), (err) => isKubefnError(err, 'BAD_REQUEST'), JSON.stringify(entries));
      const left = await readdir(store.runDir);
      // Only an app without a bundle is unpacked (it holds nothing harmful); nothing else stays.
      assert.ok(left.length === 0 || entries[0]!.name === 'page.html', `left: ${left.join(', ')}`);
    }
  });

  it('names apps by digest in image references', () => {
    const digest = `sha256:${'ab'.repeat(32)}`;
    assert.equal(appImageRef(digest), `app:${digest}`);
    assert.equal(parseAppImageRef(`app:${digest}`), digest);
    assert.equal(parseAppImageRef(`bundle:${digest}`), undefined);
    assert.equal(parseAppImageRef('app:sha256:abc'), undefined);
    assert.throws(() => appImageRef('sha256:nothex'), (err) => isKubefnError(err, 'BAD_REQUEST'));
  });

  describe('checks what it holds', () => {
    const app = () =>
      tarOf([
        { name: 'fn.cjs', body: 'module.exports = "good";\n' },
        { name: 'data/', type: 'directory', mode: 0o755 },
        { name: 'data/words.txt', body: 'alpha beta\n' },
      ]);
    const watched = async () => {
      const made = await storeWith(await app());
      const warnings: string[] = [];
      made.store.onWarning = (m) => warnings.push(m);
      return { ...made, warnings };
    };

    it('refuses an archive that no longer matches its digest: CORRUPT, moved aside, and has() says to upload it again', async () => {
      const { store, digest, warnings } = await watched();
      const archive = store.archives.path(digest);
      const bytes = await readFile(archive);
      bytes[600] = bytes[600]! ^ 1;
      await writeFile(archive, bytes);
      await assert.rejects(store.unpack(digest), (err) => {
        assert.ok(isKubefnError(err, 'CORRUPT'), String(err));
        assert.match((err as Error).message, /the stored app sha256:[0-9a-f]{64} failed its digest check/);
        return true;
      });
      assert.match(warnings.join('\n'), /failed its digest check/);
      assert.equal(await store.has(digest), false);
      await store.put(digest, Readable.from([await app()]));
      assert.equal(await store.has(digest), true);
      assert.equal(await readFile((await store.unpack(digest)).entry, 'utf8'), 'module.exports = "good";\n');
    });

    it('unpacks again from the archive when an unpacked file changed or went missing, and says so', async () => {
      const { store, digest, warnings } = await watched();
      const { dir, entry } = await store.unpack(digest);
      // Same size, right after unpacking.
      await writeFile(entry, 'module.exports = "evil";\n');
      assert.deepEqual(await store.unpack(digest), { dir, entry });
      assert.equal(await readFile(entry, 'utf8'), 'module.exports = "good";\n');
      assert.match(warnings.at(-1)!, /has a changed fn\.cjs .*unpacking it again from its archive/);
      await unlink(path.join(dir, 'data', 'words.txt'));
      assert.equal(await store.has(digest), true, 'the existence check repairs it too');
      assert.equal(await readFile(path.join(dir, 'data', 'words.txt'), 'utf8'), 'alpha beta\n');
      assert.match(warnings.at(-1)!, /lost data\/words\.txt/);
      assert.deepEqual((await readdir(store.runDir)).filter((d) => d.startsWith('.tmp-')), [], 'no temp or old directory left');
    });

    it('unpacks again a directory without a manifest (unpacked before manifests, or cut short)', async () => {
      const { store, digest } = await watched();
      const { dir, entry } = await store.unpack(digest);
      await unlink(`${dir}.files.json`);
      await writeFile(entry, 'module.exports = "evil";\n');
      await store.unpack(digest);
      assert.equal(await readFile(entry, 'utf8'), 'module.exports = "good";\n');
    });

    it('hashes nothing again for an unchanged app once its files are past the racy window', async () => {
      const { store, digest } = await watched();
      store.archives.clock = () => Date.now() + racyMs * 2;
      await store.unpack(digest);
      await store.unpack(digest);
      const hashed = store.hashedBytes;
      assert.ok(hashed > 0, 'the first checks hash the archive and the unpacked files');
      for (let i = 0; i < 3; i++) await store.unpack(digest);
      assert.equal(await store.has(digest), true);
      assert.equal(store.hashedBytes, hashed, 'later checks of unchanged files hash nothing');
    });

    it('collects archives and unpacked directories nothing references, keeping referenced and fresh ones', async () => {
      const { store, digest: used } = await watched();
      const oldTar = await tarOf([{ name: 'fn.cjs', body: 'module.exports = "old";\n' }]);
      const freshTar = await tarOf([{ name: 'fn.cjs', body: 'module.exports = "fresh";\n' }]);
      const [old, fresh] = [digestOf(oldTar), digestOf(freshTar)];
      await store.put(old, Readable.from([oldTar]));
      await store.put(fresh, Readable.from([freshTar]));
      for (const d of [used, old, fresh]) await store.unpack(d);
      const then = new Date(Date.now() - 2 * 3600_000);
      for (const d of [used, old]) await utimes(store.archives.path(d), then, then);
      // The next `fn up`: a store that has not used them goes by the files' age.
      const next = await AppStore.open(path.dirname(store.runDir));
      assert.deepEqual(await next.collect(new Set([used]), { graceMs: 3600_000 }), [old]);
      const hex = (d: string) => d.slice('sha256:'.length);
      const left = await readdir(next.runDir);
      assert.deepEqual(left.sort(), [hex(used), `${hex(used)}.files.json`, hex(fresh), `${hex(fresh)}.files.json`].sort());
      assert.equal(await next.has(used), true);
      assert.equal(await next.has(fresh), true);
      assert.equal(await next.has(old), false);
    });
  });
});
