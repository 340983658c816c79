import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readdir, readFile, realpath, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { tarOf, type TarTestEntry } from './testing/tar.js';
import { isKubefnError, type ErrorCode } from '@kubefn/platform';
import { extractSource, type ExtractLimits } from './source-extract.js';

type Entry = TarTestEntry;

const tgzOf = async (entries: Entry[]) => gzipSync(await tarOf(entries));

/**
 * A fresh parent dir holding `dest` (extracted into) and `sentinel` (must stay untouched), plus
 * a unique absolute path under /tmp for archives to aim at.
 */
interface Sandbox {
  parent: string;
  dest: string;
  sentinel: string;
  escape: string;
}

async function withSandbox(fn: (sb: Sandbox) => Promise<void>): Promise<void> {
  const parent = await realpath(await mkdtemp(path.join(tmpdir(), 'kubefn-src-test-')));
  const sb = {
    parent,
    dest: path.join(parent, 'dest'),
    sentinel: path.join(parent, 'sentinel'),
    escape: `/tmp/kubefn-escape-${randomBytes(6).toString('hex')}`,
  };
  await mkdir(sb.dest);
  await mkdir(sb.sentinel);
  await writeFile(path.join(sb.sentinel, 'keep.txt'), 'untouched');
  try {
    await fn(sb);
  } finally {
    await rm(parent, { recursive: true, force: true });
    await rm(sb.escape, { recursive: true, force: true });
  }
}

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const d of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, d.name);
    out.push(p);
    if (d.isDirectory()) out.push(...(await walk(p)));
  }
  return out;
}

/** Nothing outside dest was written, and no link left in dest leads out of it. */
async function assertContained(sb: Sandbox): Promise<void> {
  assert.deepEqual((await readdir(sb.parent)).sort(), ['dest', 'sentinel']);
  assert.deepEqual(await readdir(sb.sentinel), ['keep.txt']);
  assert.equal(await readFile(path.join(sb.sentinel, 'keep.txt'), 'utf8'), 'untouched');
  assert.equal(existsSync(sb.escape), false, `${sb.escape} was created`);
  assert.equal(existsSync(path.join(sb.parent, 'escaped')), false);
  for (const p of await walk(sb.dest)) {
    if (!(await lstat(p)).isSymbolicLink()) continue;
    const real = await realpath(p).catch(() => sb.dest);
    assert.ok(real === sb.dest || real.startsWith(sb.dest + path.sep), `${p} leads out to ${real}`);
  }
}

/** Extracts `archive` in a sandbox and expects a KubefnError with `code` and a message matching `message`. */
async function expectRefused(
  archive: Buffer | ((sb: Sandbox) => Promise<Buffer>),
  code: ErrorCode,
  message: RegExp,
  limits: Partial<ExtractLimits> = {},
): Promise<void> {
  await withSandbox(async (sb) => {
    const bytes = typeof archive === 'function' ? await archive(sb) : archive;
    await assert.rejects(extractSource(Readable.from([bytes]), sb.dest, limits), (err: unknown) => {
      assert.ok(isKubefnError(err, code), `expected ${code}, got ${String(err)}`);
      assert.match(err.message, message);
      return true;
    });
    await assertContained(sb);
  });
}

describe('extractSource refuses hostile archives', () => {
  it('refuses ../ and a/../../ names', async () => {
    await expectRefused(await tgzOf([{ name: '../escaped', body: 'x' }]), 'BAD_REQUEST', /"\.\.\/escaped" has a "\.\." component/);
    await expectRefused(await tgzOf([{ name: 'a/../../escaped', body: 'x' }]), 'BAD_REQUEST', /"a\/\.\.\/\.\.\/escaped"/);
    await expectRefused(await tgzOf([{ name: 'ok/../inside', body: 'x' }]), 'BAD_REQUEST', /"\.\." component/);
  });

  it('refuses an absolute name', async () => {
    await expectRefused((sb) => tgzOf([{ name: sb.escape, body: 'x' }]), 'BAD_REQUEST', /is an absolute path/);
  });

  it('refuses Windows-style names', async () => {
    await expectRefused(await tgzOf([{ name: '..\\escaped', body: 'x' }]), 'BAD_REQUEST', /Windows path syntax/);
    await expectRefused(await tgzOf([{ name: 'C:/escaped', body: 'x' }]), 'BAD_REQUEST', /Windows path syntax/);
  });

  it('validates a pax path override like any name', async () => {
    await expectRefused(
      await tgzOf([{ name: 'innocent.txt', pax: { path: '../escaped' }, body: 'x' }]),
      'BAD_REQUEST',
      /"\.\.\/escaped" has a "\.\." component/,
    );
    await expectRefused(await tgzOf([{ name: 'innocent.txt', pax: { path: 'a\0b' }, body: 'x' }]), 'BAD_REQUEST', /NUL byte/);
  });

  it('refuses a name that is only the root, and an empty name', async () => {
    await expectRefused(await tgzOf([{ name: '.', type: 'file', body: 'x' }]), 'BAD_REQUEST', /"\." names the archive root/);
    await expectRefused(await tgzOf([{ name: '', body: 'x' }]), 'BAD_REQUEST', /"" is empty/);
  });

  it('refuses symlinks that point out, absolutely or relatively', async () => {
    const link = (linkname: string): Entry => ({ name: 'l', type: 'symlink', linkname });
    await expectRefused(await tgzOf([link('/etc')]), 'BAD_REQUEST', /"l" is a symlink whose target "\/etc" is an absolute path/);
    await expectRefused(await tgzOf([link('../..')]), 'BAD_REQUEST', /leads outside the archive/);
    await expectRefused(await tgzOf([{ name: 'a/b/l', type: 'symlink', linkname: '../../../escaped' }]), 'BAD_REQUEST', /leads outside/);
  });

  it('refuses a chain of links that each look inside but lead out together', async () => {
    const archive = await tgzOf([
      { name: 'd/', type: 'directory' },
      { name: 'd/s', type: 'symlink', linkname: '..' },
      { name: 't', type: 'symlink', linkname: 'd/s/..' },
      { name: 'f.txt', body: 'ok' },
    ]);
    await expectRefused(archive, 'BAD_REQUEST', /"t" is a symlink to "d\/s\/\.\.", which leads outside/);
  });

  it('refuses a dangling symlink, since where it leads cannot be checked', async () => {
    await expectRefused(await tgzOf([{ name: 'l', type: 'symlink', linkname: 'nowhere' }]), 'BAD_REQUEST', /does not resolve/);
  });

  it('never writes a file through a symlink', async () => {
    await expectRefused(
      (sb) => tgzOf([{ name: 'l', type: 'symlink', linkname: sb.escape }, { name: 'l/f', body: 'x' }]),
      'BAD_REQUEST',
      /absolute path/,
    );
    // A link that is itself fine still may not be written through.
    await expectRefused(
      await tgzOf([
        { name: 'sub/', type: 'directory' },
        { name: 'l', type: 'symlink', linkname: 'sub' },
        { name: 'l/f', body: 'x' },
      ]),
      'BAD_REQUEST',
      /"l\/f" goes through "l", which an earlier entry made a symlink/,
    );
  });

  it('refuses hard links to anything but an earlier file', async () => {
    const hard = (linkname: string): Entry => ({ name: 'h', type: 'link', linkname });
    await expectRefused(await tgzOf([hard('/etc/passwd')]), 'BAD_REQUEST', /hard link whose target "\/etc\/passwd" is an absolute path/);
    await expectRefused(await tgzOf([hard('../escaped')]), 'BAD_REQUEST', /"\.\." component/);
    await expectRefused(await tgzOf([hard('later'), { name: 'later', body: 'x' }]), 'BAD_REQUEST', /not an earlier file/);
    await expectRefused(await tgzOf([{ name: 'd/', type: 'directory' }, hard('d')]), 'BAD_REQUEST', /not an earlier file/);
  });

  it('refuses devices, FIFOs and contiguous files', async () => {
    for (const type of ['character-device', 'block-device', 'fifo', 'contiguous-file'] as const) {
      await expectRefused(
        await tgzOf([{ name: 'dev', type, devmajor: 1, devminor: 3 }]),
        'BAD_REQUEST',
        new RegExp(`"dev" is a ${type} entry`),
      );
    }
  });

  it('refuses duplicates and a file where a directory or link already is', async () => {
    await expectRefused(await tgzOf([{ name: 'a', body: '1' }, { name: 'a', body: '2' }]), 'BAD_REQUEST', /repeats a path/);
    await expectRefused(await tgzOf([{ name: 'a/', type: 'directory' }, { name: 'a', body: '2' }]), 'BAD_REQUEST', /repeats a path an earlier entry made a directory/);
    await expectRefused(await tgzOf([{ name: 'a', body: '1' }, { name: 'a/', type: 'directory' }]), 'BAD_REQUEST', /earlier entry made it a file/);
    await expectRefused(
      await tgzOf([{ name: 'x', body: '1' }, { name: 'l', type: 'symlink', linkname: 'x' }, { name: 'l', body: '2' }]),
      'BAD_REQUEST',
      /repeats a path an earlier entry made a symlink/,
    );
  });

  it('refuses too many entries, too many bytes and too large an upload', async () => {
    const many = Array.from({ length: 10 }, (_, i) => ({ name: `f${i}`, body: 'x' }));
    await expectRefused(await tgzOf(many), 'BODY_TOO_LARGE', /"f5" passes the limit of 5 entries/, { maxEntries: 5 });
    await expectRefused(await tgzOf([{ name: 'big', body: Buffer.alloc(5000) }]), 'BODY_TOO_LARGE', /"big" passes the limit of 1000 bytes/, {
      maxBytes: 1000,
    });
    await expectRefused(await tgzOf([{ name: 'h', body: Buffer.alloc(600) }, { name: 'h2', type: 'link', linkname: 'h' }]), 'BODY_TOO_LARGE', /"h2"/, {
      maxBytes: 1000,
    });
    await expectRefused(await tgzOf([{ name: 'r', body: randomBytes(5000) }]), 'BODY_TOO_LARGE', /larger than 1000 bytes as uploaded/, {
      maxCompressedBytes: 1000,
    });
  });

  it('refuses a gzip bomb by its ratio and by its uncompressed size', async () => {
    const bomb = gzipSync(Buffer.alloc(50 * 1024 * 1024));
    assert.ok(bomb.length < 200 * 1024);
    await expectRefused(bomb, 'BODY_TOO_LARGE', /expands more than 200 times/);
    await expectRefused(bomb, 'BODY_TOO_LARGE', /expands to more than/, { maxBytes: 4 * 1024 * 1024, maxEntries: 100, maxRatio: 1e9 });
  });

  it('refuses truncated, corrupt and empty uploads as not a valid archive', async () => {
    const good = await tgzOf([{ name: 'a.txt', body: randomBytes(20_000) }]);
    await expectRefused(good.subarray(0, good.length / 2), 'BAD_REQUEST', /not a valid tar or tar.gz archive/);
    const tar = await tarOf([{ name: 'a.txt', body: randomBytes(20_000) }]);
    await expectRefused(tar.subarray(0, 10_000), 'BAD_REQUEST', /not a valid tar or tar.gz archive/);
    await expectRefused(Buffer.from('this is not a tarball\n'.repeat(100)), 'BAD_REQUEST', /not a valid tar or tar.gz archive/);
    await expectRefused(Buffer.alloc(0), 'BAD_REQUEST', /empty/);
  });

  it('destroys the input at the first error instead of leaving it hanging', async () => {
    await withSandbox(async (sb) => {
      const input = new PassThrough();
      input.write(await tarOf([{ name: '../escaped', body: 'x' }]));
      // never ended: extraction must still finish, and stop the input
      await assert.rejects(extractSource(input, sb.dest), (err: unknown) => isKubefnError(err, 'BAD_REQUEST'));
      assert.equal(input.destroyed, true);
      await assertContained(sb);
    });
  });
});

describe('extractSource', () => {
  it('extracts nested directories, internal links, hard links as copies, with masked modes', async () => {
    await withSandbox(async (sb) => {
      const archive = await tgzOf([
        { name: './', type: 'directory' },
        { name: 'src/', type: 'directory', mode: 0o777 },
        { name: 'src/lib/util.mjs', body: 'export const x = 1;\n', mode: 0o4777 },
        { name: 'src/index.mjs', body: 'import "./lib/util.mjs";\n', mode: 0o666 },
        { name: 'src/copy.mjs', type: 'link', linkname: 'src/index.mjs' },
        { name: 'entry.mjs', type: 'symlink', linkname: 'src/index.mjs' },
        { name: 'src/lib/up', type: 'symlink', linkname: '..' },
        { name: 'empty/', type: 'directory' },
      ]);
      const result = await extractSource(Readable.from([archive]), sb.dest);
      const d = (p: string) => path.join(sb.dest, p);
      assert.deepEqual(result, { files: 3, bytes: 20 + 25 + 25 });
      assert.equal(await readFile(d('entry.mjs'), 'utf8'), 'import "./lib/util.mjs";\n');
      assert.equal(await readFile(d('src/lib/up/copy.mjs'), 'utf8'), 'import "./lib/util.mjs";\n');
      assert.notEqual((await stat(d('src/copy.mjs'))).ino, (await stat(d('src/index.mjs'))).ino);
      assert.equal((await stat(d('src/lib/util.mjs'))).mode & 0o7777, 0o755);
      assert.equal((await stat(d('src/index.mjs'))).mode & 0o7777, 0o644);
      assert.equal((await stat(d('src'))).mode & 0o7777, 0o755);
      assert.ok((await stat(d('empty'))).isDirectory());
      await assertContained(sb);
    });
  });

  it('accepts a plain tar as well as a tar.gz', async () => {
    await withSandbox(async (sb) => {
      await extractSource(Readable.from([await tarOf([{ name: 'a.txt', body: 'plain' }])]), sb.dest);
      assert.equal(await readFile(path.join(sb.dest, 'a.txt'), 'utf8'), 'plain');
    });
  });

  it('needs an existing empty directory', async () => {
    await withSandbox(async (sb) => {
      await assert.rejects(extractSource(Readable.from([await tgzOf([])]), sb.parent), (err: unknown) =>
        isKubefnError(err, 'INTERNAL'),
      );
    });
  });
});
