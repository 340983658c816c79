// Header hygiene for the proxy hop: hop-by-hop headers never cross it, nor `Expect`, which the
// gateway's server answers itself (100 Continue) and undici refuses to send.

import type { IncomingHttpHeaders } from 'node:http';

export const hopByHop: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
  'expect',
]);

type HeaderValue = string | string[] | undefined;

/** Copies end-to-end headers, dropping hop-by-hop ones and any named in `Connection`. */
export function endToEnd(headers: IncomingHttpHeaders | Record<string, HeaderValue>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  const connection = headers.connection;
  const named = typeof connection === 'string' ? connection.toLowerCase().split(',').map((s) => s.trim()) : [];
  for (const key in headers) {
    const v = headers[key];
    if (v === undefined || hopByHop.has(key) || named.includes(key)) continue;
    out[key] = v;
  }
  return out;
}
