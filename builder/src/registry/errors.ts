// What a registry's error replies and network failures mean, as KubefnErrors that say what
// happened and what to do about it.

import { KubefnError, type ErrorCode } from '@kubefn/platform';
import type { Reply } from './exchange.js';

export function unauthorized(registry: string, message: string): KubefnError {
  return new KubefnError('UNAUTHORIZED', message, {
    hint: `log in with \`docker login ${registry}\` (writes ~/.docker/config.json) or \`podman login ${registry}\` (writes auth.json); kubefn reads both`,
  });
}

/** A registry's error reply, with the distribution API's {"errors":[{code,message,detail}]} spelled out. */
export function registryError(registry: string, what: string, { res, bytes }: Reply): KubefnError {
  const errors = distributionErrors(bytes);
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
  return new KubefnError('INTERNAL', message, { cause: err, hint });
}

export function digestMismatch(what: string, got: string): KubefnError {
  return new KubefnError('BAD_REQUEST', `${what}: the content hashes to ${got}, not the digest it was fetched or pushed as`, {
    hint: 'the registry or a proxy in between altered the content; try again, and report it if it persists',
  });
}
