// `fn invoke`: calls a function through the gateway and streams its response body to stdout.

import { fstatSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { errorFromBody, isKubefnError, KubefnError, validateName } from '@kubefn/platform/core';
import type { App, Io } from './app.js';
import { collect, pairs } from './args.js';
import { checkArg, usageError } from './errors.js';
import type { OutStream } from './output.js';

/** How much of an error response is kept to look for a kubefn error body. */
const errorBodyLimitBytes = 64 * 1024;

/** `--data` text, `@file`, `@-` (stdin); else stdin when it is a pipe or a file; else no body. */
export async function requestBody(data: string | undefined, io: Io): Promise<Uint8Array | undefined> {
  if (data !== undefined) {
    if (data === '@-') return readAll(io.stdin);
    if (data.startsWith('@')) {
      const file = path.resolve(io.cwd, data.slice(1));
      return readFile(file).catch((err: NodeJS.ErrnoException) => {
        throw usageError(`cannot read --data file ${file}: ${err.code ?? err.message}`, 'pass -d @<existing file>, -d @- for stdin, or -d <text>');
      });
    }
    return new TextEncoder().encode(data);
  }
  return stdinIsPiped(io) ? readAll(io.stdin) : undefined;
}

/**
 * True for `echo hi | fn invoke x` and `fn invoke x < file`. A terminal, or the socket a parent
 * process leaves open without writing to it, is not read: waiting on it would hang.
 */
function stdinIsPiped(io: Io): boolean {
  if (io.stdin.isTTY) return false;
  if (io.stdin !== process.stdin) return true;
  try {
    const info = fstatSync(0);
    return info.isFIFO() || info.isFile();
  } catch {
    return false;
  }
}

/** The gateway's default body limit: a larger body would be refused anyway, so stop reading there. */
const maxBodyBytes = 32 * 1024 * 1024;

export async function readAll(stream: AsyncIterable<unknown>): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of stream) {
    const b = typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk as Uint8Array);
    bytes += b.length;
    if (bytes > maxBodyBytes) {
      throw new KubefnError('BODY_TOO_LARGE', `the request body is over ${maxBodyBytes} bytes`, { hint: 'send a smaller body' });
    }
    chunks.push(b);
  }
  return Buffer.concat(chunks);
}

/** Writes with back-pressure when the stream supports it, so a large body piped to a slow reader stays bounded. */
async function writeChunk(stream: OutStream, chunk: Uint8Array): Promise<void> {
  if (stream.write(chunk)) return;
  const s = stream as OutStream & { once?: (event: string, listener: () => void) => unknown };
  if (typeof s.once === 'function') await new Promise<void>((resolve) => s.once?.('drain', resolve));
}

interface InvokeFlags {
  data?: string;
  method?: string;
  header?: string[];
  path?: string;
  query?: string[];
  include?: boolean;
}

export function registerInvoke(program: Command, app: App): void {
  program
    .command('invoke')
    .description('call a function and print its response body as it streams')
    .argument('<name>', 'function name')
    .option('-d, --data <data>', 'request body: text, @file to read a file, @- to read stdin')
    .option('-X, --method <method>', 'HTTP method (default: GET, or POST with a body)')
    .option('-H, --header <name:value>', 'request header (repeatable)', collect)
    .option('--path <path>', 'sub-path after /function/<name>, e.g. /users/7')
    .option('-q, --query <key=value>', 'query parameter (repeatable)', collect)
    .option('-i, --include', 'print the response status line and headers before the body')
    .addHelpText(
      'after',
      `
The body is read from stdin when stdin is a pipe or a file and no --data is given.
A response outside 2xx exits with code 1 and reports the status on stderr.

Examples:
  $ fn invoke hello
  $ fn invoke hello -q name=Ada
  $ fn invoke echo -d '{"n": 1}' -H content-type:application/json
  $ echo hi | fn invoke echo
  $ fn invoke api --path /users/7 -X DELETE -i
  $ fn invoke upload -d @photo.jpg -H content-type:image/jpeg`,
    )
    .action(async (name: string, flags: InvokeFlags, command: Command) => {
      checkArg(() => validateName(name));
      if (flags.method !== undefined && !/^[A-Za-z]+$/.test(flags.method)) {
        throw usageError(`--method must be an HTTP method like GET or POST, got ${JSON.stringify(flags.method)}`);
      }
      const method = flags.method?.toUpperCase();
      const headers = pairs(flags.header, ':', '--header', 'name:value');
      const query = pairs(flags.query, '=', '--query', 'key=value');
      const body = await requestBody(flags.data, app.io);
      if (body !== undefined && (method === 'GET' || method === 'HEAD')) {
        throw usageError(`a ${method} request cannot carry a body`, 'drop -X to send it as POST, or pass the data with --query');
      }
      const client = app.client(command);
      const res = await client.invoke(name, {
        ...(method ? { method } : {}),
        ...(flags.path ? { path: flags.path } : {}),
        headers,
        query,
        ...(body !== undefined ? { body } : {}),
        signal: app.io.signal,
      });

      const { stdout } = app.io;
      if (flags.include) {
        let head = `HTTP/1.1 ${res.status} ${res.statusText}\n`;
        res.headers.forEach((value, key) => (head += `${key}: ${value}\n`));
        stdout.write(`${head}\n`);
      }
      const kept: Uint8Array[] = [];
      let keptBytes = 0;
      let last = 0x0a;
      if (res.body) {
        for await (const chunk of res.body) {
          await writeChunk(stdout, chunk);
          if (chunk.byteLength > 0) last = chunk[chunk.byteLength - 1] ?? last;
          if (!res.ok && keptBytes < errorBodyLimitBytes) {
            kept.push(chunk);
            keptBytes += chunk.byteLength;
          }
        }
      }
      // Keep the shell prompt off the end of a body without a final newline.
      if (stdout.isTTY && last !== 0x0a) stdout.write('\n');
      if (!res.ok) {
        app.exitCode = 1;
        app.note(`error: function "${name}" answered HTTP ${res.status} ${res.statusText}`.trimEnd());
        const detail = kubefnErrorIn(res.status, Buffer.concat(kept).toString('utf8'));
        if (detail) app.note(detail);
      }
    });
}

/** The message and hint of a kubefn error body (the gateway's own errors), if that is what the body is. */
function kubefnErrorIn(status: number, text: string): string | undefined {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof body !== 'object' || body === null || typeof (body as { code?: unknown }).code !== 'string') return undefined;
  const err = errorFromBody(status, body);
  if (!isKubefnError(err) || err.message.startsWith('HTTP ')) return undefined;
  return `  ${err.message}${err.hint ? `\nhint: ${err.hint}` : ''}`;
}
