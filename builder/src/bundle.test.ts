import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { createInterface } from 'node:readline';
import { after, describe, it } from 'node:test';
import { isKubefnError } from '@kubefn/platform';
import { bundleFunction, ownFiles, runtimeFileName, type Bundle } from './bundle.js';

/** Runs `script` with node -e; its exit code and output. */
function runNode(script: string): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['-e', script], { env: { PATH: process.env.PATH, KUBEFN_FUNCTION: 'fn', PORT: '0', ADMIN_PORT: '0', KUBEFN_HOST: '127.0.0.1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.once('close', (code) => (clearTimeout(timer), resolve({ code, out, err })));
  });
}

describe('bundleFunction', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  async function functionAt(depth: number): Promise<string> {
    const root = await mkdtemp(path.join(tmpdir(), 'kubefn-bundle-'));
    dirs.push(root);
    const dir = path.join(root, ...Array.from({ length: depth }, (_, i) => `level${i}`), 'fn');
    await mkdir(path.join(dir, 'lib'), { recursive: true });
    await writeFile(path.join(dir, 'handler.js'), "import { greet } from './lib/greet.js';\nexport default (req) => greet(new URL(req.url).searchParams.get('name'));\n");
    await writeFile(path.join(dir, 'lib', 'greet.js'), 'export const greet = (n) => { if (n === "boom") throw new Error("boom"); return `hi ${n}`; };\n');
    return dir;
  }

  it('gives the same bytes wherever the function and its output live', async () => {
    const shallow = await bundleFunction({ dir: await functionAt(0), handler: 'handler.js' });
    const deepDir = await functionAt(4);
    const deep = await bundleFunction({ dir: deepDir, handler: 'handler.js', outDir: path.join(deepDir, 'elsewhere', 'out') });
    assert.equal(deep.digest, shallow.digest);
    assert.deepEqual(await readFile(deep.file), await readFile(shallow.file));
  });

  it('names sources relative to the function, packages and the runtime without machine paths', async () => {
    const b = await bundleFunction({ dir: await functionAt(2), handler: 'handler.js' });
    const text = await readFile(b.file, 'utf8');
    const inline = /\/\/# sourceMappingURL=data:application\/json;base64,(\S+)\n$/.exec(text);
    assert.ok(inline, 'the source map is inline, at the end');
    const map = JSON.parse(Buffer.from(inline[1]!, 'base64').toString()) as { sources: string[] };
    assert.ok(map.sources.includes('handler.js'));
    assert.ok(map.sources.includes('lib/greet.js'));
    assert.ok(map.sources.some((s) => s.startsWith('kubefn/runtime-node/')));
    for (const s of map.sources) assert.doesNotMatch(s, /^\.\.\/|^\//, `source ${s} depends on the disk layout`);
    assert.doesNotMatch(text, new RegExp(tmpdir().replace(/[/\\]/g, '.')), 'no temp path in the bundle');
    for (const line of text.split('\n').filter((l) => l.startsWith('// '))) assert.doesNotMatch(line, /^\/\/ \.\.\//);
    assert.doesNotMatch(text, /"\.\.\/[^"\n]*node_modules/, 'no module key climbs out of the function directory');
  });

  it('refuses a handler outside the function directory', async () => {
    const dir = await functionAt(1);
    await assert.rejects(bundleFunction({ dir, handler: '../../x.js' }), (err) => isKubefnError(err, 'BUILD_FAILED'));
  });
});

describe('bundle format, loaders and the files shipped with it', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  /** A function directory holding `files` (path -> content). */
  async function fn(files: Record<string, string>): Promise<string> {
    const dir = await mkdtemp(path.join(tmpdir(), 'kubefn-bundle-files-'));
    dirs.push(dir);
    for (const [name, content] of Object.entries(files)) {
      await mkdir(path.dirname(path.join(dir, name)), { recursive: true });
      await writeFile(path.join(dir, name), content);
    }
    return dir;
  }

  /** Copies the bundle and its files into a fresh app root, as every driver does, and answers one GET there. */
  async function call(bundle: Bundle, query = ''): Promise<{ status: number; body: string; root: string }> {
    const root = await mkdtemp(path.join(tmpdir(), 'kubefn-app-'));
    dirs.push(root);
    await copyFile(bundle.file, path.join(root, path.basename(bundle.file)));
    for (const f of bundle.files) {
      await mkdir(path.dirname(path.join(root, f.path)), { recursive: true });
      await copyFile(f.source, path.join(root, f.path));
    }
    const child = spawn(process.execPath, [path.join(root, path.basename(bundle.file))], {
      env: { PATH: process.env.PATH, PORT: '0', ADMIN_PORT: '0', KUBEFN_HOST: '127.0.0.1', KUBEFN_FUNCTION: 'fn' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      const lines = createInterface({ input: child.stdout! });
      let port: number | undefined;
      for await (const line of lines) {
        const m = /"msg":"ready".*"port":(\d+)/.exec(line);
        if (m) {
          port = Number(m[1]);
          break;
        }
      }
      assert.ok(port, 'the bundle reports ready');
      const res = await fetch(`http://127.0.0.1:${port}/${query}`, { signal: AbortSignal.timeout(20_000) });
      return { status: res.status, body: await res.text(), root };
    } finally {
      child.kill('SIGKILL');
    }
  }

  it('emits CommonJS (fn.cjs), so sloppy-mode code keeps working', async () => {
    const dir = await fn({
      'handler.js': "const count = require('./lib/count.js');\nmodule.exports = () => `count=${count()}`;\n",
      'lib/count.js': 'module.exports = function () { bucket = (typeof bucket === "number" ? bucket : 0) + 1; return bucket; };\n',
    });
    const b = await bundleFunction({ dir, handler: 'handler.js' });
    assert.equal(b.format, 'cjs');
    assert.equal(path.basename(b.file), 'fn.cjs');
    assert.deepEqual(ownFiles(b), []);
    assert.deepEqual(await call(b).then((r) => [r.status, r.body]), [200, 'count=1']);
  });

  it('ships kubefn\'s runtime beside the bundle, the same for every function, and a warm runtime never reads it', async () => {
    const a = await bundleFunction({ dir: await fn({ 'handler.js': 'module.exports = () => "a";\n' }), handler: 'handler.js' });
    const b = await bundleFunction({ dir: await fn({ 'handler.mjs': 'await Promise.resolve();\nexport default () => "b";\n' }), handler: 'handler.mjs' });
    const runtimeOf = (x: Bundle) => x.files.find((f) => f.path === runtimeFileName)!.source;
    assert.deepEqual(await readFile(runtimeOf(a)), await readFile(runtimeOf(b)));
    assert.ok(a.bytes < 64 * 1024, `the bundle holds the handler, not the runtime (${a.bytes} bytes)`);
    assert.deepEqual(await call(a).then((r) => r.body), 'a');
    assert.deepEqual(await call(b).then((r) => r.body), 'b');

    // Where a runtime is already running (a warm one), the bundle hands it the handler; without the
    // runtime file beside it, that still works, and a plain start does not.
    for (const x of [a, b]) {
      const root = await mkdtemp(path.join(tmpdir(), 'kubefn-app-'));
      dirs.push(root);
      const file = path.join(root, path.basename(x.file));
      await copyFile(x.file, file);
      const load = x.format === 'cjs' ? `require(${JSON.stringify(file)})` : `import(${JSON.stringify(pathToFileURL(file).href)})`;
      const warm = await runNode(`globalThis[Symbol.for('kubefn.warmRun')] = async (m) => { const h = m.default ?? m; console.log('handler:', await (h.default ?? h)()); }; ${load};`);
      assert.match(warm.out, /handler: [ab]/, warm.err);
      const plain = await runNode(`${load};`);
      assert.notEqual(plain.code, 0);
      assert.match(plain.out + plain.err, /fn\.runtime\.cjs/);
    }
  });

  it('keeps an ES module (fn.mjs) only for top-level await, with import.meta.url and require working', async () => {
    const dir = await fn({
      'handler.mjs': "import { createHash } from 'node:crypto';\nconst n = await Promise.resolve(2);\nconst cjs = require('./lib/cjs.cjs');\nexport default () => `${n} ${cjs.kind} ${new URL('./x', import.meta.url).pathname.endsWith('/x')}`;\nvoid createHash;\n",
      'lib/cjs.cjs': "exports.kind = typeof require('node:os').cpus;\n",
    });
    const b = await bundleFunction({ dir, handler: 'handler.mjs' });
    assert.equal(b.format, 'esm');
    assert.equal(path.basename(b.file), 'fn.mjs');
    assert.deepEqual(await call(b).then((r) => r.body), '2 function true');
  });

  it('gives each module its own __dirname, __filename, require.resolve and import.meta.url under the app root, and ships what it reads', async () => {
    const dir = await fn({
      'handler.js': [
        "const fs = require('fs');",
        "const path = require('path');",
        "const sub = require('./src/h.js');",
        "const esm = require('./esm/page.mjs');",
        'module.exports = () => [',
        "  fs.readFileSync(path.join(__dirname, 'templates', 'page.html'), 'utf8').trim(),",
        '  sub.read(), sub.where(), esm.read(), path.relative(__dirname, __filename),',
        "  path.relative(__dirname, require.resolve('./templates/page.html')),",
        "].join('|');",
        '',
      ].join('\n'),
      'templates/page.html': '<p>page</p>\n',
      'src/h.js': "'use strict';\nconst fs = require('fs');\nexports.read = () => fs.readFileSync(__dirname + '/row.txt', 'utf8').trim();\nexports.where = () => require('path').basename(__dirname);\n",
      'src/row.txt': 'row\n',
      'esm/page.mjs': "import { readFileSync } from 'node:fs';\nexport const read = () => readFileSync(new URL('../data/x.csv', import.meta.url), 'utf8').trim();\n",
      'data/x.csv': 'a,b\n',
    });
    const b = await bundleFunction({ dir, handler: 'handler.js' });
    assert.deepEqual(
      ownFiles(b).map((f) => f.path),
      ['data/x.csv', 'src/row.txt', 'templates/page.html'],
    );
    for (const f of ownFiles(b)) assert.equal(f.source, path.join(dir, f.path));
    assert.ok(b.warnings.some((w) => /shipping 3 file\(s\) the code reads next to itself/.test(w)), b.warnings.join('\n'));
    const r = await call(b);
    assert.equal(r.body, '<p>page</p>|row|src|a,b|handler.js|templates/page.html');
    // Strictness is as written: the "use strict" module stays strict.
    assert.match(await readFile(b.file, 'utf8'), /"use strict";\n\s*var __kubefn_m\d* = __kubefn_module\("src\/h\.js"\)/);
  });

  it('warns, naming the module, about a file it names that is not there', async () => {
    const dir = await fn({
      'handler.js': "const path = require('path');\nmodule.exports = () => path.resolve(__dirname, 'missing.sql');\n",
    });
    const b = await bundleFunction({ dir, handler: 'handler.js' });
    assert.deepEqual(ownFiles(b), []);
    assert.ok(b.warnings.some((w) => w.startsWith('handler.js reads "missing.sql" next to itself, which was not found') && w.includes('`assets`')), b.warnings.join('\n'));
  });

  it('ships the declared assets, refuses missing ones, and lists found files once', async () => {
    const dir = await fn({
      'handler.js': "const fs = require('fs');\nmodule.exports = (req) => fs.readFileSync(__dirname + '/public/' + new URL(req.url).searchParams.get('f'), 'utf8');\n",
      'public/a.txt': 'A',
      'public/deep/b.txt': 'B',
    });
    const b = await bundleFunction({ dir, handler: 'handler.js', assets: ['public/'] });
    assert.deepEqual(ownFiles(b).map((f) => f.path), ['public/a.txt', 'public/deep/b.txt']);
    assert.ok(!b.warnings.some((w) => w.startsWith('shipping')), 'declared assets need no note');
    assert.equal((await call(b, '?f=deep/b.txt')).body, 'B');
    await assert.rejects(bundleFunction({ dir, handler: 'handler.js', assets: ['nope'] }), (err) => isKubefnError(err, 'BUILD_FAILED') && /assets\.0/.test(err.message));
  });

  it('imports text files as strings and other files as bytes', async () => {
    const dir = await fn({
      'handler.js': [
        "import page from './page.html';",
        "import notes from './notes.md';",
        "import query from './q.sql';",
        "import logo from './logo.png';",
        'export default () => `${page.trim()} ${notes.trim()} ${query.trim()} ${logo instanceof Uint8Array} ${logo.length}`;',
        '',
      ].join('\n'),
      'page.html': '<h1>hi</h1>\n',
      'notes.md': '# notes\n',
      'q.sql': 'select 1;\n',
      'logo.png': '\x89PNG',
    });
    const b = await bundleFunction({ dir, handler: 'handler.js' });
    assert.deepEqual(ownFiles(b), [], 'imported files are inside the bundle');
    assert.equal((await call(b)).body, '<h1>hi</h1> # notes select 1; true 5');
  });

  it('gives the same bytes and files for the same source', async () => {
    const source = { 'handler.js': "module.exports = () => require('fs').readFileSync(require('path').join(__dirname, 't.txt'), 'utf8');\n", 't.txt': 't' };
    const [a, b] = [await bundleFunction({ dir: await fn(source), handler: 'handler.js' }), await bundleFunction({ dir: await fn(source), handler: 'handler.js' })];
    assert.equal(a.digest, b.digest);
    assert.deepEqual(ownFiles(a).map((f) => f.path), ['t.txt']);
  });
});
