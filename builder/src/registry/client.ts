// A client for the OCI distribution API (what `docker pull`/`docker push` speak): manifests
// and blobs, with the registry's Basic or Bearer-token authentication.

import { createHash } from 'node:crypto';
import { Agent, fetch, type RequestInit, type Response } from 'undici';
import { KubefnError, type ErrorCode } from '@kubefn/platform';
import type { Descriptor, ImageConfig } from '../oci-image.js';
import { manifestMediaType } from '../oci-image.js';
import { sha256 } from '../oci-layer.js';
import { identityTokenUsername, type Credentials } from './credentials.js';
import { formatReference, isLoopbackRegistry, registryApiHost, type ImageReference } from './reference.js';

export const ociIndexMediaType = 'application/vnd.oci.image.index.v1+json';
export const dockerManifestMediaType = 'application/vnd.docker.distribution.manifest.v2+json';
export const dockerManifestListMediaType = 'application/vnd.docker.distribution.manifest.list.v2+json';
const indexMediaTypes = [ociIndexMediaType, dockerManifestListMediaType];
const imageManifestMediaTypes = [manifestMediaType, dockerManifestMediaType];
const manifestAccept = [...imageManifestMediaTypes, ...indexMediaTypes].join(', ');

/** docker refuses manifests above 4 MiB; so do we, so a bad registry cannot make us buffer more. */
const maxManifestBytes = 4 * 1024 * 1024;
/** Token lifetime when the token server does not say (the token spec's default), in seconds. */
const defaultTokenLifetimeS = 60;
/** A cached token is dropped this long before it expires, so it does not expire in flight, in ms. */
const tokenExpiryMarginMs = 10_000;

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

export type PushContent = Buffer | (() => Promise<{ size: number; body: AsyncIterable<Uint8Array> }>);

export interface PushBlobResult {
  result: 'exists' | 'mounted' | 'uploaded';
  /** Body bytes sent to the registry: 0 unless uploaded. */
  bytesSent: number;
}

/** One challenge of a WWW-Authenticate header: scheme lowercased, parameter names lowercased. */
export interface AuthChallenge {
  scheme: string;
  params: Record<string, string>;
  token68?: string;
}

type RequestBody = NonNullable<RequestInit['body']>;

/** What one HTTP exchange with the registry needs; `scopes` are token scopes it needs granted. */
interface Call {
  method: 'GET' | 'HEAD' | 'POST' | 'PUT';
  /** "/v2/…" on the registry, or an absolute URL (an upload Location). */
  path: string;
  scopes: string[];
  /** What the exchange is, for error messages: "manifest acme/fn:v1". */
  what: string;
  headers?: Record<string, string>;
  /** Called per attempt, so a body can be sent again after an authentication round trip. */
  body?: () => Promise<{ body: RequestBody; length: number }>;
  /** Leave the response body unread, for the caller to stream. */
  stream?: boolean;
  /** Refuse a response body larger than this, in bytes. */
  maxBytes?: number;
}

interface Reply {
  res: Response;
  /** The whole body, unless the call streams it. */
  bytes: Buffer;
}

interface CachedAuth {
  header: string;
  /** ms since the epoch; Infinity for Basic. */
  expiresAt: number;
}

export class RegistryClient {
  private readonly insecure: Set<string>;
  private readonly userAgent: string;
  private readonly timeoutMs: number;
  private readonly lookupCredentials: (registry: string) => Promise<Credentials | undefined>;
  private readonly credentialCache = new Map<string, Promise<Credentials | undefined>>();
  /** Per registry: the challenge it answered 401 with, so later calls authenticate up front. */
  private readonly challenges = new Map<string, AuthChallenge>();
  /** Per registry and scope set: the Authorization header to send. */
  private readonly authCache = new Map<string, CachedAuth>();

  constructor(options: RegistryClientOptions = {}) {
    this.insecure = new Set((options.insecureRegistries ?? []).map((r) => r.toLowerCase()));
    this.userAgent = options.userAgent ?? 'kubefn';
    this.timeoutMs = options.timeoutMs ?? 120_000;
    this.lookupCredentials = options.credentials ?? (async () => undefined);
  }

  /** The manifest `ref` names; an index or manifest list is resolved to `platform`'s image. */
  async getManifest(ref: ImageReference, platform: Platform = { os: 'linux', architecture: 'amd64' }): Promise<ManifestResult> {
    const top = await this.fetchManifest(ref, ref.digest ?? ref.tag ?? 'latest');
    if (!indexMediaTypes.includes(top.descriptor.mediaType)) return top as ManifestResult;
    const entry = selectPlatform(top.manifest as ImageIndex, platform, formatReference(ref));
    const image = await this.fetchManifest(ref, entry.digest);
    if (!imageManifestMediaTypes.includes(image.descriptor.mediaType)) {
      throw new KubefnError('NOT_SUPPORTED', `${formatReference(ref)}: the ${platformName(platform)} entry is a ${image.descriptor.mediaType}, not an image manifest`);
    }
    return image as ManifestResult;
  }

  /** A blob, whole in memory, its digest checked. For large layers use `getBlobStream`. */
  async getBlob(ref: ImageReference, digest: string): Promise<Buffer> {
    const { bytes } = await this.expect([200], this.blobCall(ref, digest, 'GET'), ref.registry);
    verifyDigest(bytes, digest, `blob ${digest} of ${ref.repository}`);
    return bytes;
  }

  /** A blob as a stream that errors at its end if the bytes do not match `digest`. */
  async getBlobStream(ref: ImageReference, digest: string): Promise<{ size: number; body: ReadableStream<Uint8Array> }> {
    const { res } = await this.expect([200], { ...this.blobCall(ref, digest, 'GET'), stream: true }, ref.registry);
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

  async hasBlob(ref: ImageReference, digest: string): Promise<boolean> {
    return this.blobExists(ref, digest, [pullScope(ref.repository)]);
  }

  /**
   * Makes blob `digest` present in `ref`'s repository: already there, mounted from `mountFrom`
   * (a repository of the same registry) without sending it, or uploaded in one PUT.
   */
  async pushBlob(ref: ImageReference, digest: string, content: PushContent, options: { mountFrom?: string } = {}): Promise<PushBlobResult> {
    if (Buffer.isBuffer(content)) verifyDigest(content, digest, `blob to push to ${ref.repository}`);
    const scopes = [pushScope(ref.repository)];
    if (await this.blobExists(ref, digest, scopes)) return { result: 'exists', bytesSent: 0 };
    const uploads = `/v2/${ref.repository}/blobs/uploads/`;
    let session: Reply | undefined;
    if (options.mountFrom && options.mountFrom !== ref.repository) {
      const mount = `${uploads}?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(options.mountFrom)}`;
      const what = `mount of blob ${digest} from ${options.mountFrom} into ${ref.repository}`;
      // 201: mounted. 202: the registry would not mount (e.g. no pull access on the source) and
      // opened an ordinary upload session instead.
      const reply = await this.expect([201, 202], { method: 'POST', path: mount, what, scopes: [...scopes, pullScope(options.mountFrom)] }, ref.registry);
      if (reply.res.status === 201) return { result: 'mounted', bytesSent: 0 };
      session = reply;
    }
    session ??= await this.expect([202], { method: 'POST', path: uploads, what: `upload to ${ref.repository}`, scopes }, ref.registry);
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
    await this.expect(
      [201],
      {
        method: 'PUT',
        path: uploadUrl(this.baseUrl(ref.registry), location, digest),
        what: `upload of blob ${digest} to ${ref.repository}`,
        scopes,
        headers: { 'content-type': 'application/octet-stream' },
        body,
      },
      ref.registry,
    );
    return { result: 'uploaded', bytesSent };
  }

  /** Stores a manifest under a tag or its digest; returns its digest. */
  async putManifest(ref: ImageReference, tagOrDigest: string, bytes: Buffer, mediaType: string): Promise<string> {
    const digest = sha256(bytes);
    if (tagOrDigest.includes(':')) verifyDigest(bytes, tagOrDigest, `manifest to push as ${tagOrDigest}`);
    const what = `manifest ${ref.repository}:${tagOrDigest}`;
    const { res } = await this.expect(
      [201],
      {
        method: 'PUT',
        path: `/v2/${ref.repository}/manifests/${tagOrDigest}`,
        what,
        scopes: [pushScope(ref.repository)],
        headers: { 'content-type': mediaType },
        body: async () => ({ body: bytes, length: bytes.length }),
      },
      ref.registry,
    );
    crossCheckDigest(res, digest, what);
    return digest;
  }

  /** The image's manifest (for `platform`) and its config. */
  async getImageConfig(ref: ImageReference, platform?: Platform): Promise<ImageConfigResult> {
    const { descriptor, manifest } = await this.getManifest(ref, platform);
    const configBytes = await this.getBlob(ref, manifest.config.digest);
    let config: ImageConfig;
    try {
      config = JSON.parse(configBytes.toString('utf8')) as ImageConfig;
    } catch (err) {
      throw new KubefnError('BAD_REQUEST', `${formatReference(ref)}: the image config ${manifest.config.digest} is not JSON`, { cause: err });
    }
    return { manifestDescriptor: descriptor, manifest, config, configBytes };
  }

  /** One manifest as stored, its digest computed from the bytes and checked against what was asked. */
  private async fetchManifest(ref: ImageReference, reference: string): Promise<{ descriptor: Descriptor; bytes: Buffer; manifest: ImageManifest | ImageIndex }> {
    const what = `manifest ${ref.repository}${reference.includes(':') ? '@' : ':'}${reference}`;
    const { res, bytes } = await this.expect(
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

  private blobCall(ref: ImageReference, digest: string, method: 'GET' | 'HEAD', scopes = [pullScope(ref.repository)]): Call {
    return { method, path: `/v2/${ref.repository}/blobs/${digest}`, what: `blob ${digest} of ${ref.repository}`, scopes };
  }

  private async blobExists(ref: ImageReference, digest: string, scopes: string[]): Promise<boolean> {
    const { res } = await this.expect([200, 404], this.blobCall(ref, digest, 'HEAD', scopes), ref.registry);
    return res.status === 200;
  }

  private baseUrl(registry: string): string {
    return `${registryScheme(registry, this.insecure)}://${registryApiHost(registry)}`;
  }

  /** Runs `call`, turning any status not in `ok` into a KubefnError. */
  private async expect(ok: number[], call: Call, registry: string): Promise<Reply> {
    const reply = await this.call(registry, call);
    if (!ok.includes(reply.res.status)) throw registryError(registry, call.what, reply);
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
    const cacheKey = `${registry} ${[...call.scopes].sort().join(' ')}`;
    let auth = sameOrigin ? await this.cachedAuth(registry, call.scopes, cacheKey) : undefined;
    let reply = await this.send(url, call, auth);
    if (reply.res.status !== 401 || !sameOrigin) return reply;
    const challenge = pickChallenge(registry, parseWwwAuthenticate(reply.res.headers.get('www-authenticate') ?? ''));
    // Remembered for later calls without its scope, which belongs to this request only.
    const { scope: _scope, ...params } = challenge.params;
    this.challenges.set(registry, { ...challenge, params });
    this.authCache.delete(cacheKey);
    auth = await this.authenticate(registry, challenge, call.scopes, cacheKey);
    const creds = await this.credentialsFor(registry);
    const refused = creds ? `registry ${registry} refused the credentials of "${creds.username}"` : `registry ${registry} requires login`;
    if (auth === undefined) throw unauthorized(registry, refused); // Basic, and nothing to offer
    reply = await this.send(url, call, auth);
    if (reply.res.status === 401) throw unauthorized(registry, refused);
    return reply;
  }

  private async cachedAuth(registry: string, scopes: string[], cacheKey: string): Promise<string | undefined> {
    const cached = this.authCache.get(cacheKey);
    if (cached && cached.expiresAt > Date.now()) return cached.header;
    const challenge = this.challenges.get(registry);
    return challenge ? this.authenticate(registry, challenge, scopes, cacheKey) : undefined;
  }

  /** The Authorization header that answers `challenge` for `scopes`, cached; undefined if we have nothing to offer. */
  private async authenticate(registry: string, challenge: AuthChallenge, scopes: string[], cacheKey: string): Promise<string | undefined> {
    const creds = await this.credentialsFor(registry);
    let cached: CachedAuth | undefined;
    if (challenge.scheme === 'basic') {
      if (creds) cached = { header: basicAuth(creds), expiresAt: Infinity };
    } else {
      // Ask for what the call needs plus whatever the registry named (they usually agree).
      const wanted = mergeScopes([...scopes, ...(challenge.params.scope?.split(' ') ?? [])]);
      const { token, lifetimeS } = await this.fetchToken(registry, challenge, wanted, creds);
      cached = { header: `Bearer ${token}`, expiresAt: Date.now() + lifetimeS * 1000 - tokenExpiryMarginMs };
    }
    if (!cached) return undefined;
    this.authCache.set(cacheKey, cached);
    return cached.header;
  }

  /** A token from the realm the challenge names (the docker token spec; OAuth2 for identity tokens). */
  private async fetchToken(
    registry: string,
    challenge: AuthChallenge,
    scopes: string[],
    creds: Credentials | undefined,
  ): Promise<{ token: string; lifetimeS: number }> {
    const realm = challenge.params.realm;
    if (!realm) throw new KubefnError('INTERNAL', `registry ${registry} asked for a Bearer token without naming a realm`);
    const url = new URL(realm);
    const service = challenge.params.service;
    const what = `token for ${scopes.join(' ') || 'no scope'} from ${url.origin}`;
    const call: Call = { method: 'GET', path: url.href, what, scopes: [], headers: {} };
    if (creds?.username === identityTokenUsername) {
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: creds.password, client_id: 'kubefn', scope: scopes.join(' ') });
      if (service) form.set('service', service);
      const body = Buffer.from(form.toString());
      call.method = 'POST';
      call.headers = { 'content-type': 'application/x-www-form-urlencoded' };
      call.body = async () => ({ body, length: body.length });
    } else {
      if (service) url.searchParams.set('service', service);
      for (const s of scopes) url.searchParams.append('scope', s);
      if (creds) call.headers = { authorization: basicAuth(creds) };
    }
    const reply = await this.send(url, call, undefined);
    if (reply.res.status === 401 || reply.res.status === 403) {
      throw unauthorized(registry, `the token server of registry ${registry} refused ${creds ? `the credentials of "${creds.username}"` : 'an anonymous request'}`);
    }
    if (reply.res.status !== 200) throw registryError(registry, what, reply);
    const body = parseJson(reply.bytes) as { token?: unknown; access_token?: unknown; expires_in?: unknown } | undefined;
    const token = typeof body?.token === 'string' ? body.token : typeof body?.access_token === 'string' ? body.access_token : undefined;
    if (!token) throw new KubefnError('INTERNAL', `the token server of registry ${registry} answered without a token`);
    const lifetimeS = typeof body?.expires_in === 'number' && body.expires_in > 0 ? body.expires_in : defaultTokenLifetimeS;
    return { token, lifetimeS };
  }

  private credentialsFor(registry: string): Promise<Credentials | undefined> {
    let p = this.credentialCache.get(registry);
    if (!p) {
      p = this.lookupCredentials(registry);
      this.credentialCache.set(registry, p);
    }
    return p;
  }

  /** The HTTP exchange itself, bounded by `timeoutMs`, with network failures made into KubefnErrors. */
  private async send(url: URL, call: Call, authorization: string | undefined): Promise<Reply> {
    const headers: Record<string, string> = { 'user-agent': this.userAgent, ...call.headers };
    if (authorization) headers.authorization = authorization;
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), this.timeoutMs);
    try {
      const init: RequestInit = { method: call.method, headers, signal: controller.signal, dispatcher: registryAgent };
      if (call.body) {
        const { body, length } = await call.body();
        headers['content-length'] = String(length);
        init.body = body as RequestInit['body'];
        init.duplex = 'half';
      }
      const res = await fetch(url, init);
      const bytes = call.stream && res.ok ? Buffer.alloc(0) : await readBounded(res, call.maxBytes, call.what);
      return { res, bytes };
    } catch (err) {
      if (controller.signal.aborted) {
        throw new KubefnError('DEADLINE_EXCEEDED', `${call.what}: no answer from ${url.host} within ${this.timeoutMs} ms`, { cause: err });
      }
      if (err instanceof KubefnError) throw err;
      throw networkError(url, call.what, err);
    } finally {
      clearTimeout(timer);
    }
  }
}

/**
 * The client's own connection pool, from the undici package rather than Node's built-in fetch:
 * a process that also loads undici (the gateway does) replaces the global dispatcher the
 * built-in fetch shares, and Node 20's built-in fetch then fails on streamed uploads.
 */
const registryAgent = new Agent({ keepAliveTimeout: 10_000 });

/** "http" for loopback registries and the ones the user marked insecure; "https" for every other. */
export function registryScheme(registry: string, insecureRegistries: Iterable<string> = []): 'http' | 'https' {
  if (isLoopbackRegistry(registry)) return 'http';
  const host = registry.toLowerCase();
  for (const r of insecureRegistries) if (r.toLowerCase() === host) return 'http';
  return 'https';
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

/**
 * Parses a WWW-Authenticate header (RFC 7235): one or more challenges, each a scheme then either
 * a token68 or comma-separated name=value parameters, values being tokens or quoted strings
 * with backslash escapes. Commas separate both parameters and challenges, so a new challenge
 * starts where a name is not followed by "=".
 *
 *   Basic realm="r", Bearer realm="https://auth/token",service="reg",scope="repository:a:pull,push"
 *   -> [{scheme:'basic', params:{realm:'r'}}, {scheme:'bearer', params:{realm:…, service:'reg', scope:'repository:a:pull,push'}}]
 */
export function parseWwwAuthenticate(header: string): AuthChallenge[] {
  const tokenRe = /[!#$%&'*+\-.^_`|~0-9A-Za-z]+/y;
  const token68Re = /[A-Za-z0-9\-._~+/]+=*(?=[ \t]*(?:,|$))/y;
  let pos = 0;
  const skip = (chars: string): void => {
    while (pos < header.length && chars.includes(header[pos]!)) pos++;
  };
  const match = (re: RegExp): string | undefined => {
    re.lastIndex = pos;
    const m = re.exec(header);
    if (!m) return undefined;
    pos += m[0].length;
    return m[0];
  };
  const quoted = (): string => {
    let out = '';
    for (pos++; pos < header.length && header[pos] !== '"'; pos++) {
      if (header[pos] === '\\' && pos + 1 < header.length) pos++;
      out += header[pos];
    }
    pos++; // the closing quote
    return out;
  };

  const challenges: AuthChallenge[] = [];
  for (;;) {
    skip(' \t,');
    if (pos >= header.length) return challenges;
    const scheme = match(tokenRe);
    if (!scheme) return challenges; // not a header we can read any further
    const challenge: AuthChallenge = { scheme: scheme.toLowerCase(), params: {} };
    challenges.push(challenge);
    skip(' \t');
    const token68 = match(token68Re);
    if (token68 !== undefined && !/^[^=]+=[^=]/.test(token68)) {
      challenge.token68 = token68;
      continue;
    }
    if (token68 !== undefined) pos -= token68.length;
    for (;;) {
      const start = pos;
      skip(' \t,');
      const name = match(tokenRe);
      skip(' \t');
      if (!name || header[pos] !== '=') {
        pos = start; // the start of the next challenge (or the end)
        break;
      }
      pos++;
      skip(' \t');
      challenge.params[name.toLowerCase()] = header[pos] === '"' ? quoted() : (match(tokenRe) ?? '');
    }
  }
}

/** Bearer when offered (it carries the scope), else Basic. */
function pickChallenge(registry: string, challenges: AuthChallenge[]): AuthChallenge {
  const chosen = challenges.find((c) => c.scheme === 'bearer') ?? challenges.find((c) => c.scheme === 'basic');
  if (chosen) return chosen;
  if (challenges.length === 0) throw unauthorized(registry, `registry ${registry} answered 401 without saying how to authenticate`);
  const offered = challenges.map((c) => c.scheme).join(', ');
  throw new KubefnError('NOT_SUPPORTED', `registry ${registry} asks for authentication kubefn does not speak (${offered})`, {
    hint: 'kubefn speaks Basic and Bearer-token registry authentication',
  });
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

/**
 * Token scopes with the actions on one resource merged:
 * ["repository:a:pull,push", "repository:a:pull", "repository:b:pull"] -> ["repository:a:pull,push", "repository:b:pull"]
 */
export function mergeScopes(scopes: string[]): string[] {
  const actions = new Map<string, Set<string>>();
  for (const scope of scopes) {
    const cut = scope.lastIndexOf(':');
    if (cut <= 0) continue;
    const resource = scope.slice(0, cut);
    const set = actions.get(resource) ?? new Set<string>();
    for (const a of scope.slice(cut + 1).split(',')) if (a) set.add(a);
    actions.set(resource, set);
  }
  return [...actions].map(([resource, set]) => `${resource}:${[...set].join(',')}`);
}

function pullScope(repository: string): string {
  return `repository:${repository}:pull`;
}

function pushScope(repository: string): string {
  return `repository:${repository}:pull,push`;
}

function basicAuth(c: Credentials): string {
  return `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}`;
}

function digestHasher(digest: string) {
  const algorithm = digest.split(':')[0]!;
  if (algorithm !== 'sha256' && algorithm !== 'sha512') {
    throw new KubefnError('NOT_SUPPORTED', `digest algorithm "${algorithm}" of ${digest} is not supported`, { hint: 'kubefn verifies sha256 and sha512 digests' });
  }
  return createHash(algorithm);
}

/** Throws unless `bytes` hash to `digest`; returns it. */
function verifyDigest(bytes: Uint8Array, digest: string, what: string): string {
  const got = digest.startsWith('sha256:') ? sha256(bytes) : `${digest.split(':')[0]}:${digestHasher(digest).update(bytes).digest('hex')}`;
  if (got !== digest) throw digestMismatch(what, got);
  return digest;
}

function digestMismatch(what: string, got: string): KubefnError {
  return new KubefnError('BAD_REQUEST', `${what}: the content hashes to ${got}, not the digest it was fetched or pushed as`, {
    hint: 'the registry or a proxy in between altered the content; try again, and report it if it persists',
  });
}

/** The Docker-Content-Digest header only cross-checks the digest we computed: it is never trusted alone. */
function crossCheckDigest(res: Response, computed: string, what: string): void {
  const header = res.headers.get('docker-content-digest');
  if (header && header.startsWith('sha256:') && header !== computed) {
    throw new KubefnError('BAD_REQUEST', `${what}: the registry says its digest is ${header}, but the content hashes to ${computed}`);
  }
}

async function readBounded(res: Response, limit: number | undefined, what: string): Promise<Buffer> {
  if (!res.body) return Buffer.alloc(0);
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    total += chunk.length;
    if (limit !== undefined && total > limit) {
      await res.body.cancel().catch(() => {});
      throw new KubefnError('BAD_REQUEST', `${what}: the registry sent more than ${limit} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

function parseJson(bytes: Buffer): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch {
    return undefined;
  }
}

function unauthorized(registry: string, message: string): KubefnError {
  return new KubefnError('UNAUTHORIZED', message, {
    hint: `log in with \`docker login ${registry}\` (writes ~/.docker/config.json) or \`podman login ${registry}\` (writes auth.json); kubefn reads both`,
  });
}

/** A registry's error reply, with the distribution API's {"errors":[{code,message,detail}]} spelled out. */
function registryError(registry: string, what: string, { res, bytes }: Reply): KubefnError {
  const body = parseJson(bytes) as { errors?: { code?: string; message?: string; detail?: unknown }[] } | undefined;
  const errors = Array.isArray(body?.errors) ? body.errors : [];
  const detail = errors.length
    ? errors.map((e) => [e.code, e.message].filter(Boolean).join(': ')).join('; ')
    : res.status === 404 && bytes.length === 0
      ? 'not found'
      : bytes.toString('utf8').slice(0, 300).trim() || res.statusText;
  const message = `registry ${registry}: ${what}: HTTP ${res.status} ${detail}`;
  if (res.status === 401 || res.status === 403) return unauthorized(registry, message);
  const code: ErrorCode = res.status === 404 ? 'NOT_FOUND' : res.status === 429 || res.status >= 500 ? 'INTERNAL' : 'BAD_REQUEST';
  return new KubefnError(code, message);
}

/** fetch's "fetch failed", made into what happened and what to do about it. */
function networkError(url: URL, what: string, err: unknown): KubefnError {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  const code = cause?.code ?? '';
  const reason = cause?.message ?? (err as Error).message;
  const message = `${what}: cannot reach ${url.protocol}//${url.host}: ${reason}`;
  const host = url.host;
  let hint = `check that ${host} is the right registry and that it is reachable from here`;
  if (code === 'ECONNREFUSED') hint = `nothing listens on ${host}; is the registry running?`;
  else if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') hint = `the name ${url.hostname} does not resolve; check the image reference`;
  else if (url.protocol === 'https:' && /wrong version number|packet length too long|http request/i.test(reason + code)) {
    hint = `${host} seems to speak plain HTTP; if you trust the network, pass --insecure-registry ${host}`;
  } else if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY/.test(code)) {
    hint = `${host}'s TLS certificate is not trusted; add its CA with NODE_EXTRA_CA_CERTS=/path/ca.pem, or pass --insecure-registry ${host} to use plain HTTP`;
  }
  return new KubefnError('INTERNAL', message, { cause: err, hint });
}
