// The build service's response stream: NDJSON events, written bounded on the server and read
// back line by line on the client (the CLI).

import { Readable } from 'node:stream';
import { KubefnError, type ErrorBody } from '@kubefn/platform';

/** What a build produced; `image` is what a spec's `image` names. */
export interface BuildResult {
  image: string;
  digest: string;
  [extra: string]: unknown;
}

export interface BuildLogEvent {
  type: 'log';
  /** ISO 8601. */
  time: string;
  message: string;
}

export type BuildResultEvent = BuildResult & {
  type: 'result';
  /** From the start of extraction to the result, in ms. */
  durationMs: number;
};

export interface BuildErrorEvent {
  type: 'error';
  error: ErrorBody;
}

/** One line of a build's response: any number of logs, then exactly one result or error. */
export type BuildEvent = BuildLogEvent | BuildResultEvent | BuildErrorEvent;

/** Longest log message sent, in UTF-8 bytes; longer ones are cut. */
export const maxLogLineBytes = 4096;
/** Most log lines sent per build; past it one "log truncated" line, then nothing until the end. */
export const maxLogLines = 10_000;
/** Longest NDJSON line `readBuildEvents` accepts, in bytes. */
export const maxEventLineBytes = 1024 * 1024;

const truncatedMark = ' ... [truncated]';

/**
 * Writes one build's events as NDJSON to `readable`. Bounded: at most `maxLogLines` lines of at
 * most `maxLogLineBytes` each (about 40 MiB), so a chatty build cannot grow the buffer of a slow
 * client without limit. Everything after the final event is dropped.
 */
export class BuildEventWriter {
  /** Pushed to, never paused: what bounds it is the line count, not back-pressure. */
  readonly readable = new Readable({ read() {} });
  #lines = 0;
  #ended = false;

  constructor(private readonly now: () => Date = () => new Date()) {}

  log(message: string): void {
    if (this.#ended || this.#lines > maxLogLines) return;
    this.#lines++;
    if (this.#lines > maxLogLines) message = `log truncated: more than ${maxLogLines} lines`;
    const event: BuildLogEvent = { type: 'log', time: this.now().toISOString(), message: truncateUtf8(message, maxLogLineBytes) };
    this.#push(`${JSON.stringify(event)}\n`);
  }

  /** Writes the final event and ends the stream. */
  end(event: BuildResultEvent | BuildErrorEvent): void {
    if (this.#ended) return;
    this.#ended = true;
    let line: string;
    try {
      line = JSON.stringify(event);
    } catch (err) {
      // A result the build callback filled with something JSON cannot hold (a BigInt, a cycle).
      const error = new KubefnError('INTERNAL', `the build result cannot be sent as JSON: ${(err as Error).message}`);
      line = JSON.stringify({ type: 'error', error: error.toJSON() } satisfies BuildErrorEvent);
    }
    this.#push(`${line}\n`);
    this.#push(null);
  }

  #push(chunk: string | null): void {
    // Destroyed when the client went away (fastify destroys the payload stream); nothing to say then.
    if (!this.readable.destroyed) this.readable.push(chunk);
  }
}

/**
 * Parses a build service response body into events, one per NDJSON line. Lines of unknown type
 * are skipped, so an older CLI can read a newer service. A stream that ends without a `result`
 * or `error` event means the connection broke: the caller should treat it as a failure.
 * Throws KubefnError INTERNAL on a line that is not JSON or is longer than `maxEventLineBytes`.
 */
export async function* readBuildEvents(body: AsyncIterable<Uint8Array>): AsyncGenerator<BuildEvent> {
  let pending = Buffer.alloc(0);
  for await (const chunk of body) {
    pending = pending.length === 0 ? Buffer.from(chunk) : Buffer.concat([pending, chunk]);
    let newline: number;
    while ((newline = pending.indexOf(0x0a)) !== -1) {
      const event = parseEventLine(pending.subarray(0, newline));
      pending = pending.subarray(newline + 1);
      if (event) yield event;
    }
    checkLineLength(pending.length);
  }
  const last = parseEventLine(pending);
  if (last) yield last;
}

function parseEventLine(line: Buffer): BuildEvent | undefined {
  checkLineLength(line.length);
  const text = line.toString('utf8').trim();
  if (text === '') return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new KubefnError('INTERNAL', `the build service sent a line that is not JSON: ${text.slice(0, 200)}`, { cause: err });
  }
  const type = (value as { type?: unknown } | null)?.type;
  return type === 'log' || type === 'result' || type === 'error' ? (value as BuildEvent) : undefined;
}

function checkLineLength(bytes: number): void {
  if (bytes > maxEventLineBytes) {
    throw new KubefnError('INTERNAL', `the build service sent a line longer than ${maxEventLineBytes} bytes`);
  }
}

/** Cuts `text` to at most `maxBytes` of UTF-8, marker included, never inside a character. */
function truncateUtf8(text: string, maxBytes: number): string {
  if (text.length * 3 <= maxBytes) return text; // fast path: cannot be over
  const bytes = Buffer.from(text);
  if (bytes.length <= maxBytes) return text;
  let end = maxBytes - Buffer.byteLength(truncatedMark);
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--; // back off a continuation byte
  return bytes.toString('utf8', 0, end) + truncatedMark;
}
