import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { isKubefnError } from '@kubefn/platform';
import { bundleFunction, ownFiles } from './bundle.js';
import type { NativeTarget } from './native-platform.js';

/** The start of an x86-64 ELF shared object that links glibc (or musl): what the header reader looks at. */
function elf(libc: 'glibc' | 'musl' = 'glibc', machine = 0x3e): Buffer {
  const head = Buffer.alloc(64);
  head.writeUInt32BE(0x7f454c46, 0);
  head[4] = 2; // 64-bit
  head[5] = 1; // little-endian
  head[6] = 1;
  head.writeUInt16LE(machine, 18);
  return Buffer.concat([head, Buffer.from(libc === 'glibc' ? '\0libc.so.6\0GLIBC_2.2.5\0' : '\0libc.musl-x86_64.so.1\0')]);
}

const linuxGlibc: NativeTarget = { os: 'linux', arch: 'x64', libc: 'glibc' };

describe('native modules in bundles', () => {
  const roots: string[] = [];
  after(async () => {
    for (const r of roots) await rm(r, { recursive: true, force: true });
  });

  /** A function directory whose node_modules holds `files` (path -> content; objects become JSON). */
  async function project(handler: string, files: Record<string, string | Buffer | object>): Promise<string> {
    const root = await mkdtemp(path.join(tmpdir(), 'kubefn-native-'));
    roots.push(root);
    const all: Record<string, string | Buffer | object> = { 'handler.js': handler, ...files };
    for (const [rel, content] of Object.entries(all)) {
      const file = path.join(root, ...rel.split('/'));
      await mkdir(path.dirname(file), { recursive: true });
      await writeFile(file, typeof content === 'string' || Buffer.isBuffer(content) ? content : JSON.stringify(content));
    }
    return root;
  }

  const packages = {
    // A node-gyp package, compiled at install time.
    'node_modules/gyp-pkg/package.json': { name: 'gyp-pkg', version: '1.0.0', main: 'index.js', dependencies: { bindings: '^1.5.0', 'tiny-dep': '^1.0.0' } },
    'node_modules/gyp-pkg/binding.gyp': '{ "targets": [] }',
    'node_modules/gyp-pkg/index.js': "module.exports = require('bindings')('gyp');\n",
    'node_modules/gyp-pkg/build/Release/gyp.node': elf(),
    'node_modules/bindings/package.json': { name: 'bindings', version: '1.5.0', main: 'bindings.js' },
    'node_modules/bindings/bindings.js': 'module.exports = (n) => require(`./build/Release/${n}.node`);\n',
    // prebuildify: prebuilt binaries per platform, found by node-gyp-build.
    'node_modules/prebuilt-pkg/package.json': { name: 'prebuilt-pkg', version: '2.1.0', main: 'index.js', dependencies: { 'node-gyp-build': '^4.8.0' } },
    'node_modules/prebuilt-pkg/index.js': "module.exports = require('node-gyp-build')(__dirname);\n",
    'node_modules/prebuilt-pkg/prebuilds/linux-x64/prebuilt-pkg.glibc.node': elf(),
    'node_modules/prebuilt-pkg/prebuilds/darwin-arm64/prebuilt-pkg.node': Buffer.from([0xcf, 0xfa, 0xed, 0xfe, 0x0c, 0, 0, 0x01]),
    'node_modules/node-gyp-build/package.json': { name: 'node-gyp-build', version: '4.8.0', main: 'index.js' },
    'node_modules/node-gyp-build/index.js': 'module.exports = () => ({});\n',
    // sharp's way: JavaScript only, binaries in a platform package, a shared library in another.
    'node_modules/@fake/img/package.json': {
      name: '@fake/img',
      version: '0.9.0',
      main: 'index.js',
      dependencies: { 'tiny-dep': '^2.0.0' },
      optionalDependencies: { '@fake/img-linux-x64': '0.9.0', '@fake/img-darwin-arm64': '0.9.0' },
    },
    'node_modules/@fake/img/index.js': "require('tiny-dep'); module.exports = require('@fake/img-linux-x64/img.node');\n",
    'node_modules/@fake/img/node_modules/tiny-dep/package.json': { name: 'tiny-dep', version: '2.0.0' },
    'node_modules/@fake/img/node_modules/tiny-dep/index.js': 'module.exports = 2;\n',
    'node_modules/@fake/img-linux-x64/package.json': {
      name: '@fake/img-linux-x64',
      version: '0.9.0',
      os: ['linux'],
      cpu: ['x64'],
      libc: ['glibc'],
      optionalDependencies: { '@fake/img-libs-linux-x64': '1.0.0' },
    },
    'node_modules/@fake/img-linux-x64/lib/img.node': elf(),
    'node_modules/@fake/img-libs-linux-x64/package.json': { name: '@fake/img-libs-linux-x64', version: '1.0.0', os: ['linux'], cpu: ['x64'], libc: ['glibc'] },
    'node_modules/@fake/img-libs-linux-x64/lib/libfake.so.1': elf(),
    // Plain JavaScript, at the top in another version than the one @fake/img needs.
    'node_modules/tiny-dep/package.json': { name: 'tiny-dep', version: '1.0.0', main: 'index.js' },
    'node_modules/tiny-dep/index.js': 'module.exports = "tiny-dep-one";\n',
  };

  const allHandler = [
    "import gyp from 'gyp-pkg';",
    "import prebuilt from 'prebuilt-pkg';",
    "import img from '@fake/img';",
    "import tiny from 'tiny-dep';",
    'export default () => ({ gyp, prebuilt, img, tiny });',
    '',
  ].join('\n');

  it('finds binding.gyp, node-gyp-build and platform packages, leaves them external and lists their files', async () => {
    const dir = await project(allHandler, packages);
    const b = await bundleFunction({ dir, handler: 'handler.js', target: linuxGlibc });
    assert.deepEqual(b.natives, [
      { name: '@fake/img', version: '0.9.0', platform: 'linux-x64-glibc' },
      { name: 'gyp-pkg', version: '1.0.0', platform: 'linux-x64-glibc' },
      { name: 'prebuilt-pkg', version: '2.1.0', platform: 'linux-x64-glibc' },
    ]);
    const text = await readFile(b.file, 'utf8');
    for (const name of ['gyp-pkg', 'prebuilt-pkg', '@fake/img']) assert.match(text, new RegExp(`(from |require\\()"${name.replace("/", "\\/")}"`), `${name} stays an import`);
    assert.match(text, /tiny-dep-one/, 'plain JavaScript is still bundled');
    assert.doesNotMatch(text, /node-gyp-build|bindings\.js/, 'what native packages load is not bundled');

    const paths = ownFiles(b).map((f) => f.path);
    for (const p of [
      'node_modules/gyp-pkg/build/Release/gyp.node',
      'node_modules/gyp-pkg/index.js',
      'node_modules/bindings/bindings.js',
      'node_modules/prebuilt-pkg/prebuilds/linux-x64/prebuilt-pkg.glibc.node',
      'node_modules/node-gyp-build/index.js',
      'node_modules/@fake/img/index.js',
      'node_modules/@fake/img-linux-x64/lib/img.node',
      'node_modules/@fake/img-libs-linux-x64/lib/libfake.so.1',
    ]) {
      assert.ok(paths.includes(p), `${p} is shipped`);
    }
    assert.deepEqual(paths, [...paths].sort(), 'files are in a stable order');
    const source = (p: string) => ownFiles(b).find((f) => f.path === p)?.source;
    assert.equal(source('node_modules/gyp-pkg/index.js'), path.join(dir, 'node_modules', 'gyp-pkg', 'index.js'));
    // @fake/img needs tiny-dep 2 and gyp-pkg tiny-dep 1: the first (by name) takes the top, the other nests, as npm would.
    assert.equal(source('node_modules/tiny-dep/index.js'), path.join(dir, 'node_modules', '@fake', 'img', 'node_modules', 'tiny-dep', 'index.js'));
    assert.equal(source('node_modules/gyp-pkg/node_modules/tiny-dep/index.js'), path.join(dir, 'node_modules', 'tiny-dep', 'index.js'));
    assert.ok(!paths.some((p) => p.startsWith('node_modules/@fake/img/node_modules/')));
  });

  it('refuses a musl target, naming the package built for glibc', async () => {
    const dir = await project("import img from '@fake/img';\nexport default () => img;\n", packages);
    await assert.rejects(
      bundleFunction({ dir, handler: 'handler.js', target: { os: 'linux', arch: 'x64', libc: 'musl' } }),
      (err) => isKubefnError(err, 'BUILD_FAILED') && /@fake\/img is built for linux-x64-glibc, but the function runs on linux-x64-musl/.test((err as Error).message),
    );
  });

  it('takes the prebuild that matches the target, and refuses a platform none was built for', async () => {
    const dir = await project("import p from 'prebuilt-pkg';\nexport default () => p;\n", packages);
    const mac = await bundleFunction({ dir, handler: 'handler.js', target: { os: 'darwin', arch: 'arm64' } });
    assert.deepEqual(mac.natives, [{ name: 'prebuilt-pkg', version: '2.1.0', platform: 'darwin-arm64' }]);
    await assert.rejects(
      bundleFunction({ dir, handler: 'handler.js', target: { os: 'win32', arch: 'x64' } }),
      (err) => isKubefnError(err, 'BUILD_FAILED') && /prebuilt-pkg is built for .*darwin-arm64.*win32-x64/.test((err as Error).message),
    );
  });

  it('refuses a node-gyp package that was never compiled', async () => {
    const dir = await project("import g from 'raw-gyp';\nexport default () => g;\n", {
      'node_modules/raw-gyp/package.json': { name: 'raw-gyp', version: '0.1.0', main: 'index.js', gypfile: true },
      'node_modules/raw-gyp/binding.gyp': '{ "targets": [] }',
      'node_modules/raw-gyp/index.js': "module.exports = require('./build/Release/raw.node');\n",
    });
    await assert.rejects(
      bundleFunction({ dir, handler: 'handler.js', target: linuxGlibc }),
      (err) => isKubefnError(err, 'BUILD_FAILED') && /raw-gyp \(has binding\.gyp\) has no compiled \.node file/.test((err as Error).message),
    );
  });

  it("ships the function's own .node file, required relative to the bundle", async () => {
    const dir = await project('export default () => null;\n', {
      'native/own.node': elf('musl'),
      'src/handler.js': "const addon = require('../native/own.node');\nexport default () => addon;\n",
    });
    const b = await bundleFunction({ dir, handler: 'src/handler.js', target: { os: 'linux', arch: 'x64', libc: 'musl' } });
    assert.deepEqual(b.natives, [{ name: 'native/own.node', version: '', platform: 'linux-x64-musl' }]);
    assert.deepEqual(ownFiles(b), [{ path: 'native/own.node', source: path.join(dir, 'native', 'own.node') }]);
    assert.match(await readFile(b.file, 'utf8'), /require\("\.\/native\/own\.node"\)/);
    await assert.rejects(bundleFunction({ dir, handler: 'src/handler.js', target: linuxGlibc }), /native\/own\.node is built for linux-x64-musl/);
  });

  it('leaves out a package only for another os (fsevents), with a warning', async () => {
    const dir = await project("import f from 'fsevents-like';\nexport default () => f;\n", {
      'node_modules/fsevents-like/package.json': { name: 'fsevents-like', version: '2.3.3', main: 'fsevents.js', os: ['darwin'] },
      'node_modules/fsevents-like/fsevents.js': "module.exports = require('./fsevents.node');\n",
      'node_modules/fsevents-like/fsevents.node': Buffer.from([0xcf, 0xfa, 0xed, 0xfe, 0x07, 0, 0, 0x01]),
    });
    const b = await bundleFunction({ dir, handler: 'handler.js', target: linuxGlibc });
    assert.deepEqual(b.natives, []);
    assert.deepEqual(ownFiles(b), []);
    assert.ok(b.warnings.some((w) => /fsevents-like is only for \["darwin"\] and is left out/.test(w)), b.warnings.join('\n'));
  });

  it('has no natives and no files for plain JavaScript', async () => {
    const dir = await project("import tiny from 'tiny-dep';\nexport default () => tiny;\n", packages);
    const b = await bundleFunction({ dir, handler: 'handler.js', target: linuxGlibc });
    assert.deepEqual(b.natives, []);
    assert.deepEqual(ownFiles(b), []);
  });
});
