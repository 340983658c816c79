import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { isKubefnError } from '@kubefn/platform';
import { bundleFunction } from './bundle.js';

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
