import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readdir, readFile, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { isKubefnError } from '@kubefn/platform';
import { extractSource } from './source-extract.js';
import { packSource } from './source-pack.js';

describe('packSource', () => {
  async function withFunctionDir(fn: (dir: string) => Promise<void>): Promise<void> {
    const dir = await mkdtemp(path.join(tmpdir(), 'kubefn-pack-test-'));
    const files: Record<string, string> = {
      'index.mjs': 'export default () => new Response("hi");\n',
      'lib/util.mjs': 'export const x = 1;\n',
      'lib/data/table.json': '{}',
      '.git/HEAD': 'ref: refs/heads/main\n',
      '.kubefn/state.json': '{}',
      'node_modules/.cache/esbuild/x': 'cache',
      'node_modules/dep/index.js': 'module.exports = 1;\n',
      'dist/out.js': 'built',
      'app.log': 'log',
      'lib/debug.log': 'log',
      'secret.txt': 'secret',
      '.kubefnignore': '# build output\ndist/\n*.log\n/secret.txt\n',
    };
    for (const [rel, content] of Object.entries(files)) {
      await mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
      await writeFile(path.join(dir, rel), content);
    }
    await mkdir(path.join(dir, 'public'));
    await symlink('index.mjs', path.join(dir, 'main.mjs'));
    try {
      await fn(dir);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  it('round-trips through extractSource, honouring .kubefnignore and skipping .git', async () => {
    await withFunctionDir(async (dir) => {
      const packed = await packSource(dir);
      assert.equal(packed.files, 6);
      const dest = await mkdtemp(path.join(tmpdir(), 'kubefn-unpack-test-'));
      try {
        const result = await extractSource(Readable.from([packed.archive]), dest);
        assert.deepEqual(result, { files: packed.files, bytes: packed.bytes });
        const names = (await readdir(dest, { recursive: true })).sort();
        assert.deepEqual(names, [
          '.kubefnignore',
          'index.mjs',
          'lib',
          'lib/data',
          'lib/data/table.json',
          'lib/util.mjs',
          'main.mjs',
          'node_modules',
          'node_modules/dep',
          'node_modules/dep/index.js',
          'public',
        ]);
        // the symlink was stored as the file it points to
        assert.equal((await lstat(path.join(dest, 'main.mjs'))).isFile(), true);
        assert.equal(await readFile(path.join(dest, 'main.mjs'), 'utf8'), await readFile(path.join(dir, 'index.mjs'), 'utf8'));
      } finally {
        await rm(dest, { recursive: true, force: true });
      }
    });
  });

  it('gives the same bytes every time, whatever the file times', async () => {
    await withFunctionDir(async (dir) => {
      const a = await packSource(dir);
      await utimes(path.join(dir, 'index.mjs'), new Date(), new Date('2001-02-03'));
      const b = await packSource(dir);
      assert.ok(a.archive.equals(b.archive));
      assert.equal(a.archive[9], 3);
      assert.ok(gunzipSync(a.archive).length > 0);
    });
  });

  it('refuses a symlink that leads out of the directory', async () => {
    await withFunctionDir(async (dir) => {
      const outside = path.join(tmpdir(), `kubefn-outside-${randomBytes(6).toString('hex')}`);
      await writeFile(outside, 'not yours');
      await symlink(outside, path.join(dir, 'host'));
      await assert.rejects(packSource(dir).finally(() => rm(outside)), (err: unknown) => {
        assert.ok(isKubefnError(err, 'BAD_REQUEST'));
        assert.match(err.message, /"host": it is a symlink to .*kubefn-outside-\w+, outside/);
        assert.match(err.hint ?? '', /\.kubefnignore/);
        return true;
      });
    });
  });

  it('refuses a link to a directory and "!" ignore patterns it does not support', async () => {
    await withFunctionDir(async (dir) => {
      await symlink('lib', path.join(dir, 'lib2'));
      await assert.rejects(packSource(dir), /"lib2": only symlinks to files are packed/);
      await writeFile(path.join(dir, '.kubefnignore'), 'lib2\n!dist/keep.js\n');
      await assert.rejects(packSource(dir), (err: unknown) => isKubefnError(err, 'INVALID_SPEC'));
    });
  });

  it('refuses a directory past its limits, with a hint naming .kubefnignore', async () => {
    await withFunctionDir(async (dir) => {
      for (const options of [{ maxBytes: 10 }, { maxEntries: 3 }]) {
        await assert.rejects(packSource(dir, options), (err: unknown) => {
          assert.ok(isKubefnError(err, 'BODY_TOO_LARGE'));
          assert.match(err.hint ?? '', /\.kubefnignore/);
          return true;
        });
      }
    });
  });
});
