// Writes replies to a node:http ServerResponse: plain bodies in one write, Web Responses streamed with back-pressure.

import type { ServerResponse } from 'node:http';
import type { ErrorBody } from '@kubefn/platform/runtime-contract';
import { PlainReply } from './handler.js';

/** The JSON body of every error the runtime itself answers with: the platform's error shape. */
export type { ErrorBody };

/**
 * `extra` is a flat [name, value, ...] list (x-call-id, connection); writeHead takes it as is,
 * which also keeps repeated headers such as set-cookie intact.
 */
export function writePlain(res: ServerResponse, reply: PlainReply, extra: string[]): void {
  const headers = extra;
  if (reply.contentType !== undefined) headers.push('content-type', reply.contentType);
  const body = reply.body;
  if (body !== undefined) {
    const length = typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength;
    headers.push('content-length', String(length));
  }
  res.writeHead(reply.status, headers);
  res.end(body);
}

export function writeError(res: ServerResponse, status: number, body: ErrorBody, extra: string[]): void {
  writePlain(res, new PlainReply(status, 'application/json', JSON.stringify(body)), extra);
}

// Set by node:http itself; a handler's values would contradict the framing node:http chose.
const hopByHop = new Set(['connection', 'keep-alive', 'transfer-encoding']);

/** The Response's headers plus `extra`, flattened for writeHead. */
export function responseHeaders(response: Response, extra: string[]): string[] {
  const headers = extra;
  let cookies: string[] | undefined;
  response.headers.forEach((value, name) => {
    if (name === 'set-cookie') {
      // forEach joins repeated set-cookie values with ", ", which breaks cookies with dates in them.
      cookies ??= response.headers.getSetCookie?.() ?? [value];
      return;
    }
    if (!hopByHop.has(name)) headers.push(name, value);
  });
  if (cookies) for (const cookie of cookies) headers.push('set-cookie', cookie);
  return headers;
}

/** The call that owns a streamed response: lets a timeout or disconnect cancel the body mid-read. */
export interface StreamOwner {
  reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  /** Asked once, when the status line is about to go out; false (the call timed out meanwhile) stops the write. */
  start(): boolean;
}

/**
 * Streams a Response body without buffering it. The status line waits for the first chunk, so a
 * body that fails at once can still become a 500 (node:http would hold the headers until the
 * first write anyway). Rejects with BodyError when the body stream fails.
 */
export async function streamResponse(
  res: ServerResponse,
  response: Response,
  extra: string[],
  isHead: boolean,
  owner: StreamOwner,
): Promise<void> {
  const body = response.body;
  const status = response.status;
  if (body === null || isHead || status === 204 || status === 304) {
    if (body !== null) body.cancel().catch(ignore);
    if (!owner.start()) return;
    res.writeHead(status, response.statusText || undefined, responseHeaders(response, extra));
    res.end();
    return;
  }
  const reader = body.getReader();
  owner.reader = reader;
  let started = false;
  try {
    let next = await reader.read();
    if (!owner.start()) {
      reader.cancel().catch(ignore);
      return;
    }
    res.writeHead(status, response.statusText || undefined, responseHeaders(response, extra));
    started = true;
    while (!next.done && !res.destroyed) {
      if (!res.write(next.value)) {
        await drained(res);
        if (res.destroyed) break;
      }
      next = await reader.read();
    }
    if (res.destroyed) reader.cancel().catch(ignore);
    else res.end();
  } catch (err) {
    reader.cancel(err).catch(ignore);
    throw new BodyError(started, err);
  } finally {
    owner.reader = undefined;
  }
}

/** The Response body failed; `started` says whether the status line had already gone out. */
export class BodyError extends Error {
  override readonly name = 'BodyError';
  constructor(readonly started: boolean, cause: unknown) {
    super('response body failed', { cause });
  }
}

function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

function ignore(): void {}
