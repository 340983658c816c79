// The build service's request: its query checked, its body extracted without letting
// extractSource kill the socket, and, when refused, its body read to its end (bounded) so the
// client gets to see the refusal.

import type { IncomingMessage } from 'node:http';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import type { FastifyRequest } from 'fastify';
import { KubefnError, validateName } from '@kubefn/platform';
import { extractSource, type ExtractLimits } from './source-extract.js';

export interface BuildQuery {
  name: string;
  handler?: string;
}

export type BuildHttpRequest = FastifyRequest<{ Querystring: BuildQuery }>;

const defaultHandler = 'handler.js';
/** Longest handler path, in characters. */
const maxHandlerLength = 1024;
const usage = 'POST /system/builds?name=<function name>&handler=<module path inside the function directory>';

/**
 * Types only, with the route's `attachValidation`: `checkQuery` checks the values itself, so
 * every refusal is a KubefnError and goes through the service's `refuse`, which reads the unread
 * body first (fastify's own 400 would not).
 */
export const buildQuerySchema = {
  type: 'object',
  required: ['name'],
  properties: { name: { type: 'string' }, handler: { type: 'string' } },
} as const;

/** The function name and handler path, or INVALID_NAME / BAD_REQUEST. */
export function checkQuery(request: BuildHttpRequest): { name: string; handler: string } {
  if (request.validationError) {
    throw new KubefnError('BAD_REQUEST', `invalid query: ${request.validationError.message}`, { hint: usage });
  }
  const { name, handler = defaultHandler } = request.query;
  validateName(name);
  const why = handlerProblem(handler);
  if (why) {
    const shown = JSON.stringify(handler.length > 200 ? `${handler.slice(0, 200)}...` : handler);
    throw new KubefnError('BAD_REQUEST', `handler ${shown} ${why}`, {
      hint: 'name the handler module by its path inside the function directory, e.g. "handler.js" or "src/index.ts"',
    });
  }
  return { name, handler };
}

/** Why `handler` is not a plain relative path inside the function directory, or undefined. */
function handlerProblem(handler: string): string | undefined {
  if (handler === '') return 'is empty';
  if (handler.length > maxHandlerLength) return `is longer than ${maxHandlerLength} characters`;
  if (handler.includes('\0')) return 'contains a NUL byte';
  if (path.posix.isAbsolute(handler) || path.win32.isAbsolute(handler)) return 'is an absolute path';
  if (handler.split(/[/\\]/).includes('..')) return 'has a ".." component';
  return undefined;
}

/** Refuses a declared Content-Length over the limit before reading a byte. */
export function checkDeclaredLength(request: FastifyRequest, maxBytes: number): void {
  const declared = declaredLength(request.raw);
  if (declared > maxBytes) {
    throw new KubefnError('BODY_TOO_LARGE', `the upload of ${declared} bytes is over the ${maxBytes} byte limit`, {
      hint: 'list build output, data and anything else the function does not need in .kubefnignore',
    });
  }
}

function declaredLength(raw: IncomingMessage): number {
  return Number(raw.headers['content-length'] ?? 0);
}

/** Longest a refused upload is read and dropped before the answer goes out anyway, in ms. */
const discardTimeoutMs = 10_000;

/**
 * Extracts the request body into `dest`. extractSource destroys its input on error, and
 * destroying the request would reset the connection before the 4xx is sent; so it gets a
 * PassThrough fed from the request instead, unpiped again on error so the caller can discard
 * the rest. `gone` (the client went away) fails the extraction rather than leaving it waiting
 * for bytes that will never come.
 */
export async function extractUpload(
  raw: IncomingMessage,
  dest: string,
  limits: ExtractLimits,
  gone: AbortSignal,
): Promise<{ files: number; bytes: number }> {
  const upload = new PassThrough();
  const cutOff = () => upload.destroy(new KubefnError('BAD_REQUEST', 'the upload was cut off: the client went away'));
  if (gone.aborted) cutOff();
  gone.addEventListener('abort', cutOff, { once: true });
  raw.pipe(upload);
  try {
    return await extractSource(upload, dest, limits);
  } finally {
    gone.removeEventListener('abort', cutOff);
    raw.unpipe(upload);
  }
}

/**
 * Reads and drops what is left of a request body. Resolves true once it ended, false when it
 * did not within `maxBytes` (or a declared Content-Length says it will not), within
 * `discardTimeoutMs`, or the connection broke: the connection must then be closed after the
 * answer, since the next bytes on it are not a request.
 */
export function discardBody(raw: IncomingMessage, maxBytes: number): Promise<boolean> {
  if (raw.readableEnded) return Promise.resolve(true);
  if (raw.destroyed || declaredLength(raw) > maxBytes) return Promise.resolve(false);
  return new Promise<boolean>((resolve) => {
    let bytes = 0;
    const finish = () => {
      clearTimeout(timer);
      raw.off('data', onData).off('end', finish).off('close', finish).off('error', finish);
      if (!raw.readableEnded) raw.pause(); // stop pulling bytes off the wire
      resolve(raw.readableEnded);
    };
    const onData = (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > maxBytes) finish();
    };
    const timer = setTimeout(finish, discardTimeoutMs);
    raw.on('data', onData).on('end', finish).on('close', finish).on('error', finish);
    raw.resume();
  });
}
