import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync, readlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { placeApp } from './podman-pool.js';

describe('placeApp', () => {
  const root = mkdtempSync(path.join(tmpdir(), 'kubefn-place-app-'));
  after(() => rmSync(root, { recursive: true, force: true }));

  it("puts a function's /app into a warm container's: files hard-linked, directories made with their modes, links kept as links", () => {
    const from = path.join(root, 'from');
    const to = path.join(root, 'to');
    mkdirSync(path.join(from, 'node_modules', 'pkg'), { recursive: true });
    mkdirSync(to);
    writeFileSync(path.join(from, 'fn.cjs'), 'module.exports = 1;\n', { mode: 0o644 });
    writeFileSync(path.join(from, 'node_modules', 'pkg', 'index.js'), 'x', { mode: 0o644 });
    symlinkSync('pkg/index.js', path.join(from, 'node_modules', 'alias.js'));
    placeApp(from, to);
    assert.equal(readFileSync(path.join(to, 'fn.cjs'), 'utf8'), 'module.exports = 1;\n');
    assert.equal(statSync(path.join(to, 'fn.cjs')).ino, statSync(path.join(from, 'fn.cjs')).ino, 'a link, not a copy');
    assert.equal(statSync(path.join(to, 'node_modules')).mode & 0o777, statSync(path.join(from, 'node_modules')).mode & 0o777);
    assert.equal(readFileSync(path.join(to, 'node_modules', 'pkg', 'index.js'), 'utf8'), 'x');
    assert.equal(readlinkSync(path.join(to, 'node_modules', 'alias.js')), 'pkg/index.js');
  });
});
