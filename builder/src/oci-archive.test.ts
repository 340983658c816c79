import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { extract } from 'tar-stream';
import { writeOciArchive } from './oci-archive.js';
import { assembleImage, scratchBase, type BaseImage } from './oci-image.js';
import { buildLayer, sha256 } from './oci-layer.js';

async function untar(tar: Buffer): Promise<Map<string, Buffer>> {
  const ex = extract();
  const out = new Map<string, Buffer>();
  ex.on('entry', (h, stream, next) => {
    const parts: Buffer[] = [];
    stream.on('data', (c: unknown) => parts.push(c as Buffer));
    stream.on('end', () => {
      if (h.type === 'file') out.set(h.name, Buffer.concat(parts));
      next();
    });
  });
  const done = new Promise<void>((r) => ex.on('finish', () => r()));
  ex.end(tar);
  await done;
  return out;
}

async function build(base: BaseImage = scratchBase()) {
  const layer = await buildLayer([{ path: 'app/fn.mjs', content: Buffer.from('export default () => "hi"\n') }]);
  const image = assembleImage(base, layer, {
    entrypoint: ['node', '/app/fn.mjs'],
    env: { PORT: '8080' },
    exposedPorts: [8080],
    labels: { 'dev.kubefn.source-digest': 'sha256:abc' },
  });
  return { layer, image, archive: await writeOciArchive(image, [{ digest: layer.digest, content: layer.blob }], 'kubefn/hello:latest') };
}

describe('OCI image and archive', () => {
  it('is reproducible: two builds give the same manifest digest and archive bytes', async () => {
    const a = await build();
    const b = await build();
    assert.equal(a.image.manifestDescriptor.digest, b.image.manifestDescriptor.digest);
    assert.ok(a.archive.equals(b.archive));
  });

  it('links index -> manifest -> config and layers, each blob named by its digest', async () => {
    const { archive, layer } = await build();
    const files = await untar(archive);
    assert.deepEqual(JSON.parse(files.get('oci-layout')!.toString()), { imageLayoutVersion: '1.0.0' });
    for (const [name, content] of files) {
      if (name.startsWith('blobs/sha256/')) assert.equal(sha256(content), `sha256:${name.slice(13)}`, name);
    }
    const index = JSON.parse(files.get('index.json')!.toString());
    assert.equal(index.manifests[0].annotations['org.opencontainers.image.ref.name'], 'kubefn/hello:latest');
    const manifest = JSON.parse(files.get(`blobs/sha256/${index.manifests[0].digest.slice(7)}`)!.toString());
    assert.equal(manifest.layers.at(-1).digest, layer.digest);
    const config = JSON.parse(files.get(`blobs/sha256/${manifest.config.digest.slice(7)}`)!.toString());
    assert.deepEqual(config.rootfs.diff_ids, [layer.diffId]);
    assert.deepEqual(config.config.Entrypoint, ['node', '/app/fn.mjs']);
    assert.ok(config.config.ExposedPorts['8080/tcp']);
    assert.equal(config.config.Labels['dev.kubefn.source-digest'], 'sha256:abc');
  });

  it('stacks on a base: keeps its layers and env, overrides variables of the same name', async () => {
    const base: BaseImage = {
      config: {
        architecture: 'amd64',
        os: 'linux',
        config: { Env: ['PATH=/usr/bin', 'PORT=80'], Cmd: ['sh'] },
        rootfs: { type: 'layers', diff_ids: ['sha256:' + '1'.repeat(64)] },
        history: [{ created_by: 'base' }],
      },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: 'sha256:' + '2'.repeat(64), size: 10 }],
    };
    const layer = await buildLayer([{ path: 'app/fn.mjs', content: Buffer.from('x') }]);
    const image = assembleImage(base, layer, { entrypoint: ['node'], env: { PORT: '8080' } });
    const config = JSON.parse(image.config.toString());
    assert.deepEqual(config.config.Env, ['PATH=/usr/bin', 'PORT=8080']);
    assert.equal(config.config.Cmd, null);
    assert.equal(config.rootfs.diff_ids.length, 2);
    assert.equal(config.history.length, 2);
    const manifest = JSON.parse(image.manifest.toString());
    assert.equal(manifest.layers[0].digest, base.layers[0]!.digest);
    await assert.rejects(writeOciArchive(image, [{ digest: layer.digest, content: layer.blob }], 'x'), /missing layer blobs/);
  });

  it('runs a function as nobody on a base that runs as root, and keeps a base\'s own non-root user', async () => {
    const layer = await buildLayer([{ path: 'app/fn.mjs', content: Buffer.from('x') }]);
    const userOf = (user: string | undefined) => {
      const base = scratchBase();
      if (user !== undefined) base.config.config = { User: user };
      const image = assembleImage(base, layer, { entrypoint: ['node'], userIfRoot: '65534:65534' });
      return (JSON.parse(image.config.toString()) as { config: { User?: string } }).config.User;
    };
    for (const root of [undefined, '', 'root', '0', '0:0', 'root:root']) assert.equal(userOf(root), '65534:65534', `base user ${root}`);
    for (const own of ['node', '1000', '1000:1000', 'app:app']) assert.equal(userOf(own), own);
  });
});
