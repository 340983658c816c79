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
      assert.ok(isKubefnError(err, 'INTERNAL'));
      assert.match(err.message, /cannot reach http:\/\/127\.0\.0\.1/);
      assert.match(err.hint ?? '', /nothing listens/);
      return true;
    });
  });
});
