import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { isKubefnError, type ErrorCode } from '@kubefn/platform';
import { assembleImage, manifestMediaType, scratchBase } from '../oci-image.js';
import { buildLayer, sha256 } from '../oci-layer.js';
import { startRegistry, type TestRegistry } from '../testing/registry-server.js';
import { ociIndexMediaType, RegistryClient } from './client.js';
import { parseReference, type ImageReference } from './reference.js';

// The client against a real registry: Debian's docker-registry, open, behind Basic auth and
// behind a token server (see testing/registry-server.ts).

/** Asserts a rejection is a KubefnError with `code` whose message matches. */
async function rejectsWith(p: Promise<unknown>, code: ErrorCode, message: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isKubefnError(err, code), `expected ${code}, got ${String(err)}`);
    assert.match(err.message, message);
    return true;
  });
}

/** Layer, config and manifest of a one-file image for `architecture`, pushed to `ref`'s repository. */
async function pushImage(client: RegistryClient, ref: ImageReference, architecture: string, tag?: string, variant = '') {
  const layer = await buildLayer([{ path: 'app/fn.mjs', content: Buffer.from(`export default () => '${architecture}${variant}'\n`) }]);
  const base = scratchBase();
  base.config.architecture = architecture;
  const image = assembleImage(base, layer, { entrypoint: ['node', '/app/fn.mjs'] });
  await client.pushBlob(ref, layer.digest, layer.blob);
  await client.pushBlob(ref, image.configDescriptor.digest, image.config);
  const digest = await client.putManifest(ref, tag ?? image.manifestDescriptor.digest, image.manifest, manifestMediaType);
  return { ...image, layer, digest };
}

function blob(text: string) {
  const bytes = Buffer.from(text);
  return { bytes, digest: sha256(bytes) };
}

describe('RegistryClient against docker-registry', () => {
  let registry: TestRegistry;
  const client = new RegistryClient();
  before(async () => {
    registry = await startRegistry();
  });
  after(() => registry?.close());
  const ref = (name: string) => parseReference(`${registry.host}/${name}`);

  it('uploads a blob, then finds it there, then mounts it into another repository without sending it', async () => {
    const b = blob('a layer, say');
    assert.equal(await client.hasBlob(ref('kubefn/a'), b.digest), false);
    assert.deepEqual(await client.pushBlob(ref('kubefn/a'), b.digest, b.bytes), { result: 'uploaded', bytesSent: b.bytes.length });
    assert.deepEqual(await client.pushBlob(ref('kubefn/a'), b.digest, b.bytes), { result: 'exists', bytesSent: 0 });
    assert.equal(await client.hasBlob(ref('kubefn/b'), b.digest), false);
    assert.deepEqual(await client.pushBlob(ref('kubefn/b'), b.digest, b.bytes, { mountFrom: 'kubefn/a' }), { result: 'mounted', bytesSent: 0 });
    assert.deepEqual(await client.getBlob(ref('kubefn/b'), b.digest), b.bytes);
  });

  it('uploads anyway when the mount source does not have the blob', async () => {
    const b = blob('only here');
    assert.deepEqual(await client.pushBlob(ref('kubefn/c'), b.digest, b.bytes, { mountFrom: 'kubefn/empty' }), { result: 'uploaded', bytesSent: b.bytes.length });
    assert.equal(await client.hasBlob(ref('kubefn/c'), b.digest), true);
  });

  it('streams an upload and a download, counting the bytes sent', async () => {
    const chunks = [Buffer.alloc(70_000, 1), Buffer.alloc(50_000, 2), Buffer.from('tail')];
    const whole = Buffer.concat(chunks);
    async function* body() {
      yield* chunks;
    }
    const pushed = await client.pushBlob(ref('kubefn/stream'), sha256(whole), async () => ({ size: whole.length, body: body() }));
    assert.deepEqual(pushed, { result: 'uploaded', bytesSent: whole.length });
    const { size, body: stream } = await client.getBlobStream(ref('kubefn/stream'), sha256(whole));
    assert.equal(size, whole.length);
    assert.deepEqual(Buffer.from(await new Response(stream).arrayBuffer()), whole);
  });

  it('refuses to push content that does not match its digest, before sending anything', async () => {
    await rejectsWith(client.pushBlob(ref('kubefn/a'), blob('other').digest, Buffer.from('this')), 'BAD_REQUEST', /hashes to/);
  });

  it('pushes an image and reads the same manifest back by tag and by digest, and its config', async () => {
    const image = await pushImage(client, ref('kubefn/fn'), 'amd64', 'v1');
    assert.equal(image.digest, image.manifestDescriptor.digest);
    const byTag = await client.getManifest(ref('kubefn/fn:v1'));
    const byDigest = await client.getManifest(ref(`kubefn/fn@${image.digest}`));
    assert.deepEqual(byTag.bytes, image.manifest);
    assert.deepEqual(byDigest.bytes, byTag.bytes);
    assert.deepEqual(byTag.descriptor, image.manifestDescriptor);
    assert.deepEqual(byDigest.descriptor, byTag.descriptor);
    assert.equal(byTag.manifest.layers[0]?.digest, image.layer.digest);

    const { config, configBytes, manifestDescriptor } = await client.getImageConfig(ref('kubefn/fn:v1'));
    assert.deepEqual(configBytes, image.config);
    assert.deepEqual(config.config?.Entrypoint, ['node', '/app/fn.mjs']);
    assert.equal(manifestDescriptor.digest, image.digest);
  });

  it('resolves an OCI index to the platform asked for, and lists the platforms when one is missing', async () => {
    const repo = ref('kubefn/multi');
    const amd64 = await pushImage(client, repo, 'amd64');
    const arm64 = await pushImage(client, repo, 'arm64');
    const amd64v3 = await pushImage(client, repo, 'amd64', undefined, 'v3');
    const index = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: ociIndexMediaType,
        manifests: [
          { ...arm64.manifestDescriptor, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
          { ...amd64v3.manifestDescriptor, platform: { os: 'linux', architecture: 'amd64', variant: 'v3' } },
          { ...amd64.manifestDescriptor, platform: { os: 'linux', architecture: 'amd64' } },
        ],
      }),
    );
    await client.putManifest(repo, 'latest', index, ociIndexMediaType);

    // Without a variant asked for, the entry without one wins over an earlier one with one.
    const chosen = await client.getManifest(repo);
    assert.equal(chosen.descriptor.digest, amd64.digest);
    assert.equal((await client.getManifest(repo, { os: 'linux', architecture: 'amd64', variant: 'v3' })).descriptor.digest, amd64v3.digest);
    assert.equal(chosen.descriptor.mediaType, manifestMediaType);
    assert.equal((await client.getManifest(repo, { os: 'linux', architecture: 'arm64' })).descriptor.digest, arm64.digest);
    assert.equal((await client.getImageConfig(repo, { os: 'linux', architecture: 'arm64' })).config.architecture, 'arm64');
    await rejectsWith(client.getManifest(repo, { os: 'linux', architecture: 's390x' }), 'NOT_FOUND', /has no linux\/s390x image; it has linux\/arm64\/v8, linux\/amd64\/v3, linux\/amd64$/);
  });

  it('answers NOT_FOUND, with the registry\'s own error code, for a tag that is not there', async () => {
    await rejectsWith(client.getManifest(ref('kubefn/fn:nope')), 'NOT_FOUND', /manifest kubefn\/fn:nope: HTTP 404 MANIFEST_UNKNOWN/);
  });

  it('refuses a manifest whose blobs the registry does not have', async () => {
    const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: manifestMediaType, config: { ...blob('no such config'), size: 1, mediaType: 'x' }, layers: [] }));
    await rejectsWith(client.putManifest(ref('kubefn/fn'), 'broken', manifest, manifestMediaType), 'BAD_REQUEST', /HTTP 400 MANIFEST_BLOB_UNKNOWN/);
  });
});

describe('RegistryClient with Basic auth', () => {
  let registry: TestRegistry;
  before(async () => {
    registry = await startRegistry({ auth: 'basic', users: { alice: 'right password' } });
  });
  after(() => registry?.close());

  it('pushes and pulls with the right credentials, asking for them once', async () => {
    let asked = 0;
    const client = new RegistryClient({
      credentials: async (r) => {
        asked++;
        return r === registry.host ? { username: 'alice', password: 'right password' } : undefined;
      },
    });
    const image = await pushImage(client, parseReference(`${registry.host}/alice/fn`), 'amd64', 'v1');
    assert.equal((await client.getManifest(parseReference(`${registry.host}/alice/fn:v1`))).descriptor.digest, image.digest);
    assert.equal(asked, 1);
  });

  it('gives UNAUTHORIZED naming the registry, with how to log in, for wrong or missing credentials', async () => {
    const ref = parseReference(`${registry.host}/alice/fn:v1`);
    const wrong = new RegistryClient({ credentials: async () => ({ username: 'alice', password: 'wrong' }) });
    for (const [client, message] of [
      [wrong, /refused the credentials of "alice"/],
      [new RegistryClient(), /requires login/],
    ] as const) {
      await assert.rejects(client.getManifest(ref), (err: unknown) => {
        assert.ok(isKubefnError(err, 'UNAUTHORIZED'), String(err));
        assert.match(err.message, message);
        assert.ok(err.message.includes(registry.host));
        assert.ok(err.hint?.includes(`docker login ${registry.host}`));
        return true;
      });
    }
  });
});

describe('RegistryClient with token auth', () => {
  let registry: TestRegistry;
  before(async () => {
    registry = await startRegistry({ auth: 'token', users: { bob: 'hunter2' } });
  });
  after(() => registry?.close());
  const bob = () => new RegistryClient({ credentials: async () => ({ username: 'bob', password: 'hunter2' }) });

  it('pushes, mounts and pulls with bearer tokens, fetching one token per scope', async () => {
    const client = bob();
    const ref = parseReference(`${registry.host}/bob/fn`);
    const image = await pushImage(client, ref, 'amd64', 'v1');
    const mounted = await client.pushBlob(parseReference(`${registry.host}/bob/copy`), image.layer.digest, image.layer.blob, { mountFrom: 'bob/fn' });
    assert.deepEqual(mounted, { result: 'mounted', bytesSent: 0 });
    assert.equal((await client.getManifest(parseReference(`${registry.host}/bob/fn:v1`))).descriptor.digest, image.digest);
    // Three blob pushes and a manifest push shared one pull,push token.
    assert.deepEqual(registry.tokenRequests, [
      { user: 'bob', scopes: ['repository:bob/fn:pull,push'] },
      { user: 'bob', scopes: ['repository:bob/copy:pull,push'] },
      { user: 'bob', scopes: ['repository:bob/copy:pull,push', 'repository:bob/fn:pull'] },
      { user: 'bob', scopes: ['repository:bob/fn:pull'] },
    ]);
  });

  it('gives UNAUTHORIZED when the token server refuses the credentials, or grants an anonymous user nothing', async () => {
    const ref = parseReference(`${registry.host}/bob/fn:v1`);
    const wrong = new RegistryClient({ credentials: async () => ({ username: 'bob', password: 'wrong' }) });
    await rejectsWith(wrong.getManifest(ref), 'UNAUTHORIZED', /token server of registry 127\.0\.0\.1:\d+ refused the credentials of "bob"/);
    await rejectsWith(new RegistryClient().getManifest(ref), 'UNAUTHORIZED', /registry 127\.0\.0\.1:\d+ requires login/);
  });
});
