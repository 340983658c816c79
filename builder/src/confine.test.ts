import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { isKubefnError, KubefnError } from '@kubefn/platform';
import { bundleFunction, ownFiles, type Bundle } from './bundle.js';

/** A line of /etc/passwd on every Linux machine, and what the foreign files made here hold. */
const secret = 'root:x:0:0';

describe('a confined build (uploaded source) reads nothing outside its directory', () => {
  const roots: string[] = [];
  after(async () => {
    for (const r of roots) await rm(r, { recursive: true, force: true });
  });

  /**
   * `<outside>/scratch/fn` with `files`; `<outside>` holds foreign files: secret.txt, a package
   * installed above the function (node_modules/outside-pkg) and node_modules/secret/passwd.
   */
  async function upload(files: Record<string, string | Buffer>): Promise<{ dir: string; outside: string }> {
    const outside = await realpath(await mkdtemp(path.join(tmpdir(), 'kubefn-confine-')));
    roots.push(outside);
    const dir = path.join(outside, 'scratch', 'fn');
    const write = async (file: string, content: string | Buffer) => {
      await mkdir(path.dirname(file), { recursive: true });
      await writeFile(file, content);
    };
    await write(path.join(outside, 'secret.txt'), `${secret}:root:/root:/bin/bash\n`);
    await write(path.join(outside, 'node_modules', 'outside-pkg', 'index.js'), `module.exports = ${JSON.stringify(secret)};\n`);
    await write(path.join(outside, 'node_modules', 'secret', 'passwd'), `${secret}:root:/root:/bin/bash\n`);
    for (const [rel, content] of Object.entries(files)) await write(path.join(dir, rel), content);
    return { dir, outside };
  }

  const bundle = (dir: string, confine = true) => bundleFunction({ dir, handler: 'handler.js', outDir: path.join(dir, '..', 'out'), confine });

  /** The build is refused with BUILD_FAILED matching `why`, and nothing of a foreign file is in the error. */
  async function refused(dir: string, why: RegExp): Promise<KubefnError> {
    let caught: unknown;
    await bundle(dir).then(
      (b) => assert.fail(`built ${b.file} shipping ${ownFiles(b).map((f) => f.path).join(', ')}`),
      (err: unknown) => (caught = err),
    );
    assert.ok(isKubefnError(caught, 'BUILD_FAILED'), String(caught));
    const err = caught as KubefnError;
    assert.match(err.message, why);
    assertClean(JSON.stringify({ ...err.toJSON(), stack: err.stack, cause: String(err.cause) }));
    return err;
  }

  const assertClean = (text: string) => assert.ok(!text.includes(secret), `foreign content leaked:\n${text}`);

  /** The bundle's text, its warnings and the files it ships hold nothing foreign. */
  async function assertBuiltClean(b: Bundle, outside: string): Promise<void> {
    assertClean(await readFile(b.file, 'utf8'));
    assertClean(b.warnings.join('\n'));
    const root = path.join(outside, 'scratch', 'fn');
    for (const f of ownFiles(b)) assert.ok(f.source.startsWith(root + path.sep), `${f.path} ships ${f.source}`);
  }

  it('refuses an absolute import of /etc/passwd, naming the import and the file', async () => {
    const { dir } = await upload({ 'handler.js': "import pw from '/etc/passwd';\nexport default () => new Response(pw);\n" });
    const err = await refused(dir, /handler\.js:1:\d+: handler\.js imports "\/etc\/passwd", which is outside the function directory/);
    assert.match(err.hint ?? '', /reads only the uploaded files/);
  });

  it('refuses a relative import that climbs out, text loader or not', async () => {
    const { dir } = await upload({
      'handler.js': "import t from './lib/t.js';\nexport default () => new Response(t);\n",
      'lib/t.js': "import s from '../../../secret.txt';\nimport pw from '../../../../../../../../../../../../../etc/passwd';\nexport default s + pw;\n",
    });
    const err = await refused(dir, /lib\/t\.js imports "\.\.\/\.\.\/\.\.\/secret\.txt", which is outside the function directory/);
    assert.match(err.message, /lib\/t\.js imports "(\.\.\/)+etc\/passwd"/);
  });

  it('refuses the files outside that a pattern import matches, without naming them', async () => {
    const { dir } = await upload({ 'handler.js': 'export default async (name) => new Response((await import(`../../${name}.txt`)).default);\n' });
    const err = await refused(dir, /handler\.js:1:\d+: this import reads a file outside the function directory: refused/);
    assert.doesNotMatch(err.message, /secret/);
  });

  it('refuses a package that only resolves in a node_modules above the function', async () => {
    const { dir } = await upload({ 'handler.js': "import s from 'outside-pkg';\nexport default () => new Response(s);\n" });
    await refused(dir, /handler\.js imports "outside-pkg", which is not installed in the function's node_modules/);
  });

  it('refuses a symlink in the tree that leads out (a file, and node_modules/x -> /etc)', async () => {
    const file = await upload({ 'handler.js': "import s from './data.txt';\nexport default () => new Response(s);\n" });
    await symlink(path.join(file.outside, 'secret.txt'), path.join(file.dir, 'data.txt'));
    await refused(file.dir, /"data\.txt" is a symlink that leads outside the function directory/);

    const pkg = await upload({ 'handler.js': "import pw from 'etc/passwd';\nexport default () => new Response(pw);\n" });
    await mkdir(path.join(pkg.dir, 'node_modules'));
    await symlink('/etc', path.join(pkg.dir, 'node_modules', 'etc'));
    await refused(pkg.dir, /"node_modules\/etc" is a symlink that leads outside the function directory/);
  });

  it('ships no file from outside that the code names beside itself (new URL, path.join(__dirname))', async () => {
    const { dir, outside } = await upload({
      'handler.js': [
        "import { readFileSync } from 'node:fs';",
        "import path from 'node:path';",
        "const a = new URL('/etc/passwd', import.meta.url);",
        "const b = new URL('../../node_modules/secret/passwd', import.meta.url);",
        "const c = path.join(__dirname, '../../node_modules/secret/passwd');",
        'export default () => new Response(readFileSync(a) + readFileSync(b) + readFileSync(c));',
        '',
      ].join('\n'),
    });
    // Built locally, the file above is shipped as node_modules/secret/passwd: a workspace's hoisted package.
    assert.ok((await bundle(dir, false)).files.some((f) => f.path === 'node_modules/secret/passwd'));
    const b = await bundle(dir);
    assert.deepEqual(ownFiles(b), []);
    assert.ok(b.warnings.some((w) => /reads "\.\.\/\.\.\/node_modules\/secret\/passwd" next to itself, which is outside the function directory/.test(w)), b.warnings.join('\n'));
    await assertBuiltClean(b, outside);
  });

  it('ships no dependency of a native package from a node_modules above the function', async () => {
    // An x86-64 ELF header that links glibc: all the addon inspection reads.
    const head = Buffer.alloc(64);
    head.writeUInt32BE(0x7f454c46, 0);
    head.set([2, 1, 1], 4);
    head.writeUInt16LE(0x3e, 18);
    const { dir, outside } = await upload({
      'handler.js': "import gyp from 'gyp-pkg';\nexport default () => new Response(String(gyp));\n",
      'node_modules/gyp-pkg/package.json': JSON.stringify({ name: 'gyp-pkg', version: '1.0.0', main: 'index.js', dependencies: { 'outside-pkg': '1' } }),
      'node_modules/gyp-pkg/binding.gyp': '{ "targets": [] }',
      'node_modules/gyp-pkg/index.js': "module.exports = require('./build/Release/gyp.node');\n",
      'node_modules/gyp-pkg/build/Release/gyp.node': Buffer.concat([head, Buffer.from('\0libc.so.6\0GLIBC_2.2.5\0')]),
    });
    await writeFile(path.join(outside, 'node_modules', 'outside-pkg', 'package.json'), JSON.stringify({ name: 'outside-pkg', version: '1.0.0' }));
    const target = { os: 'linux', arch: 'x64', libc: 'glibc' } as const;
    const local = await bundleFunction({ dir, handler: 'handler.js', outDir: path.join(dir, '..', 'out'), target });
    assert.ok(local.files.some((f) => f.path === 'node_modules/outside-pkg/index.js'), 'a local build ships it, as npm workspaces hoist packages');
    const err = await bundleFunction({ dir, handler: 'handler.js', outDir: path.join(dir, '..', 'out'), target, confine: true }).then(
      () => assert.fail('built'),
      (e: unknown) => e,
    );
    assert.ok(isKubefnError(err, 'BUILD_FAILED') && /gyp-pkg needs outside-pkg, which is not installed/.test(err.message), String(err));
  });

  it('refuses a tsconfig.json that extends a file outside, before esbuild reads it', async () => {
    const abs = await upload({ 'handler.js': 'export default () => new Response("x");\n', 'tsconfig.json': '{ "extends": "/etc/passwd" }\n' });
    await refused(abs.dir, /tsconfig\.json extends "\/etc\/passwd", which is outside the function directory/);
    const rel = await upload({
      'handler.js': 'export default () => new Response("x");\n',
      // Comments and trailing commas, as tsconfig files have them.
      'tsconfig.json': '{\n  // base\n  "extends": ["./base.json", "../../secret.txt",],\n}\n',
      'base.json': '{}\n',
    });
    await refused(rel.dir, /tsconfig\.json extends "\.\.\/\.\.\/secret\.txt", which is outside the function directory/);
    const pkg = await upload({ 'handler.js': 'export default () => new Response("x");\n', 'tsconfig.json': '{ "extends": "outside-pkg/index.js" }\n' });
    await refused(pkg.dir, /tsconfig\.json extends "outside-pkg\/index\.js", which is not installed in the function's node_modules/);
  });

  it('never shows a line of a package.json or tsconfig.json above the function that esbuild cannot parse', async () => {
    const { dir, outside } = await upload({ 'handler.js': 'export default () => new Response("x");\n' });
    await writeFile(path.join(outside, 'package.json'), `${secret}:root:/root:/bin/bash\n`);
    await writeFile(path.join(outside, 'scratch', 'tsconfig.json'), `{ "compilerOptions": { ${secret} } }\n`);
    // Built locally, esbuild quotes both files.
    await assert.rejects(bundle(dir, false), (err: Error) => err.message.includes(secret));
    const err = await refused(dir, /a problem in a file outside the function directory, "package\.json" \(its text is not shown/);
    assert.match(err.message, /a problem in a file outside the function directory, "tsconfig\.json"/);
  });

  it('builds an upload with its own packages, tsconfig and extends inside it, like a local build', async () => {
    const files = {
      'handler.ts': "import { shout } from 'inside-pkg';\nimport page from './page.html';\nimport { view } from './view.tsx';\nexport default (): Response => new Response(shout(page) + typeof view());\n",
      'view.tsx': 'export const view = () => <p>hi</p>;\n',
      'page.html': '<p>hi</p>\n',
      'node_modules/inside-pkg/package.json': '{ "name": "inside-pkg", "main": "index.js" }\n',
      'node_modules/inside-pkg/index.js': 'exports.shout = (s) => s.toUpperCase();\n',
      'node_modules/@tsconfig/base/tsconfig.json': '{ "compilerOptions": { "strict": true, "jsxFactory": "shoutElement" } }\n',
      'tsconfig.json': '{ "extends": "@tsconfig/base/tsconfig.json" }\n',
    };
    const { dir } = await upload(files);
    const confined = await bundleFunction({ dir, handler: 'handler.ts', outDir: path.join(dir, '..', 'out1'), confine: true });
    const local = await bundleFunction({ dir, handler: 'handler.ts', outDir: path.join(dir, '..', 'out2') });
    assert.equal(confined.digest, local.digest);
    assert.match(await readFile(confined.file, 'utf8'), /shoutElement\("p"/, 'the tsconfig chain inside applies');
  });
});
