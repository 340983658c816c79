// What a registry's error replies and network failures mean, as KubefnErrors that say what
// happened and what to do about it: 401 is a login missing or not accepted, 403 a login the
// registry knows but does not allow this access, 429 and 5xx a registry overloaded or down
// (UNAVAILABLE, worth retrying), as is a registry that cannot be reached at all.

import { dependencyErrorCode, KubefnError } from '@kubefn/platform';
import type { Call, Reply } from './exchange.js';

export function unauthorized(registry: string, message: string): KubefnError {
  return new KubefnError('UNAUTHORIZED', message, {
    hint: `log in with \`docker login ${registry}\` (writes ~/.docker/config.json) or \`podman login ${registry}\` (writes auth.json); kubefn reads both`,
  });
}

/** A registry's error reply, with the distribution API's {"errors":[{code,message,detail}]} spelled out. */
export function registryError(registry: string, call: Pick<Call, 'what' | 'scopes'>, { res, bytes }: Reply): KubefnError {
  const errors = distributionErrors(bytes);
  const detail = errors.length
    ? errors.map((e) => [e.code, e.message].filter(Boolean).join(': ')).join('; ')
    : res.status === 404 && bytes.length === 0
      ? 'not found'
      : bytes.toString('utf8').slice(0, 300).trim() || res.statusText;
  if (res.status === 403) return forbidden(registry, accessAsked(call), `${res.status}: ${detail}`);
  const message = `registry ${registry}: ${call.what}: HTTP ${res.status} ${detail}`;
  if (res.status === 401) return unauthorized(registry, message);
  const code = dependencyErrorCode(res.status);
  if (code !== 'UNAVAILABLE') return new KubefnError(code, message);
  const retryAfter = res.headers.get('retry-after');
  const when = !retryAfter ? 'in a moment' : /^\d+$/.test(retryAfter) ? `in ${retryAfter} s, as it asks` : `after ${retryAfter}, as it asks`;
  return new KubefnError(code, message, { hint: `${registry} is overloaded or down; try again ${when}` });
}

/**
 * FORBIDDEN: the registry knows the login (or its token server granted a token) but does not
 * allow `access` ("push to acme/fn"); `why` is what it said.
 */
export function forbidden(registry: string, access: string, why: string): KubefnError {
  return new KubefnError('FORBIDDEN', `registry ${registry}: ${access} refused (${why})`, {
    hint: `the login is not allowed this; ask whoever runs ${registry} for access, or log in as a user who has it`,
  });
}

/** "push to acme/fn", "pull from acme/base", from the call's token scopes; else what the call is. */
export function accessAsked(call: Pick<Call, 'what' | 'scopes'>): string {
  const asked = call.scopes.flatMap((scope) => {
    const m = /^repository:(.+):([a-z*,]+)$/.exec(scope);
    if (!m) return [];
    return [m[2]!.split(',').includes('push') ? `push to ${m[1]}` : `pull from ${m[1]}`];
  });
  return asked.length ? asked.join(' and ') : call.what;
}

function distributionErrors(bytes: Buffer): { code?: string; message?: string }[] {
  try {
    const body = JSON.parse(bytes.toString('utf8')) as { errors?: unknown } | null;
    return Array.isArray(body?.errors) ? (body.errors as { code?: string; message?: string }[]) : [];
  } catch {
    return [];
  }
}

/** fetch's "fetch failed", made into what happened and what to do about it. */
export function networkError(url: URL, what: string, err: unknown): KubefnError {
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
  return new KubefnError('UNAVAILABLE', message, { cause: err, hint });
}

export function digestMismatch(what: string, got: string): KubefnError {
  return new KubefnError('BAD_REQUEST', `${what}: the content hashes to ${got}, not the digest it was fetched or pushed as`, {
    hint: 'the registry or a proxy in between altered the content; try again, and report it if it persists',
  });
}
