import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { extract } from 'tar-stream';
import { isKubefnError } from '@kubefn/platform';
import { buildLayer, sha256 } from './oci-layer.js';

async function list(tar: Buffer) {
  const ex = extract();
  const out: { name: string; type: string; mode: number; mtime: number; uid: number; body: string }[] = [];
  ex.on('entry', (h, stream, next) => {
    const parts: Buffer[] = [];
    stream.on('data', (c: unknown) => parts.push(c as Buffer));
    stream.on('end', () => {
      out.push({ name: h.name, type: h.type ?? '', mode: h.mode ?? 0, mtime: h.mtime?.getTime() ?? -1, uid: h.uid ?? -1, body: Buffer.concat(parts).toString() });
      next();
    });
  });
  const done = new Promise<void>((r) => ex.on('finish', () => r()));
  ex.end(tar);
  await done;
  return out;
}

describe('buildLayer', () => {
  const files = [
    { path: 'app/fn.mjs', content: Buffer.from('export default () => 1\n') },
    { path: 'app/assets/a.txt', content: Buffer.from('a') },
    { path: '/etc/kubefn', content: Buffer.from('x'), mode: 0o600 },
  ];

  it('gives the same bytes and digest whatever the input order', async () => {
    const a = await buildLayer(files);
    const b = await buildLayer([...files].reverse());
    assert.equal(a.digest, b.digest);
    assert.ok(a.blob.equals(b.blob));
    assert.equal(a.digest, sha256(a.blob));
    assert.equal(a.diffId, sha256(gunzipSync(a.blob)));
    assert.equal(a.blob[9], 3);
  });

  it('writes sorted entries with parent directories, fixed times, root owner and modes', async () => {
    const entries = await list(gunzipSync((await buildLayer(files)).blob));
    assert.deepEqual(
      entries.map((e) => [e.name, e.type]),
      [
        ['app/', 'directory'],
        ['app/assets/', 'directory'],
        ['app/assets/a.txt', 'file'],
        ['app/fn.mjs', 'file'],
        ['etc/', 'directory'],
        ['etc/kubefn', 'file'],
      ],
    );
    assert.ok(entries.every((e) => e.mtime === 0 && e.uid === 0));
    assert.equal(entries.find((e) => e.name === 'etc/kubefn')?.mode, 0o600);
    assert.equal(entries.find((e) => e.name === 'app/fn.mjs')?.body, 'export default () => 1\n');
  });

  it('changes the digest when a byte changes', async () => {
    const a = await buildLayer(files);
    const b = await buildLayer([{ ...files[0]!, content: Buffer.from('export default () => 2\n') }, ...files.slice(1)]);
    assert.notEqual(a.digest, b.digest);
  });

  it('refuses paths that escape, repeat or clash with a directory', async () => {
    for (const bad of ['../x', 'a/../../x', 'a//b', '', 'a/./b']) {
      await assert.rejects(buildLayer([{ path: bad, content: Buffer.from('') }]), (e) => isKubefnError(e, 'BUILD_FAILED'), bad);
    }
    await assert.rejects(buildLayer([{ path: 'a', content: Buffer.from('') }, { path: '/a', content: Buffer.from('') }]), /twice/);
    await assert.rejects(buildLayer([{ path: 'a', content: Buffer.from('') }, { path: 'a/b', content: Buffer.from('') }]), /both a file and a directory/);
  });
});
