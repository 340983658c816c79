import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { Worker } from 'node:worker_threads';
import { writeAtomic } from './atomic-write.js';
import { cachedBlobPath, cachedHostBase, type HostBaseCacheOptions } from './build-cache.js';
import type { HostNodeBase } from './host-base.js';
import { scratchBase } from './oci-image.js';
import { buildLayer, sha256 } from './oci-layer.js';

// The real host base gzips ~100 MB of node and libraries (over 10 s on a small machine), so these
// tests give the cache a small stand-in base; everything around the build is the real code.

const dirs: string[] = [];
after(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

async function emptyCache(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kubefn-build-cache-test-'));
  dirs.push(dir);
  return dir;
}

/** A stand-in for hostNodeBase that counts its builds and can be made to fail. */
function smallBase(): HostBaseCacheOptions & { builds: number; fail: boolean } {
  const options = {
    builds: 0,
    fail: false,
    build: async (): Promise<HostNodeBase> => {
      options.builds++;
      // A layer of a few MB, so a write takes long enough for concurrent writers to overlap.
      const layer = await buildLayer([{ path: 'usr/local/bin/node', content: Buffer.alloc(4 * 1024 * 1024, 'not really node '), mode: 0o755 }]);
      if (options.fail) throw new Error('the build broke');
      const base = scratchBase();
      base.config.rootfs.diff_ids.push(layer.diffId);
      return { base: { ...base, layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: layer.digest, size: layer.blob.length }] }, layer, nodeVersion: 'v0.0.0' };
    },
  };
  return options;
}

/** Every file under `dir`, relative to it, sorted. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
    .sort();
}

describe('cachedHostBase', () => {
  it('builds once for two concurrent callers into an empty cache, and leaves no temp files', async () => {
    const cache = await emptyCache();
    const options = smallBase();
    const [a, b] = await Promise.all([cachedHostBase(cache, options), cachedHostBase(cache, options)]);
    assert.equal(options.builds, 1);
    assert.deepEqual(a, b);
    const digest = a.base.layers[0]!.digest;
    assert.equal(sha256(a.blob), digest);
    const files = await filesUnder(cache);
    assert.deepEqual(files.filter((f) => f.endsWith('.tmp')), []);
    assert.equal(files.length, 2, files.join(', '));
    assert.ok(files.includes(path.relative(cache, cachedBlobPath(cache, digest))), files.join(', '));
    assert.deepEqual(await readFile(cachedBlobPath(cache, digest)), a.blob);

    // A later call reads what the first one kept.
    const again = await cachedHostBase(cache, options);
    assert.equal(options.builds, 1);
    assert.deepEqual(again, a);
  });

  it('does not keep a failed build: both waiting callers see the failure, the next call builds again', async () => {
    const cache = await emptyCache();
    const options = smallBase();
    options.fail = true;
    const results = await Promise.allSettled([cachedHostBase(cache, options), cachedHostBase(cache, options)]);
    assert.deepEqual(results.map((r) => r.status), ['rejected', 'rejected']);
    assert.equal(options.builds, 1);
    options.fail = false;
    const base = await cachedHostBase(cache, options);
    assert.equal(options.builds, 2);
    assert.equal(sha256(base.blob), base.base.layers[0]!.digest);
  });

  it('builds again over half-written temp files and a short blob that a crash left behind', async () => {
    const cache = await emptyCache();
    const first = smallBase();
    const { blob, base } = await cachedHostBase(cache, first);
    const file = cachedBlobPath(cache, base.layers[0]!.digest);
    const half = blob.subarray(0, blob.length >> 1);
    // Temps of a writer that died mid-write, as this and earlier versions name them, and the blob
    // itself cut short (what a non-atomic writer leaves).
    await writeFile(`${file}.${process.pid}.tmp`, half);
    await writeFile(`${file}.4242.0123456789ab.tmp`, half);
    await writeFile(file, half);

    const later = smallBase();
    const rebuilt = await cachedHostBase(cache, later);
    assert.equal(later.builds, 1);
    assert.deepEqual(rebuilt.blob, blob);
    assert.deepEqual(await readFile(file), blob);
    assert.equal((await cachedHostBase(cache, later)).blob.length, blob.length);
    assert.equal(later.builds, 1);
  });

  it('lets builders that share no memory (worker threads, as processes would) fill one cache at once', async () => {
    const cache = await emptyCache();
    // Each worker loads its own copy of the modules, so nothing in memory is shared: both build
    // and write the same blob and config, and the renames leave one whole copy of each.
    const source = `
      const { parentPort, workerData } = require('node:worker_threads');
      (async () => {
        const { cachedHostBase } = await import(workerData.cache);
        const { buildLayer } = await import(workerData.layer);
        const build = async () => {
          const layer = await buildLayer([{ path: 'usr/local/bin/node', content: Buffer.alloc(4 << 20, 'not really node '), mode: 0o755 }]);
          const layers = [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: layer.digest, size: layer.blob.length }];
          const config = { architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [layer.diffId] }, config: {} };
          return { base: { config, layers }, layer, nodeVersion: 'v0.0.0' };
        };
        const { base, blob } = await cachedHostBase(workerData.dir, { build });
        parentPort.postMessage({ digest: base.layers[0].digest, blob });
      })();`;
    const workerData = { dir: cache, cache: new URL('./build-cache.js', import.meta.url).href, layer: new URL('./oci-layer.js', import.meta.url).href };
    const run = () =>
      new Promise<{ digest: string; blob: Uint8Array }>((resolve, reject) => {
        const worker = new Worker(source, { eval: true, workerData });
        worker.once('message', resolve);
        worker.once('error', reject);
        worker.once('exit', (code) => reject(new Error(`worker exited with ${code} before answering`)));
      });
    const [a, b] = await Promise.all([run(), run()]);
    assert.equal(a.digest, b.digest);
    assert.equal(sha256(a.blob), a.digest);
    const files = await filesUnder(cache);
    assert.deepEqual(files.filter((f) => f.endsWith('.tmp')), []);
    assert.equal(files.length, 2, files.join(', '));
    assert.equal(sha256(await readFile(cachedBlobPath(cache, a.digest))), a.digest);
  });

  it('builds again when the saved config is not JSON', async () => {
    const cache = await emptyCache();
    const options = smallBase();
    await cachedHostBase(cache, options);
    const [config] = (await filesUnder(cache)).filter((f) => f.startsWith('host-base'));
    await writeFile(path.join(cache, config!), '{"layers": [');
    await cachedHostBase(cache, options);
    assert.equal(options.builds, 2);
  });
});

describe('cachedBlobPath', () => {
  it('refuses a digest that is not sha256 or sha512 hex, before it names a file', () => {
    for (const bad of ['sha256:../../etc/passwd', `sha256:${'A'.repeat(64)}`, `md5:${'0'.repeat(32)}`, 'sha256:', '']) {
      assert.throws(() => cachedBlobPath('/cache', bad), /is not a sha256 or sha512 digest/, bad);
    }
    assert.equal(cachedBlobPath('/cache', `sha256:${'0'.repeat(64)}`), `/cache/blobs/sha256/${'0'.repeat(64)}`);
  });
});

describe('writeAtomic', () => {
  it('lets many concurrent writers of one file each finish, leaving one whole write and no temp files', async () => {
    const dir = await emptyCache();
    const file = path.join(dir, 'nested', 'blob');
    const contents = Array.from({ length: 16 }, (_, i) => Buffer.alloc(1024 * 1024, i));
    await Promise.all(contents.map((c) => writeAtomic(file, c)));
    const written = await readFile(file);
    assert.ok(contents.some((c) => c.equals(written)), 'the file is one writer\'s bytes, whole');
    assert.deepEqual(await readdir(path.dirname(file)), ['blob']);
  });

  it('removes its temp file when the rename fails', async () => {
    const dir = await emptyCache();
    const file = path.join(dir, 'taken');
    await mkdir(path.join(file, 'child'), { recursive: true }); // a non-empty directory cannot be renamed over
    await assert.rejects(writeAtomic(file, Buffer.from('x')), (err: NodeJS.ErrnoException) => ['EISDIR', 'ENOTEMPTY', 'EEXIST'].includes(err.code ?? ''));
    assert.deepEqual(await readdir(dir), ['taken']);
  });
});
