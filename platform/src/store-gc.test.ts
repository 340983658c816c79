import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { referencedDigests } from './store-gc.js';

describe('referencedDigests', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });
  const d = (c: string) => `sha256:${c.repeat(64)}`;

  it('takes every digest named by running specs and saved spec files, broken or half-written ones too', async () => {
    const home = await mkdtemp(path.join(tmpdir(), 'kubefn-gc-'));
    dirs.push(home);
    await mkdir(path.join(home, 'functions'));
    await writeFile(path.join(home, 'functions', 'a.json'), JSON.stringify({ version: 1, spec: { name: 'a', image: `app:${d('a')}` } }));
    await writeFile(path.join(home, 'functions', 'b.json'), `{ "spec": { "image": "bundle:${d('b')}" ... not json`);
    await writeFile(path.join(home, 'functions', '.tmp-123'), `{"spec":{"image":"app:${d('c')}"}}`);
    const found = await referencedDigests(home, [`app:${d('e')}`, undefined, 'registry.example/x:1']);
    assert.deepEqual([...found].sort(), [d('a'), d('b'), d('c'), d('e')]);
  });

  it('finds none in a home without saved functions', async () => {
    const home = await mkdtemp(path.join(tmpdir(), 'kubefn-gc-'));
    dirs.push(home);
    assert.deepEqual([...(await referencedDigests(home, []))], []);
  });
});
