// The encrypted secret store of the process and podman drivers, on a real directory: what is on
// disk, who may read it, and what a wrong key or a tampered file does.

import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isKubefnError } from './errors.js';
import { FileSecretStore } from './secret-files.js';
import { maxSecretBytes, readSpecSecrets } from './secrets.js';
import { parseFunctionSpec } from './spec.js';

describe('FileSecretStore', () => {
  let root: string;
  const home = () => mkdtemp(path.join(root, 'home-'));
  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'kubefn-secret-files-'));
  });
  after(() => rm(root, { recursive: true, force: true }));

  it('keeps values encrypted: the file holds neither the value nor the name in clear, and reads back', async () => {
    const store = new FileSecretStore(await home());
    const value = 'correct horse battery staple';
    await store.create('db-password', Buffer.from(value));
    const [file] = (await readdir(store.dir)).filter((f) => !f.startsWith('.'));
    const bytes = await readFile(path.join(store.dir, file!));
    assert.equal(bytes.includes(Buffer.from(value)), false, 'ciphertext contains the value');
    assert.equal(bytes.includes(Buffer.from('horse')), false);
    assert.equal((await store.read(['db-password'])).get('db-password')?.toString(), value);
    // Two writes of one value differ (a fresh IV each time).
    await store.update('db-password', Buffer.from(value));
    assert.notDeepEqual(await readFile(path.join(store.dir, file!)), bytes);
  });

  it('writes the key and every secret file mode 0600, in a 0700 directory', async () => {
    const store = new FileSecretStore(await home());
    await store.create('a', Buffer.from('1'));
    await store.update('a', Buffer.from('2'));
    await store.create('b', Buffer.from('3'));
    assert.equal((await stat(store.keyFile)).mode & 0o777, 0o600);
    assert.equal((await stat(store.dir)).mode & 0o777, 0o700);
    for (const f of await readdir(store.dir)) assert.equal((await stat(path.join(store.dir, f))).mode & 0o777, 0o600, f);
    assert.equal((await stat(store.keyFile)).size, 32);
  });

  it('lists, refuses a duplicate create, updates and removes only what exists', async () => {
    const store = new FileSecretStore(await home());
    assert.deepEqual(await store.list(), []);
    await store.create('b', Buffer.from('1'));
    await store.create('a', Buffer.from('2'));
    assert.deepEqual(await store.list(), ['a', 'b']);
    await assert.rejects(store.create('a', Buffer.from('x')), (e) => isKubefnError(e, 'ALREADY_EXISTS'));
    assert.equal((await store.read(['a'])).get('a')?.toString(), '2');
    await assert.rejects(store.update('c', Buffer.from('x')), (e) => isKubefnError(e, 'NOT_FOUND'));
    await assert.rejects(store.remove('c'), (e) => isKubefnError(e, 'NOT_FOUND'));
    await store.remove('a');
    assert.deepEqual(await store.list(), ['b']);
    assert.deepEqual([...(await store.read(['a', 'b'])).keys()], ['b']);
    // No temp files left behind.
    assert.deepEqual((await readdir(store.dir)).sort(), ['b.secret']);
  });

  it('refuses bad names and values over the limit before writing', async () => {
    const store = new FileSecretStore(await home());
    await assert.rejects(store.create('../escape', Buffer.from('x')), (e) => isKubefnError(e, 'INVALID_NAME'));
    await assert.rejects(store.create('Upper', Buffer.from('x')), (e) => isKubefnError(e, 'INVALID_NAME'));
    await assert.rejects(store.create('big', Buffer.alloc(maxSecretBytes + 1)), (e) => isKubefnError(e, 'BODY_TOO_LARGE'));
    await store.create('exact', Buffer.alloc(maxSecretBytes));
    assert.deepEqual(await store.list(), ['exact']);
  });

  it('fails clearly under a wrong key, and for a file moved to another secret\'s name', async () => {
    const dir = await home();
    const store = new FileSecretStore(dir);
    await store.create('a', Buffer.from('one'));
    await store.create('b', Buffer.from('two'));
    // Another name's ciphertext under this name: the name is authenticated, so it does not decrypt.
    await rename(path.join(store.dir, 'b.secret'), path.join(store.dir, 'c.secret'));
    await assert.rejects(new FileSecretStore(dir).read(['c']), (e) => isKubefnError(e, 'INTERNAL') && /cannot decrypt secret "c"/.test((e as Error).message));
    await writeFile(store.keyFile, Buffer.alloc(32, 7));
    const reopened = new FileSecretStore(dir);
    await assert.rejects(reopened.read(['a']), (e) => {
      assert.ok(isKubefnError(e, 'INTERNAL'));
      assert.match(e.message, /cannot decrypt secret "a" with the key in .*secrets\.key: it was written under another key/);
      assert.match(e.hint ?? '', /put back the key file/);
      return true;
    });
    await writeFile(store.keyFile, Buffer.alloc(5));
    await assert.rejects(new FileSecretStore(dir).read(['a']), /is 5 bytes, not 32/);
  });

  it('says which secrets a function names that do not exist', async () => {
    const store = new FileSecretStore(await home());
    await store.create('present', Buffer.from('v'));
    const spec = parseFunctionSpec({ name: 'fn1', image: 'i', secrets: ['present', 'gone', 'lost'] });
    await assert.rejects(readSpecSecrets(store, spec), (e) => {
      assert.ok(isKubefnError(e, 'BAD_REQUEST'));
      assert.equal(e.message, 'function "fn1" needs secrets "gone", "lost", which do not exist');
      assert.match(e.hint ?? '', /fn secret create gone/);
      return true;
    });
    const ok = parseFunctionSpec({ name: 'fn1', image: 'i', secrets: ['present'] });
    assert.equal((await readSpecSecrets(store, ok)).get('present')?.toString(), 'v');
  });
});
