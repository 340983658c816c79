import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { pack, type Header } from 'tar-stream';
import { AppStore, appImageRef, parseAppImageRef } from './app-store.js';
import { isKubefnError } from './errors.js';

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
});
