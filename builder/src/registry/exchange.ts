// One HTTP exchange with a registry or its token server: bounded in time and in body size, with
// network failures made into KubefnErrors. What the manifest, blob and auth modules build on.

import { Agent, fetch, type RequestInit, type Response } from 'undici';
import { KubefnError } from '@kubefn/platform';
import { networkError } from './errors.js';

export type RequestBody = NonNullable<RequestInit['body']>;

/** What one HTTP exchange with the registry needs; `scopes` are token scopes it needs granted. */
export interface Call {
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

export interface Reply {
  res: Response;
  /** The whole body, unless the call streams it. */
  bytes: Buffer;
}

/** What the manifest and blob modules need of the client: authenticated calls to a registry. */
export interface RegistryExchange {
  /** Runs `call` on `registry`, authenticated as it demands; a status not in `ok` becomes a KubefnError. */
  expect(ok: number[], call: Call, registry: string): Promise<Reply>;
  /** "https://host[:port]" (or http) of the registry's API, for resolving upload Locations. */
  baseUrl(registry: string): string;
}

export interface SendOptions {
  userAgent: string;
  /** Bound on the exchange until its response headers (and a buffered body) arrive, in ms. */
  timeoutMs: number;
}

/**
 * The client's own connection pool, from the undici package rather than Node's built-in fetch:
 * a process that also loads undici (the gateway does) replaces the global dispatcher the
 * built-in fetch shares, and Node 20's built-in fetch then fails on streamed uploads.
 */
const registryAgent = new Agent({ keepAliveTimeout: 10_000 });

/** The HTTP exchange itself, bounded by `timeoutMs`, with network failures made into KubefnErrors. */
export async function send(url: URL, call: Call, authorization: string | undefined, options: SendOptions): Promise<Reply> {
  const headers: Record<string, string> = { 'user-agent': options.userAgent, ...call.headers };
  if (authorization) headers.authorization = authorization;
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), options.timeoutMs);
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
      throw new KubefnError('DEADLINE_EXCEEDED', `${call.what}: no answer from ${url.host} within ${options.timeoutMs} ms`, { cause: err });
    }
    if (err instanceof KubefnError) throw err;
    throw networkError(url, call.what, err);
  } finally {
    clearTimeout(timer);
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

export function parseJson(bytes: Buffer): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch {
    return undefined;
  }
}
