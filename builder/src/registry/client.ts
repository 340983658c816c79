// A client for the OCI distribution API (what `docker pull`/`docker push` speak): composes the
// manifest and blob operations over one authenticated exchange per call, answering the
// registry's Basic or Bearer-token challenges (auth.ts) as they come.

import { RegistryAuth } from './auth.js';
import { blobExists, getBlob, getBlobStream, pushBlob, type PushBlobResult, type PushContent } from './blobs.js';
import type { Credentials } from './credentials.js';
import { registryError } from './errors.js';
import { send, type Call, type RegistryExchange, type Reply, type SendOptions } from './exchange.js';
import { getImageConfig, getManifest, putManifest, type ImageConfigResult, type ManifestResult, type Platform } from './manifests.js';
import { isLoopbackRegistry, registryApiHost, type ImageReference } from './reference.js';

export { mergeScopes, parseWwwAuthenticate, type AuthChallenge } from './auth.js';
export { uploadUrl, type PushBlobResult, type PushContent } from './blobs.js';
export {
  dockerManifestListMediaType,
  dockerManifestMediaType,
  ociIndexMediaType,
  type ImageConfigResult,
  type ImageIndex,
  type ImageManifest,
  type ManifestResult,
  type Platform,
} from './manifests.js';

export interface RegistryClientOptions {
  /** Registries ("host:port") spoken to over plain HTTP; loopback ones always are. */
  insecureRegistries?: string[];
  /** Credentials for a registry, asked once per registry and only when it demands login. */
  credentials?: (registry: string) => Promise<Credentials | undefined>;
  userAgent?: string;
  /**
   * Bound on each HTTP request until its response headers arrive, in ms (default 120000).
   * An upload's body is sent within it; a buffered response body must also arrive within it;
   * a streamed blob body (`getBlobStream`) is the caller's to bound.
   */
  timeoutMs?: number;
}

export class RegistryClient {
  private readonly insecure: Set<string>;
  private readonly sendOptions: SendOptions;
  private readonly auth: RegistryAuth;
  /** What manifests.ts and blobs.ts call through. */
  private readonly exchange: RegistryExchange = {
    expect: (ok, call, registry) => this.expect(ok, call, registry),
    baseUrl: (registry) => this.baseUrl(registry),
  };

  constructor(options: RegistryClientOptions = {}) {
    this.insecure = new Set((options.insecureRegistries ?? []).map((r) => r.toLowerCase()));
    this.sendOptions = { userAgent: options.userAgent ?? 'kubefn', timeoutMs: options.timeoutMs ?? 120_000 };
    this.auth = new RegistryAuth(options.credentials ?? (async () => undefined), (url, call) => send(url, call, undefined, this.sendOptions));
  }

  /** The manifest `ref` names; an index or manifest list is resolved to `platform`'s image. */
  getManifest(ref: ImageReference, platform?: Platform): Promise<ManifestResult> {
    return getManifest(this.exchange, ref, platform);
  }

  /** A blob, whole in memory, its digest checked. For large layers use `getBlobStream`. */
  getBlob(ref: ImageReference, digest: string): Promise<Buffer> {
    return getBlob(this.exchange, ref, digest);
  }

  /** A blob as a stream that errors at its end if the bytes do not match `digest`. */
  getBlobStream(ref: ImageReference, digest: string): Promise<{ size: number; body: ReadableStream<Uint8Array> }> {
    return getBlobStream(this.exchange, ref, digest);
  }

  hasBlob(ref: ImageReference, digest: string): Promise<boolean> {
    return blobExists(this.exchange, ref, digest);
  }

  /**
   * Makes blob `digest` present in `ref`'s repository: already there, mounted from `mountFrom`
   * (a repository of the same registry) without sending it, or uploaded in one PUT.
   */
  pushBlob(ref: ImageReference, digest: string, content: PushContent, options: { mountFrom?: string } = {}): Promise<PushBlobResult> {
    return pushBlob(this.exchange, ref, digest, content, options);
  }

  /** Stores a manifest under a tag or its digest; returns its digest. */
  putManifest(ref: ImageReference, tagOrDigest: string, bytes: Buffer, mediaType: string): Promise<string> {
    return putManifest(this.exchange, ref, tagOrDigest, bytes, mediaType);
  }

  /** The image's manifest (for `platform`) and its config. */
  getImageConfig(ref: ImageReference, platform?: Platform): Promise<ImageConfigResult> {
    return getImageConfig(this.exchange, ref, platform);
  }

  private baseUrl(registry: string): string {
    return `${registryScheme(registry, this.insecure)}://${registryApiHost(registry)}`;
  }

  /** Runs `call`, turning any status not in `ok` into a KubefnError. */
  private async expect(ok: number[], call: Call, registry: string): Promise<Reply> {
    const reply = await this.call(registry, call);
    if (!ok.includes(reply.res.status)) throw registryError(registry, call, reply);
    return reply;
  }

  /**
   * One exchange, authenticated as the registry demands: first with what is cached (nothing,
   * the first time), and on a 401 once more after answering its challenge.
   */
  private async call(registry: string, call: Call): Promise<Reply> {
    const url = new URL(call.path, this.baseUrl(registry));
    // Credentials go only to the registry itself, not to a storage host an upload Location names.
    const sameOrigin = url.origin === new URL(this.baseUrl(registry)).origin;
    const first = sameOrigin ? await this.auth.header(registry, call.scopes) : undefined;
    const reply = await send(url, call, first, this.sendOptions);
    if (reply.res.status !== 401 || !sameOrigin) return reply;
    const again = await this.auth.answer(registry, reply.res.headers.get('www-authenticate') ?? '', call.scopes);
    const retried = await send(url, call, again, this.sendOptions);
    if (retried.res.status === 401) throw await this.auth.refused(registry, call.scopes, retried.res.headers.get('www-authenticate') ?? '');
    return retried;
  }
}

/** "http" for loopback registries and the ones the user marked insecure; "https" for every other. */
export function registryScheme(registry: string, insecureRegistries: Iterable<string> = []): 'http' | 'https' {
  if (isLoopbackRegistry(registry)) return 'http';
  const host = registry.toLowerCase();
  for (const r of insecureRegistries) if (r.toLowerCase() === host) return 'http';
  return 'https';
}
