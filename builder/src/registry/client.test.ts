import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { isKubefnError, type ErrorCode } from '@kubefn/platform';
import { manifestMediaType } from '../oci-image.js';
import { sha256 } from '../oci-layer.js';
import { RegistryClient, registryScheme } from './client.js';
import { parseReference } from './reference.js';

// The client against registries that misbehave, played by a plain HTTP server in this process;
// client.integration.test.ts runs it against a real docker-registry.

/** Asserts a rejection is a KubefnError with `code` whose message matches. */
async function rejectsWith(p: Promise<unknown>, code: ErrorCode, message: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isKubefnError(err, code), `expected ${code}, got ${String(err)}`);
    assert.match(err.message, message);
    return true;
  });
}

function blob(text: string) {
  const bytes = Buffer.from(text);
  return { bytes, digest: sha256(bytes) };
}

describe('registryScheme', () => {
  const cases: [string, string[], 'http' | 'https'][] = [
    ['ghcr.io', [], 'https'],
    ['registry.internal:5000', [], 'https'],
    ['registry.internal:5000', ['registry.internal:5000'], 'http'],
    ['Registry.Internal:5000', ['registry.internal:5000'], 'http'],
    // The port is part of the name: an insecure :5000 says nothing about :5001.
    ['registry.internal:5001', ['registry.internal:5000'], 'https'],
    ['localhost:5000', [], 'http'],
    ['127.0.0.1:5000', [], 'http'],
    ['[::1]:5000', [], 'http'],
  ];
  for (const [registry, insecure, want] of cases) {
    it(`${registry} with [${insecure.join(', ')}] -> ${want}`, () => assert.equal(registryScheme(registry, insecure), want));
  }
});

describe('RegistryClient against a fake registry', () => {
  // What a broken registry or proxy might send: the client must notice, not pass it on.
  const good = blob('the real content');
  let server: Server;
  let host: string;
  before(async () => {
    server = createServer((req, res) => {
      if (req.url === `/v2/x/blobs/${good.digest}`) return void res.end('tampered content');
      if (req.url === '/v2/x/manifests/lying') {
        const manifest = JSON.stringify({ schemaVersion: 2, mediaType: manifestMediaType, config: {}, layers: [] });
        return void res.writeHead(200, { 'content-type': manifestMediaType, 'docker-content-digest': good.digest }).end(manifest);
      }
      if (req.url === '/v2/x/manifests/schema1') {
        return void res.writeHead(200, { 'content-type': 'application/vnd.docker.distribution.manifest.v1+prettyjws' }).end('{"schemaVersion":1}');
      }
      if (req.url === '/v2/x/manifests/slow') return; // never answers
      res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const ref = () => parseReference(`${host}/x`);

  it('refuses a blob whose bytes do not hash to its digest', async () => {
    await rejectsWith(new RegistryClient().getBlob(ref(), good.digest), 'BAD_REQUEST', /hashes to sha256:[0-9a-f]{64}, not the digest/);
  });

  it('errors at the end of a streamed blob whose bytes do not hash to its digest', async () => {
    const { body } = await new RegistryClient().getBlobStream(ref(), good.digest);
    await assert.rejects(new Response(body).arrayBuffer(), /hashes to sha256:/);
  });

  it('refuses a manifest whose Docker-Content-Digest disagrees with its bytes', async () => {
    await rejectsWith(new RegistryClient().getManifest(parseReference(`${host}/x:lying`)), 'BAD_REQUEST', /says its digest is sha256:.*but the content hashes to/);
  });

  it('refuses schema 1 manifests', async () => {
    await rejectsWith(new RegistryClient().getManifest(parseReference(`${host}/x:schema1`)), 'NOT_SUPPORTED', /unsupported kind/);
  });

  it('gives up on a registry that does not answer within timeoutMs', async () => {
    await rejectsWith(new RegistryClient({ timeoutMs: 200 }).getManifest(parseReference(`${host}/x:slow`)), 'DEADLINE_EXCEEDED', /no answer from 127\.0\.0\.1:\d+ within 200 ms/);
  });

  it('says nothing listens when the connection is refused', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    await assert.rejects(new RegistryClient().hasBlob(parseReference(`127.0.0.1:${port}/x`), good.digest), (err: unknown) => {
      assert.ok(isKubefnError(err, 'UNAVAILABLE'), String(err));
      assert.match(err.message, /cannot reach http:\/\/127\.0\.0\.1/);
      assert.match(err.hint ?? '', /nothing listens/);
      return true;
    });
  });
});

describe('RegistryClient on refusals and failures', () => {
  // A registry that refuses pushes to "ro", is overloaded or down on the "busy" and "down"
  // repositories, and behind token auth on "scoped", where its token server grants bob pulls
  // only (a distribution registry then answers 401 insufficient_scope) and refuses mallory.
  let server: Server;
  let host: string;
  const tokenRequests: string[] = [];
  const manifestPuts = { racy: 0, missing: 0, bad: 0 };
  before(async () => {
    server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://fake');
      const json = (status: number, body: object, headers: Record<string, string> = {}) =>
        void res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
      if (url.pathname === '/token') {
        const user = Buffer.from((req.headers.authorization ?? '').replace(/^Basic /, ''), 'base64').toString().split(':')[0];
        tokenRequests.push(`${user} ${url.searchParams.getAll('scope').join(' ')}`);
        if (user === 'mallory') return json(403, { details: 'no access for you' });
        return json(200, { token: `token-for-${user}` });
      }
      if (url.pathname === '/v2/ro/blobs/uploads/') {
        return json(403, { errors: [{ code: 'DENIED', message: 'requested access to the resource is denied' }] });
      }
      if (url.pathname.startsWith('/v2/busy/')) return json(429, { errors: [{ code: 'TOOMANYREQUESTS', message: 'slow down' }] }, { 'retry-after': '7' });
      if (url.pathname.startsWith('/v2/down/')) return void res.writeHead(503).end('upstream connect error');
      if (url.pathname.startsWith('/v2/broken/')) return void res.writeHead(500).end();
      // A manifest PUT racing another client's push of the same blob: refused twice, then stored.
      if (url.pathname === '/v2/racy/manifests/v1' && req.method === 'PUT') {
        manifestPuts.racy++;
        if (manifestPuts.racy <= 2) return json(400, { errors: [{ code: 'MANIFEST_BLOB_UNKNOWN', message: 'blob unknown to registry' }] });
        return json(201, {});
      }
      if (url.pathname === '/v2/missing/manifests/v1' && req.method === 'PUT') {
        manifestPuts.missing++;
        return json(400, { errors: [{ code: 'MANIFEST_BLOB_UNKNOWN', message: 'blob unknown to registry' }] });
      }
      if (url.pathname === '/v2/bad/manifests/v1' && req.method === 'PUT') {
        manifestPuts.bad++;
        return json(400, { errors: [{ code: 'MANIFEST_INVALID', message: 'manifest invalid' }] });
      }
      if (url.pathname.startsWith('/v2/scoped/')) {
        const actions = req.method === 'GET' || req.method === 'HEAD' ? 'pull' : 'pull,push';
        const challenge = `Bearer realm="http://${host}/token",service="fake",scope="repository:scoped:${actions}"`;
        const error = req.headers.authorization ? ',error="insufficient_scope"' : '';
        return json(401, { errors: [{ code: 'DENIED' }] }, { 'www-authenticate': challenge + error });
      }
      res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const b = blob('a layer');
  const as = (username: string) => new RegistryClient({ credentials: async () => ({ username, password: 'pw' }) });

  it('gives FORBIDDEN, naming what was refused, for a 403', async () => {
    await assert.rejects(new RegistryClient().pushBlob(parseReference(`${host}/ro`), b.digest, b.bytes), (err: unknown) => {
      assert.ok(isKubefnError(err, 'FORBIDDEN'), String(err));
      assert.equal(err.status, 403);
      assert.match(err.message, /^registry 127\.0\.0\.1:\d+: push to ro refused \(403: DENIED: requested access to the resource is denied\)$/);
      assert.match(err.hint ?? '', /ask whoever runs 127\.0\.0\.1:\d+ for access/);
      return true;
    });
  });

  it('gives UNAVAILABLE, worth retrying, for a 429 (with its Retry-After), a 503 and a 500', async () => {
    await assert.rejects(new RegistryClient().getManifest(parseReference(`${host}/busy:v1`)), (err: unknown) => {
      assert.ok(isKubefnError(err, 'UNAVAILABLE'), String(err));
      assert.equal(err.status, 503);
      assert.match(err.message, /manifest busy:v1: HTTP 429 TOOMANYREQUESTS: slow down$/);
      assert.match(err.hint ?? '', /overloaded or down; try again in 7 s/);
      return true;
    });
    await rejectsWith(new RegistryClient().getManifest(parseReference(`${host}/down:v1`)), 'UNAVAILABLE', /manifest down:v1: HTTP 503 upstream connect error$/);
    await rejectsWith(new RegistryClient().getBlob(parseReference(`${host}/broken`), b.digest), 'UNAVAILABLE', /blob sha256:\w+ of broken: HTTP 500 Internal Server Error$/);
  });

  it('gives FORBIDDEN when the token granted lacks the access asked (401 insufficient_scope)', async () => {
    tokenRequests.length = 0;
    await rejectsWith(as('bob').pushBlob(parseReference(`${host}/scoped`), b.digest, b.bytes), 'FORBIDDEN', /push to scoped refused \("bob" was not granted it: insufficient_scope\)$/);
    assert.deepEqual(tokenRequests, ['bob repository:scoped:pull,push']);
    // Without a login, the same answer means logging in.
    await rejectsWith(new RegistryClient().getManifest(parseReference(`${host}/scoped:v1`)), 'UNAUTHORIZED', /requires login/);
  });

  it('retries a manifest PUT refused for a blob unknown a few times, and never one refused as invalid', async () => {
    const manifest = Buffer.from('{"schemaVersion":2}');
    const digest = await new RegistryClient().putManifest(parseReference(`${host}/racy:v1`), 'v1', manifest, 'application/vnd.oci.image.manifest.v1+json');
    assert.equal(digest, blob('{"schemaVersion":2}').digest);
    assert.equal(manifestPuts.racy, 3);
    await rejectsWith(
      new RegistryClient().putManifest(parseReference(`${host}/missing:v1`), 'v1', manifest, 'application/vnd.oci.image.manifest.v1+json'),
      'BAD_REQUEST',
      /manifest missing:v1: HTTP 400 MANIFEST_BLOB_UNKNOWN: blob unknown to registry$/,
    );
    assert.equal(manifestPuts.missing, 4);
    await rejectsWith(new RegistryClient().putManifest(parseReference(`${host}/bad:v1`), 'v1', manifest, 'application/vnd.oci.image.manifest.v1+json'), 'BAD_REQUEST', /MANIFEST_INVALID/);
    assert.equal(manifestPuts.bad, 1);
  });

  it('gives FORBIDDEN when the token server refuses a known user with 403', async () => {
    await rejectsWith(as('mallory').getManifest(parseReference(`${host}/scoped:v1`)), 'FORBIDDEN', /pull from scoped refused \(its token server refused "mallory" with 403\)$/);
  });
});
