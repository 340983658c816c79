// Blobs on a registry (layers and configs): fetched whole or streamed, pushed by one monolithic
// upload or mounted from another repository, and every byte checked against its digest.

import { createHash } from 'node:crypto';
import { KubefnError } from '@kubefn/platform';
import { sha256 } from '../oci-layer.js';
import { pullScope, pushScope } from './auth.js';
import { digestMismatch } from './errors.js';
import type { Call, RegistryExchange, Reply, RequestBody } from './exchange.js';
import type { ImageReference } from './reference.js';

export type PushContent = Buffer | (() => Promise<{ size: number; body: AsyncIterable<Uint8Array> }>);

export interface PushBlobResult {
  result: 'exists' | 'mounted' | 'uploaded';
  /** Body bytes sent to the registry: 0 unless uploaded. */
  bytesSent: number;
}

/** A blob, whole in memory, its digest checked. */
export async function getBlob(x: RegistryExchange, ref: ImageReference, digest: string): Promise<Buffer> {
  const { bytes } = await x.expect([200], blobCall(ref, digest, 'GET'), ref.registry);
  verifyDigest(bytes, digest, `blob ${digest} of ${ref.repository}`);
  return bytes;
}

/** A blob as a stream that errors at its end if the bytes do not match `digest`. */
export async function getBlobStream(x: RegistryExchange, ref: ImageReference, digest: string): Promise<{ size: number; body: ReadableStream<Uint8Array> }> {
  const { res } = await x.expect([200], { ...blobCall(ref, digest, 'GET'), stream: true }, ref.registry);
  if (!res.body) throw new KubefnError('INTERNAL', `registry ${ref.registry} sent blob ${digest} without a body`);
  const hash = digestHasher(digest);
  const verify = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      hash.update(chunk);
      controller.enqueue(chunk);
    },
    flush(controller) {
      const got = `${digest.split(':')[0]}:${hash.digest('hex')}`;
      if (got !== digest) controller.error(digestMismatch(`blob ${digest} of ${ref.repository}`, got));
    },
  });
  return { size: Number(res.headers.get('content-length') ?? -1), body: res.body.pipeThrough(verify) };
}

export async function blobExists(x: RegistryExchange, ref: ImageReference, digest: string, scopes = [pullScope(ref.repository)]): Promise<boolean> {
  const { res } = await x.expect([200, 404], blobCall(ref, digest, 'HEAD', scopes), ref.registry);
  return res.status === 200;
}

/**
 * Makes blob `digest` present in `ref`'s repository: already there, mounted from `mountFrom`
 * (a repository of the same registry) without sending it, or uploaded in one PUT.
 */
export async function pushBlob(x: RegistryExchange, ref: ImageReference, digest: string, content: PushContent, options: { mountFrom?: string } = {}): Promise<PushBlobResult> {
  if (Buffer.isBuffer(content)) verifyDigest(content, digest, `blob to push to ${ref.repository}`);
  const scopes = [pushScope(ref.repository)];
  if (await blobExists(x, ref, digest, scopes)) return { result: 'exists', bytesSent: 0 };
  const uploads = `/v2/${ref.repository}/blobs/uploads/`;
  let session: Reply | undefined;
  if (options.mountFrom && options.mountFrom !== ref.repository) {
    const mount = `${uploads}?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(options.mountFrom)}`;
    const what = `mount of blob ${digest} from ${options.mountFrom} into ${ref.repository}`;
    // 201: mounted. 202: the registry would not mount (e.g. no pull access on the source) and
    // opened an ordinary upload session instead.
    const reply = await x.expect([201, 202], { method: 'POST', path: mount, what, scopes: [...scopes, pullScope(options.mountFrom)] }, ref.registry);
    if (reply.res.status === 201) return { result: 'mounted', bytesSent: 0 };
    session = reply;
  }
  session ??= await x.expect([202], { method: 'POST', path: uploads, what: `upload to ${ref.repository}`, scopes }, ref.registry);
  const location = session.res.headers.get('location');
  if (!location) throw new KubefnError('INTERNAL', `registry ${ref.registry} opened an upload without a Location`);

  let bytesSent = 0;
  const body = async (): Promise<{ body: RequestBody; length: number }> => {
    if (Buffer.isBuffer(content)) {
      bytesSent += content.length;
      return { body: content, length: content.length };
    }
    const { size, body: source } = await content();
    async function* counted(): AsyncIterable<Uint8Array> {
      for await (const chunk of source) {
        bytesSent += chunk.length;
        yield chunk;
      }
    }
    return { body: ReadableStream.from(counted()) as unknown as RequestBody, length: size };
  };
  await x.expect(
    [201],
    {
      method: 'PUT',
      path: uploadUrl(x.baseUrl(ref.registry), location, digest),
      what: `upload of blob ${digest} to ${ref.repository}`,
      scopes,
      headers: { 'content-type': 'application/octet-stream' },
      body,
    },
    ref.registry,
  );
  return { result: 'uploaded', bytesSent };
}

function blobCall(ref: ImageReference, digest: string, method: 'GET' | 'HEAD', scopes = [pullScope(ref.repository)]): Call {
  return { method, path: `/v2/${ref.repository}/blobs/${digest}`, what: `blob ${digest} of ${ref.repository}`, scopes };
}

/**
 * Where to PUT a monolithic upload: the Location the registry gave (relative or absolute, maybe
 * with its own query, e.g. "_state=…") with `digest=` appended. The existing query is kept
 * byte for byte: some registries sign it.
 */
export function uploadUrl(baseUrl: string, location: string, digest: string): string {
  const url = new URL(location, baseUrl);
  const param = `digest=${encodeURIComponent(digest)}`;
  url.search = url.search.length > 1 ? `${url.search}&${param}` : `?${param}`;
  return url.href;
}

function digestHasher(digest: string) {
  const algorithm = digest.split(':')[0]!;
  if (algorithm !== 'sha256' && algorithm !== 'sha512') {
    throw new KubefnError('NOT_SUPPORTED', `digest algorithm "${algorithm}" of ${digest} is not supported`, { hint: 'kubefn verifies sha256 and sha512 digests' });
  }
  return createHash(algorithm);
}

/** Throws unless `bytes` hash to `digest`; returns it. Manifests are checked the same way. */
export function verifyDigest(bytes: Uint8Array, digest: string, what: string): string {
  const got = digest.startsWith('sha256:') ? sha256(bytes) : `${digest.split(':')[0]}:${digestHasher(digest).update(bytes).digest('hex')}`;
  if (got !== digest) throw digestMismatch(what, got);
  return digest;
}
