// Registry authentication: reads a 401's WWW-Authenticate challenges and answers them with the
// stored login, as Basic credentials or a Bearer token from the registry's token server (the
// docker token spec; OAuth2 for identity tokens), cached per registry and scope set.

import { KubefnError } from '@kubefn/platform';
import { identityTokenUsername, type Credentials } from './credentials.js';
import { accessAsked, forbidden, registryError, unauthorized } from './errors.js';
import { parseJson, type Call, type Reply } from './exchange.js';

/** Token lifetime when the token server does not say (the token spec's default), in seconds. */
const defaultTokenLifetimeS = 60;
/** A cached token is dropped this long before it expires, so it does not expire in flight, in ms. */
const tokenExpiryMarginMs = 10_000;

/** One challenge of a WWW-Authenticate header: scheme lowercased, parameter names lowercased. */
export interface AuthChallenge {
  scheme: string;
  params: Record<string, string>;
  token68?: string;
}

interface CachedAuth {
  header: string;
  /** ms since the epoch; Infinity for Basic. */
  expiresAt: number;
}

/** Sends one request without authenticating it (to a token server). */
export type SendUnauthenticated = (url: URL, call: Call) => Promise<Reply>;

/** What authenticating to registries remembers: logins asked for, challenges met, headers earned. */
export class RegistryAuth {
  private readonly credentialCache = new Map<string, Promise<Credentials | undefined>>();
  /** Per registry: the challenge it answered 401 with, so later calls authenticate up front. */
  private readonly challenges = new Map<string, AuthChallenge>();
  /** Per registry and scope set: the Authorization header to send. */
  private readonly authCache = new Map<string, CachedAuth>();

  constructor(
    private readonly lookupCredentials: (registry: string) => Promise<Credentials | undefined>,
    private readonly send: SendUnauthenticated,
  ) {}

  /** The header to send a first attempt with: cached, or earned from the registry's last challenge; undefined before any. */
  async header(registry: string, scopes: string[]): Promise<string | undefined> {
    const key = cacheKey(registry, scopes);
    const cached = this.authCache.get(key);
    if (cached && cached.expiresAt > Date.now()) return cached.header;
    const challenge = this.challenges.get(registry);
    return challenge ? this.authenticate(registry, challenge, scopes) : undefined;
  }

  /**
   * The header to try again with after a 401 carrying `wwwAuthenticate`; UNAUTHORIZED when
   * there is nothing to offer (Basic, and no stored login).
   */
  async answer(registry: string, wwwAuthenticate: string, scopes: string[]): Promise<string> {
    const challenge = pickChallenge(registry, parseWwwAuthenticate(wwwAuthenticate));
    // Remembered for later calls without its scope, which belongs to this request only.
    const { scope: _scope, ...params } = challenge.params;
    this.challenges.set(registry, { ...challenge, params });
    this.authCache.delete(cacheKey(registry, scopes));
    const header = await this.authenticate(registry, challenge, scopes);
    if (header === undefined) throw await this.refused(registry, scopes, '');
    return header;
  }

  /**
   * Why a registry answered 401 to the answer to its challenge: no login, a login it did not
   * accept (UNAUTHORIZED), or a token without the access asked. A token server grants only
   * what the login may do, and a registry says "insufficient_scope" with a 401 where others
   * send 403; the login is right either way, so that is FORBIDDEN.
   */
  async refused(registry: string, scopes: string[], wwwAuthenticate: string): Promise<KubefnError> {
    const creds = await this.credentialsFor(registry);
    if (!creds) return unauthorized(registry, `registry ${registry} requires login`);
    if (parseWwwAuthenticate(wwwAuthenticate).some((c) => c.params.error === 'insufficient_scope')) {
      return forbidden(registry, accessAsked({ what: 'access', scopes }), `"${creds.username}" was not granted it: insufficient_scope`);
    }
    return unauthorized(registry, `registry ${registry} refused the credentials of "${creds.username}"`);
  }

  /** The Authorization header that answers `challenge` for `scopes`, cached; undefined if we have nothing to offer. */
  private async authenticate(registry: string, challenge: AuthChallenge, scopes: string[]): Promise<string | undefined> {
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
    this.authCache.set(cacheKey(registry, scopes), cached);
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
    const reply = await this.send(url, call);
    if (reply.res.status === 401) {
      throw unauthorized(registry, `the token server of registry ${registry} refused ${creds ? `the credentials of "${creds.username}"` : 'an anonymous request'}`);
    }
    if (reply.res.status === 403) {
      const access = accessAsked({ what: 'a token', scopes });
      throw forbidden(registry, access, `its token server refused ${creds ? `"${creds.username}"` : 'an anonymous request'} with 403`);
    }
    if (reply.res.status !== 200) throw registryError(registry, call, reply);
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
}

function cacheKey(registry: string, scopes: string[]): string {
  return `${registry} ${[...scopes].sort().join(' ')}`;
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

export function pullScope(repository: string): string {
  return `repository:${repository}:pull`;
}

export function pushScope(repository: string): string {
  return `repository:${repository}:pull,push`;
}

function basicAuth(c: Credentials): string {
  return `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}`;
}
