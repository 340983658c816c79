// Turns a node:http IncomingMessage into a Web Request, with a size-limited, pull-based body stream.

import type { IncomingMessage } from 'node:http';

export class BodyTooLargeError extends Error {
  override readonly name = 'BodyTooLargeError';
  readonly code = 'BODY_TOO_LARGE';
  constructor(readonly maxBodyBytes: number) {
    super(`request body is larger than ${maxBodyBytes} bytes`);
  }
}

/** A request body whose limit is enforced while it streams; owned by one call. */
export class RequestBody {
  /** The stream handed to `new Request`. */
  readonly stream: ReadableStream<Uint8Array>;
  private received = 0;
  private attached = false;
  private finished = false;
  private controller!: ReadableStreamDefaultController<Uint8Array>;

  constructor(
    private readonly req: IncomingMessage,
    private readonly maxBodyBytes: number,
    /** Called once when the body grows past the limit. */
    private readonly onTooLarge: () => void,
  ) {
    this.stream = new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          this.controller = controller;
        },
        pull: () => {
          // Listeners go on at the first read: a handler that never reads the body leaves the
          // message untouched, and node:http then discards it itself to keep the connection usable.
          if (!this.attached) this.attach();
          this.req.resume();
        },
        cancel: () => {
          this.stop();
        },
      },
      // Pull one chunk per read (at most 64 KiB from node:http), so memory stays flat whatever the body size.
      { highWaterMark: 0 },
    );
  }

  /**
   * The call ended: a reader still waiting gets `reason` (a handler outliving its call must not hang),
   * and the unread rest is thrown away so a keep-alive connection can carry the next call.
   */
  discard(reason?: unknown): void {
    if (this.finished) return;
    this.controller.error(reason ?? new DOMException('the call ended before its request body was read', 'AbortError'));
    this.stop();
  }

  private stop(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.attached && !this.req.complete) this.req.resume();
  }

  private attach(): void {
    this.attached = true;
    const req = this.req;
    req.on('data', (chunk: Buffer) => {
      this.received += chunk.byteLength;
      if (this.received > this.maxBodyBytes) {
        if (this.finished) {
          // Discarding after the call ended: a body this large is not worth reading to the end.
          req.destroy();
          return;
        }
        this.finished = true;
        req.pause();
        this.controller.error(new BodyTooLargeError(this.maxBodyBytes));
        this.onTooLarge();
        return;
      }
      if (this.finished) return;
      this.controller.enqueue(chunk);
      req.pause();
    });
    req.once('end', () => {
      if (this.finished) return;
      this.finished = true;
      this.controller.close();
    });
    req.once('error', (err) => {
      if (this.finished) return;
      this.finished = true;
      this.controller.error(err);
    });
  }
}

export interface ConvertedRequest {
  request: Request;
  /** Present when the request has a body. */
  body: RequestBody | undefined;
}

/**
 * Builds the Request a handler sees. GET, HEAD and bodyless requests get no stream at all;
 * this runs on every call, so it avoids work a plain GET does not need.
 */
export function toRequest(req: IncomingMessage, maxBodyBytes: number, onTooLarge: () => void): ConvertedRequest {
  const method = req.method ?? 'GET';
  const url = fullUrl(req);
  const raw = req.rawHeaders;
  const headers = new Headers();
  for (let i = 0; i < raw.length; i += 2) headers.append(raw[i]!, raw[i + 1]!);
  if (method === 'GET' || method === 'HEAD' || !hasBody(req)) {
    return { request: new Request(url, { method, headers }), body: undefined };
  }
  const body = new RequestBody(req, maxBodyBytes, onTooLarge);
  return { request: new Request(url, { method, headers, body: body.stream, duplex: 'half' }), body };
}

function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  if (length !== undefined) return length !== '0';
  return req.headers['transfer-encoding'] !== undefined;
}

function fullUrl(req: IncomingMessage): string {
  const path = req.url ?? '/';
  // Absolute-form targets ("GET http://host/path") come from clients that think we are a proxy.
  if (path.charCodeAt(0) !== 47 /* '/' */) {
    if (path.startsWith('http://') || path.startsWith('https://')) return path;
    throw new TypeError(`unsupported request target ${JSON.stringify(path.slice(0, 100))}`);
  }
  return 'http://' + (req.headers.host || 'localhost') + path;
}
