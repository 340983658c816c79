// `fn init` scaffolds that load, validate and bundle; refusals are usage errors.

import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile, mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { bundleFunction } from '@kubefn/builder';
import { loadFnYaml } from '@kubefn/platform';
import { initFunction } from './init.js';
import { main } from './main.js';
import { memoryIo } from './testing.js';

let root: string;
before(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'kubefn-init-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

const fn = (...args: string[]) => ['node', 'fn', ...args];

for (const lang of ['js', 'ts'] as const) {
  describe(`fn init --lang ${lang}`, () => {
    it('writes fn.yaml, the handler and package.json, and the scaffold bundles', async () => {
      const name = `hello-${lang}`;
      const result = await initFunction({ name, lang, cwd: root });
      assert.equal(result.dir, path.join(root, name));
      const expected = ['fn.yaml', `handler.${lang}`, 'package.json', ...(lang === 'ts' ? ['tsconfig.json'] : []), '.gitignore'];
      assert.deepEqual(result.files, expected);

      const pkg = JSON.parse(await readFile(path.join(result.dir, 'package.json'), 'utf8')) as { type?: string; name?: string };
      assert.equal(pkg.type, 'module');
      assert.equal(pkg.name, name);

      const { spec, dir } = await loadFnYaml(result.dir);
      assert.equal(spec.name, name);
      assert.equal(spec.handler, `handler.${lang}`);
      assert.equal(spec.scale.min, 0, 'the scale section is commented out, so defaults apply');

      const bundle = await bundleFunction({ dir, handler: spec.handler });
      assert.ok((await stat(bundle.file)).size > 0);
      assert.match(bundle.digest, /^sha256:[0-9a-f]{64}$/);
      assert.deepEqual(bundle.warnings, []);
    });

    it('passes `fn build` end to end', async () => {
      const io = memoryIo({ cwd: root });
      assert.equal(await main(fn('init', `built-${lang}`, '--lang', lang), io), 0, io.err());
      assert.match(io.out(), new RegExp(`created function "built-${lang}" in built-${lang}/`));
      const build = memoryIo({ cwd: root });
      assert.equal(await main(fn('build', `built-${lang}`, '--json'), build), 0, build.err());
      const out = JSON.parse(build.out()) as { name: string; file: string; digest: string; bytes: number };
      assert.equal(out.name, `built-${lang}`);
      assert.ok((await stat(out.file)).isFile());
      assert.match(out.digest, /^sha256:/);
    });
  });
}

describe('fn init refusals', () => {
  it('refuses an invalid name with exit code 2 and the naming rule', async () => {
    const io = memoryIo({ cwd: root });
    assert.equal(await main(fn('init', 'Hello_World'), io), 2);
    assert.match(io.err(), /error: invalid function name "Hello_World"/);
    assert.match(io.err(), /hint: use 1-63 lower-case letters/);
  });

  it('refuses a non-empty directory and leaves it alone', async () => {
    const dir = path.join(root, 'taken');
    await mkdir(dir);
    await writeFile(path.join(dir, 'notes.txt'), 'mine');
    const io = memoryIo({ cwd: root });
    assert.equal(await main(fn('init', 'taken'), io), 2);
    assert.match(io.err(), /error: .*taken is not empty \(notes\.txt\)/);
    assert.match(io.err(), /hint: choose an empty or new directory with --dir/);
    await assert.rejects(stat(path.join(dir, 'fn.yaml')));
  });

  it('writes into --dir when given, creating it', async () => {
    const io = memoryIo({ cwd: root });
    assert.equal(await main(fn('init', 'api', '--dir', 'nested/api-fn'), io), 0, io.err());
    assert.ok((await stat(path.join(root, 'nested/api-fn/fn.yaml'))).isFile());
  });

  it('rejects an unknown --lang as a usage error', async () => {
    const io = memoryIo({ cwd: root });
    assert.equal(await main(fn('init', 'x', '--lang', 'py'), io), 2);
    assert.match(io.err(), /Allowed choices are js, ts/);
  });
});
