// Manifests on a registry: fetched by tag or digest (an index resolved to one platform's image),
// pushed under a tag or digest, and the image config they name; digests checked on the way.

import { setTimeout as delay } from 'node:timers/promises';
import { KubefnError } from '@kubefn/platform';
import type { Response } from 'undici';
import { manifestMediaType, type Descriptor, type ImageConfig } from '../oci-image.js';
import { sha256 } from '../oci-layer.js';
import { pullScope, pushScope } from './auth.js';
import { getBlob, verifyDigest } from './blobs.js';
import { registryError } from './errors.js';
import type { Call, RegistryExchange } from './exchange.js';
import { formatReference, type ImageReference } from './reference.js';

export const ociIndexMediaType = 'application/vnd.oci.image.index.v1+json';
export const dockerManifestMediaType = 'application/vnd.docker.distribution.manifest.v2+json';
export const dockerManifestListMediaType = 'application/vnd.docker.distribution.manifest.list.v2+json';
const indexMediaTypes = [ociIndexMediaType, dockerManifestListMediaType];
const imageManifestMediaTypes = [manifestMediaType, dockerManifestMediaType];
const manifestAccept = [...imageManifestMediaTypes, ...indexMediaTypes].join(', ');

/** docker refuses manifests above 4 MiB; so do we, so a bad registry cannot make us buffer more. */
const maxManifestBytes = 4 * 1024 * 1024;

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface ImageManifest {
  schemaVersion: 2;
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
  [key: string]: unknown;
}

export interface ImageIndex {
  schemaVersion: 2;
  mediaType?: string;
  manifests: (Descriptor & { platform?: Platform })[];
  [key: string]: unknown;
}

export interface ManifestResult {
  descriptor: Descriptor;
  bytes: Buffer;
  manifest: ImageManifest;
}

export interface ImageConfigResult {
  manifestDescriptor: Descriptor;
  manifest: ImageManifest;
  config: ImageConfig;
  configBytes: Buffer;
}

/** The manifest `ref` names; an index or manifest list is resolved to `platform`'s image. */
export async function getManifest(x: RegistryExchange, ref: ImageReference, platform: Platform = { os: 'linux', architecture: 'amd64' }): Promise<ManifestResult> {
  const top = await fetchManifest(x, ref, ref.digest ?? ref.tag ?? 'latest');
  if (!indexMediaTypes.includes(top.descriptor.mediaType)) return top as ManifestResult;
  const entry = selectPlatform(top.manifest as ImageIndex, platform, formatReference(ref));
  const image = await fetchManifest(x, ref, entry.digest);
  if (!imageManifestMediaTypes.includes(image.descriptor.mediaType)) {
    throw new KubefnError('NOT_SUPPORTED', `${formatReference(ref)}: the ${platformName(platform)} entry is a ${image.descriptor.mediaType}, not an image manifest`);
  }
  return image as ManifestResult;
}

/**
 * Retries of a manifest PUT the registry refused for a blob it had just acknowledged. The
 * distribution registry's filesystem store rewrites a blob's link file in place, so while another
 * client pushes the same blob a manifest naming it can briefly see it as unknown or invalid.
 */
const manifestBlobRetries = [100, 300, 900];

/** Stores a manifest under a tag or its digest; returns its digest. */
export async function putManifest(x: RegistryExchange, ref: ImageReference, tagOrDigest: string, bytes: Buffer, mediaType: string): Promise<string> {
  const digest = sha256(bytes);
  if (tagOrDigest.includes(':')) verifyDigest(bytes, tagOrDigest, `manifest to push as ${tagOrDigest}`);
  const what = `manifest ${ref.repository}:${tagOrDigest}`;
  const call: Call = {
    method: 'PUT',
    path: `/v2/${ref.repository}/manifests/${tagOrDigest}`,
    what,
    scopes: [pushScope(ref.repository)],
    headers: { 'content-type': mediaType },
    body: async () => ({ body: bytes, length: bytes.length }),
  };
  for (let attempt = 0; ; attempt++) {
    const reply = await x.expect([201, 400], call, ref.registry);
    if (reply.res.status === 201) {
      crossCheckDigest(reply.res, digest, what);
      return digest;
    }
    const wait = manifestBlobRetries[attempt];
    if (wait === undefined || !namesBlobUnknown(reply.bytes)) throw registryError(ref.registry, call, reply);
    await delay(wait);
  }
}

function namesBlobUnknown(bytes: Buffer): boolean {
  return /"code"\s*:\s*"(MANIFEST_BLOB_UNKNOWN|BLOB_UNKNOWN)"/.test(bytes.toString('utf8'));
}

/** The image's manifest (for `platform`) and its config. */
export async function getImageConfig(x: RegistryExchange, ref: ImageReference, platform?: Platform): Promise<ImageConfigResult> {
  const { descriptor, manifest } = await getManifest(x, ref, platform);
  const configBytes = await getBlob(x, ref, manifest.config.digest);
  let config: ImageConfig;
  try {
    config = JSON.parse(configBytes.toString('utf8')) as ImageConfig;
  } catch (err) {
    throw new KubefnError('BAD_REQUEST', `${formatReference(ref)}: the image config ${manifest.config.digest} is not JSON`, { cause: err });
  }
  return { manifestDescriptor: descriptor, manifest, config, configBytes };
}

/** One manifest as stored, its digest computed from the bytes and checked against what was asked. */
async function fetchManifest(x: RegistryExchange, ref: ImageReference, reference: string): Promise<{ descriptor: Descriptor; bytes: Buffer; manifest: ImageManifest | ImageIndex }> {
  const what = `manifest ${ref.repository}${reference.includes(':') ? '@' : ':'}${reference}`;
  const { res, bytes } = await x.expect(
    [200],
    {
      method: 'GET',
      path: `/v2/${ref.repository}/manifests/${reference}`,
      what,
      scopes: [pullScope(ref.repository)],
      headers: { accept: manifestAccept },
      maxBytes: maxManifestBytes,
    },
    ref.registry,
  );
  const digest = reference.includes(':') ? verifyDigest(bytes, reference, what) : sha256(bytes);
  crossCheckDigest(res, digest, what);
  let manifest: ImageManifest | ImageIndex;
  try {
    manifest = JSON.parse(bytes.toString('utf8')) as ImageManifest | ImageIndex;
  } catch (err) {
    throw new KubefnError('BAD_REQUEST', `registry ${ref.registry} sent a ${what} that is not JSON`, { cause: err });
  }
  const mediaType = manifestMediaTypeOf(res.headers.get('content-type'), manifest);
  if (!mediaType) {
    throw new KubefnError('NOT_SUPPORTED', `${what} on ${ref.registry} is of an unsupported kind (${res.headers.get('content-type') ?? 'no Content-Type'})`, {
      hint: 'kubefn reads OCI and Docker v2 schema 2 images; push the image again with a current docker, podman or buildah',
    });
  }
  return { descriptor: { mediaType, digest, size: bytes.length }, bytes, manifest };
}

function selectPlatform(index: ImageIndex, want: Platform, name: string): Descriptor {
  const entries = (index.manifests ?? []).filter((m) => m.platform?.os === want.os && m.platform.architecture === want.architecture);
  // Without a wanted variant, prefer an entry without one, then the first (arm64 is often "v8").
  const chosen = want.variant === undefined ? (entries.find((m) => !m.platform?.variant) ?? entries[0]) : entries.find((m) => m.platform?.variant === want.variant);
  if (chosen) return chosen;
  const available = (index.manifests ?? []).flatMap((m) => (m.platform && m.platform.os !== 'unknown' ? [platformName(m.platform)] : []));
  throw new KubefnError('NOT_FOUND', `${name} has no ${platformName(want)} image; it has ${available.join(', ') || 'no platform images'}`, {
    hint: `use an image built for ${platformName(want)}, or build for one of those platforms`,
  });
}

function platformName(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter(Boolean).join('/');
}

/** The manifest's kind from Content-Type, falling back to its own mediaType field or its shape. */
function manifestMediaTypeOf(contentType: string | null, manifest: ImageManifest | ImageIndex): string | undefined {
  const known = [...imageManifestMediaTypes, ...indexMediaTypes];
  const header = contentType?.split(';')[0]!.trim().toLowerCase();
  if (header && known.includes(header)) return header;
  if (typeof manifest.mediaType === 'string') return known.includes(manifest.mediaType) ? manifest.mediaType : undefined;
  if (manifest.schemaVersion !== 2) return undefined;
  if (Array.isArray((manifest as ImageIndex).manifests)) return ociIndexMediaType;
  return (manifest as ImageManifest).config ? manifestMediaType : undefined;
}

/** The Docker-Content-Digest header only cross-checks the digest we computed: it is never trusted alone. */
function crossCheckDigest(res: Response, computed: string, what: string): void {
  const header = res.headers.get('docker-content-digest');
  if (header && header.startsWith('sha256:') && header !== computed) {
    throw new KubefnError('BAD_REQUEST', `${what}: the registry says its digest is ${header}, but the content hashes to ${computed}`);
  }
}
