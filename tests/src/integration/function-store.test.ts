// Saved function specs: atomic saves, loading back, and files that no longer validate.

import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FunctionStore, parseFunctionSpec } from '@kubefn/platform';

describe('function store', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'kubefn-state-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('saves, loads and removes specs', async () => {
    const store = new FunctionStore(dir);
    const spec = parseFunctionSpec({ name: 'hello', image: `bundle:sha256:${'a'.repeat(64)}`, env: { A: '1' } });
    await store.save({ spec, createdAt: '2024-01-01T00:00:00.000Z', updatedAt: '2024-01-02T00:00:00.000Z' });
    await store.save({ spec, createdAt: '2024-01-01T00:00:00.000Z', updatedAt: '2024-01-03T00:00:00.000Z' });
    assert.deepEqual(await readdir(store.dir), ['hello.json'], 'no temp file stays');
    const loaded = await store.loadAll();
    assert.deepEqual(loaded.failed, []);
    assert.deepEqual(loaded.functions, [{ spec, createdAt: '2024-01-01T00:00:00.000Z', updatedAt: '2024-01-03T00:00:00.000Z' }]);
    await store.remove('hello');
    await store.remove('hello');
    assert.deepEqual((await store.loadAll()).functions, []);
  });

  it('reports files it cannot use and loads the rest', async () => {
    const store = new FunctionStore(path.join(dir, 'mixed'));
    await mkdir(store.dir, { recursive: true });
    await writeFile(path.join(store.dir, 'garbage.json'), '{not json');
    await writeFile(path.join(store.dir, 'wrong.json'), JSON.stringify({ spec: { name: 'other' } }));
    await writeFile(path.join(store.dir, 'invalid.json'), JSON.stringify({ spec: { name: 'invalid', scale: { min: -1 } } }));
    await store.save({ spec: parseFunctionSpec({ name: 'good' }), createdAt: 'x', updatedAt: 'y' });
    const loaded = await store.loadAll();
    assert.deepEqual(loaded.functions.map((f) => f.spec.name), ['good']);
    assert.deepEqual(loaded.failed.map((f) => path.basename(f.file)).sort(), ['garbage.json', 'invalid.json', 'wrong.json']);
  });

  it('loads nothing from a state directory that does not exist', async () => {
    assert.deepEqual(await new FunctionStore(path.join(dir, 'nope')).loadAll(), { functions: [], failed: [] });
  });
});
