// The invoke path's HTTP/1.1 client for calls without a request body: kept-alive connections to
// one replica, the request written as one string, the answer's head parsed in one pass and its
// body streamed on with backpressure. undici (which carries every other call) spends more on
// each call than the whole hop's budget: a Request object that validates each header, a wasm
// parser calling back into JavaScript per header, Buffers for every name and value. A replica
// is a kubefn runtime behind the gateway, but what its function writes is not trusted: the head
// is checked as strictly as undici would (status line, header syntax, one framing, a size cap),
// and anything else ends the connection with an error.

import net from 'node:net';

/** What a call hears back, in order: onConnect, then onHeaders, onData..., onComplete; or onError once. */
export interface ReplicaHandler {
  /** Before anything is sent: `abort` cuts the call (onError follows with `err`). */
  onConnect(abort: (err: Error) => void): void;
  /**
   * The answer's head: its status and headers as a flat [name, value, ...] list, names in
   * lower case. Returns false to drop the call (the connection is closed, no onError).
   * `resume` restarts a body that onData paused.
   */
  onHeaders(status: number, headers: string[], resume: () => void): boolean;
  /** A piece of the body; returns false to pause it until `resume`. */
  onData(chunk: Buffer): boolean;
  onComplete(): void;
  onError(err: Error): void;
}

export interface ReplicaCall {
  method: string;
  /** Path and query, as sent. */
  path: string;
  /** End-to-end headers as a flat [name, value, ...] list. */
  headers: string[];
  /** How long the replica may stay silent, ms: before its head, and between pieces of its body. */
  timeoutMs: number;
}

/** An error of the hop itself; `code` says which (see ReplicaClient's codes). */
export class ReplicaHopError extends Error {
  constructor(readonly code: 'REPLICA_CONNECT_TIMEOUT' | 'REPLICA_CLOSED' | 'REPLICA_TIMEOUT' | 'REPLICA_PROTOCOL', message: string) {
    super(message);
    this.name = 'ReplicaHopError';
  }
}

export interface ReplicaClientOptions {
  /** How long a connect may take, ms. */
  connectTimeoutMs?: number;
  /** Longest an unused connection is kept, ms (less when the replica says it keeps it less). */
  keepAliveMs?: number;
  /** Largest answer head taken, bytes. */
  maxHeadBytes?: number;
  /** Most connections kept unused. */
  maxIdle?: number;
  /**
   * Most GET and HEAD calls sent together on one connection, pipelined, when they are sent in the
   * same turn of the event loop (default 1: each call has a connection of its own). Pipelined
   * calls are answered in order, so a call waits for the answers before its own: they are
   * pipelined only while the replica is steady (see steadyAfter) and only with calls to the same
   * path.
   */
  pipelining?: number;
  /**
   * Answers in a row, each whole within slowCallMs and framed by a Content-Length (not streamed),
   * before calls are pipelined; any other answer, or a failed call, starts the count again
   * (default 32).
   */
  steadyAfter?: number;
  /** An answer that took longer than this from its request, ms, is slow (default 20). */
  slowCallMs?: number;
}

/** Bytes a chunk-size line may take (hex digits, extensions, CRLF) before the answer is refused. */
const maxChunkLineBytes = 4096;

/** Connections to one replica (`origin`: http://host:port). */
export class ReplicaClient {
  readonly #host: string;
  readonly #port: number;
  readonly #hostHeader: string;
  readonly #connectTimeoutMs: number;
  readonly #keepAliveMs: number;
  readonly #maxHeadBytes: number;
  readonly #maxIdle: number;
  readonly #idle: Connection[] = [];
  readonly #all = new Set<Connection>();
  readonly #maxBatch: number;
  readonly #steadyAfter: number;
  readonly #slowCallMs: number;
  /** Answers in a row that were quick and not streamed (see steadyAfter), up to steadyAfter. */
  #steady = 0;
  /** The connection this turn's GET and HEAD calls to #batchPath share (see #openBatch). */
  #batch: Connection | undefined;
  #batchPath = '';
  #batchScheduled = false;
  #closed = false;

  constructor(origin: string, options: ReplicaClientOptions = {}) {
    const url = new URL(origin);
    if (url.protocol !== 'http:') throw new Error(`replica client: ${origin} is not an http: origin`);
    this.#host = url.hostname.replace(/^\[|\]$/g, '');
    this.#port = Number(url.port || 80);
    this.#hostHeader = url.host;
    this.#connectTimeoutMs = options.connectTimeoutMs ?? 5000;
    this.#keepAliveMs = options.keepAliveMs ?? 30_000;
    this.#maxHeadBytes = options.maxHeadBytes ?? 64 * 1024;
    this.#maxIdle = options.maxIdle ?? 256;
    this.#maxBatch = options.pipelining ?? 1;
    this.#steadyAfter = options.steadyAfter ?? 32;
    this.#slowCallMs = options.slowCallMs ?? 20;
  }

  /** Open connections, busy or not (for tests). */
  get connections(): number {
    return this.#all.size;
  }

  dispatch(call: ReplicaCall, handler: ReplicaHandler): void {
    let head: string;
    try {
      head = requestHead(call, this.#hostHeader);
    } catch (err) {
      handler.onError(err as Error);
      return;
    }
    if (this.#closed) {
      handler.onError(new ReplicaHopError('REPLICA_CLOSED', 'the replica client is closed'));
      return;
    }
    const now = Date.now();
    let route: string | undefined;
    if (this.#maxBatch > 1 && this.#steady >= this.#steadyAfter && (call.method === 'GET' || call.method === 'HEAD')) {
      const q = call.path.indexOf('?');
      route = q < 0 ? call.path : call.path.slice(0, q);
      const batch = this.#batch;
      if (batch !== undefined) {
        if (route === this.#batchPath && batch.usable && batch.calls > 0 && batch.calls < this.#maxBatch) {
          batch.start(call, head, handler, now);
          return;
        }
        // Another path has a connection of its own; this turn's batch stays the first path's.
        if (route !== this.#batchPath) route = undefined;
      }
    }
    let conn: Connection | undefined;
    while ((conn = this.#idle.pop()) !== undefined) {
      // One the replica may be closing about now is not worth the race: close it and take another.
      if (conn.usable && now < conn.idleUntil) break;
      conn.destroy();
    }
    conn ??= this.#connect();
    if (route !== undefined) this.#openBatch(conn, route);
    conn.start(call, head, handler, now);
  }

  /**
   * A call on `conn` ended: answered (`streamed` when its body was not framed by a Content-Length)
   * after it was sent at `sentAt`, or failed (sentAt undefined). Counts towards steadyAfter.
   */
  ended(sentAt: number | undefined, streamed: boolean): void {
    if (this.#maxBatch <= 1) return;
    if (sentAt === undefined || streamed || Date.now() - sentAt > this.#slowCallMs) this.#steady = 0;
    else if (this.#steady < this.#steadyAfter) this.#steady++;
  }

  /**
   * Makes `conn` (unused until now) the connection the GET and HEAD calls sent in this turn of
   * the event loop share: their requests leave in one write when the turn's I/O is done, and the
   * replica reads them, and answers them, together. Calls of one turn arrived together; none
   * waits behind a call sent in an earlier turn.
   */
  #openBatch(conn: Connection, path: string): void {
    if (this.#batch !== undefined) this.#batch.uncork();
    this.#batch = conn;
    this.#batchPath = path;
    conn.cork();
    if (!this.#batchScheduled) {
      this.#batchScheduled = true;
      setImmediate(this.#closeBatch);
    }
  }

  readonly #closeBatch = (): void => {
    this.#batchScheduled = false;
    const conn = this.#batch;
    this.#batch = undefined;
    conn?.uncork();
  };

  #connect(): Connection {
    const conn = new Connection(this, this.#host, this.#port, this.#connectTimeoutMs, this.#maxHeadBytes);
    this.#all.add(conn);
    return conn;
  }

  /** Called by a connection whose call completed and which may carry another. */
  released(conn: Connection, replicaKeepAliveMs: number | undefined): void {
    if (this.#closed || this.#idle.length >= this.#maxIdle) {
      conn.destroy();
      return;
    }
    // A second short of the replica's own keep-alive, as it may close the connection then.
    const keep = replicaKeepAliveMs === undefined ? this.#keepAliveMs : Math.min(this.#keepAliveMs, replicaKeepAliveMs - 1000);
    if (keep <= 0) {
      conn.destroy();
      return;
    }
    conn.idleUntil = Date.now() + keep;
    this.#idle.push(conn);
  }

  /** Called by a connection once its socket is gone. */
  gone(conn: Connection): void {
    this.#all.delete(conn);
    const i = this.#idle.indexOf(conn);
    if (i >= 0) this.#idle.splice(i, 1);
  }

  /** Closes the unused connections now and the busy ones as their calls end. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const conn of this.#idle.splice(0)) conn.destroy();
    await Promise.all([...this.#all].map((c) => c.closed));
  }
}

/** The request's head, checked: nothing in it may end a line early (a second request smuggled in). */
function requestHead(call: ReplicaCall, host: string): string {
  if (!methodToken.test(call.method)) throw new ReplicaHopError('REPLICA_PROTOCOL', `invalid method "${call.method}"`);
  if (!pathChars.test(call.path)) throw new ReplicaHopError('REPLICA_PROTOCOL', 'invalid characters in the request path');
  let head = `${call.method} ${call.path} HTTP/1.1\r\nhost: ${host}\r\n`;
  const h = call.headers;
  for (let i = 0; i < h.length; i += 2) {
    const name = h[i]!;
    const value = h[i + 1]!;
    if (!headerToken.test(name) || badValue.test(value)) throw new ReplicaHopError('REPLICA_PROTOCOL', `invalid request header "${name}"`);
    head += `${name}: ${value}\r\n`;
  }
  // No body: a method that usually carries one says so, as undici and curl do.
  if (call.method === 'POST' || call.method === 'PUT' || call.method === 'PATCH') head += 'content-length: 0\r\n';
  return head + '\r\n';
}

const methodToken = /^[A-Z]+$/;
const pathChars = /^[\x21-\x7e]+$/;
const headerToken = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/;
const badValue = /[\0\r\n]/;
const validStatusLine = /^HTTP\/1\.[01] [1-9]\d{2}(?: [^\r\n]*)?(?:\r\n|$)/;
const validHead = /^HTTP\/1\.[01] [1-9]\d{2}(?: [^\r\n]*)?(?:\r\n[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[^\r\n\0]*)*$/;

const enum State {
  Connecting,
  Idle,
  Head,
  Body,
  ChunkSize,
  ChunkData,
  ChunkDataEnd,
  Trailers,
  UntilClose,
  Done,
}

/** A call sent on a connection and not yet answered in full; `handler` undefined once it is over or dropped. */
interface Pending {
  handler: ReplicaHandler | undefined;
  method: string;
  /** When its request was written (Date.now()). */
  sentAt: number;
}

/**
 * One socket to the replica. It carries one call at a time, or a batch of GET and HEAD calls
 * pipelined together (see ReplicaClient.dispatch), answered in order.
 */
class Connection {
  usable = true;
  idleUntil = 0;
  readonly closed: Promise<void>;
  readonly #client: ReplicaClient;
  readonly #socket: net.Socket;
  readonly #maxHeadBytes: number;
  #state = State.Connecting;
  /** Calls sent and not yet answered in full, oldest (the one being answered) first. */
  readonly #calls: Pending[] = [];
  /** Bytes received but not yet parsed (a head in pieces, or what a paused body left). */
  #pending: Buffer | undefined;
  /** Body bytes still to come: of the Content-Length, or of the current chunk. */
  #remaining = 0;
  #keepAliveMs: number | undefined;
  #reuse = true;
  #paused = false;
  #timeoutMs = 0;
  /** The calls' timeout (ReplicaCall.timeoutMs). */
  #callTimeoutMs = 0;
  #trailerBytes = 0;

  constructor(client: ReplicaClient, host: string, port: number, connectTimeoutMs: number, maxHeadBytes: number) {
    this.#client = client;
    this.#maxHeadBytes = maxHeadBytes;
    const socket = net.connect({ host, port, noDelay: true });
    this.#socket = socket;
    socket.setTimeout(connectTimeoutMs);
    this.#timeoutMs = connectTimeoutMs;
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('timeout', () => this.#onTimeout());
    socket.on('error', (err) => this.#fail(err));
    socket.on('end', () => this.#onEnd());
    this.closed = new Promise((resolve) => socket.once('close', () => {
      this.usable = false;
      this.#client.gone(this);
      this.#fail(new ReplicaHopError('REPLICA_CLOSED', 'the replica closed the connection before answering'));
      resolve();
    }));
    socket.once('connect', () => {
      if (this.#state === State.Connecting) this.#state = this.#calls.length > 0 ? State.Head : State.Idle;
      this.#setTimeout(this.#calls.length > 0 ? this.#callTimeoutMs : 0);
    });
  }

  /** Calls sent on this connection and not yet answered. */
  get calls(): number {
    return this.#calls.length;
  }

  /** Holds writes back until uncork(), so a batch leaves in one write. */
  cork(): void {
    this.#socket.cork();
  }

  uncork(): void {
    this.#socket.uncork();
  }

  start(call: ReplicaCall, head: string, handler: ReplicaHandler, now: number): void {
    const pending: Pending = { handler, method: call.method, sentAt: now };
    this.#calls.push(pending);
    if (this.#calls.length === 1) this.#nextAnswer();
    this.#callTimeoutMs = call.timeoutMs;
    handler.onConnect((err) => this.#abort(pending, err));
    if (pending.handler !== handler) return; // aborted at once
    if (this.#state !== State.Connecting) this.#setTimeout(call.timeoutMs);
    this.#socket.write(head, 'latin1');
  }

  destroy(): void {
    this.usable = false;
    this.#socket.destroy();
  }

  /** Readies the parser for the answer of the oldest call. */
  #nextAnswer(): void {
    this.#remaining = 0;
    this.#paused = false;
    this.#trailerBytes = 0;
    if (this.#state !== State.Connecting) this.#state = State.Head;
  }

  #setTimeout(ms: number): void {
    if (ms === this.#timeoutMs) return;
    this.#timeoutMs = ms;
    this.#socket.setTimeout(ms);
  }

  /**
   * The caller cut `pending`. Alone on the connection, the connection goes with it, so the
   * replica hears the caller left. Pipelined, the calls after it still have their answers to
   * come on this connection: its own is read and dropped.
   */
  #abort(pending: Pending, err: Error): void {
    const handler = pending.handler;
    if (!handler) return;
    pending.handler = undefined;
    if (this.#calls.length === 1) {
      this.#calls.length = 0;
      this.destroy();
    } else if (this.#calls[0] === pending && this.#paused) {
      this.#resume(pending);
    }
    handler.onError(err);
  }

  /** Ends every call on the connection with `err`, and the connection with them. */
  #fail(err: Error): void {
    this.usable = false;
    const calls = this.#calls.splice(0);
    if (!this.#socket.destroyed) this.#socket.destroy();
    if (calls.length > 0) this.#client.ended(undefined, true);
    for (const pending of calls) {
      const handler = pending.handler;
      pending.handler = undefined;
      handler?.onError(err);
    }
  }

  #onTimeout(): void {
    if (this.#state === State.Connecting) {
      this.#fail(new ReplicaHopError('REPLICA_CONNECT_TIMEOUT', `could not connect within ${this.#timeoutMs} ms`));
    } else if (this.#calls.length > 0) {
      this.#fail(new ReplicaHopError('REPLICA_TIMEOUT', `the replica was silent for ${this.#timeoutMs} ms`));
    } else {
      this.destroy(); // unused all this time
    }
  }

  #onEnd(): void {
    // A body that runs until the connection closes is complete now.
    if (this.#state === State.UntilClose && this.#calls.length > 0) {
      this.usable = false;
      this.#complete();
    }
    this.destroy();
  }

  #onData(chunk: Buffer): void {
    if (this.#calls.length === 0) {
      // Nothing was asked: a replica that talks out of turn is not trusted with another call.
      this.destroy();
      return;
    }
    this.#pending = this.#pending === undefined ? chunk : Buffer.concat([this.#pending, chunk]);
    this.#parse();
  }

  /** Parses what is pending until it runs out, every call is answered, or a body is paused. */
  #parse(): void {
    while (this.#pending !== undefined && this.#calls.length > 0 && !this.#paused && this.usable) {
      const buf = this.#pending;
      const pending = this.#calls[0]!;
      switch (this.#state) {
        case State.Head: {
          const end = buf.indexOf('\r\n\r\n', 0, 'latin1');
          if (end < 0) {
            if (buf.length > this.#maxHeadBytes) this.#protocol(`an answer head over ${this.#maxHeadBytes} bytes`);
            return;
          }
          if (end > this.#maxHeadBytes) return this.#protocol(`an answer head over ${this.#maxHeadBytes} bytes`);
          this.#take(end + 4);
          this.#head(pending, buf.toString('latin1', 0, end));
          break;
        }
        case State.Body:
        case State.ChunkData:
        case State.UntilClose: {
          const n = this.#state === State.UntilClose ? buf.length : Math.min(buf.length, this.#remaining);
          const piece = n === buf.length ? buf : buf.subarray(0, n);
          this.#take(n);
          this.#remaining -= n;
          if (this.#state === State.Body && this.#remaining === 0) {
            // The last piece: whether the caller wants a pause no longer matters here.
            pending.handler?.onData(piece);
            if (this.#calls[0] === pending) this.#complete();
            break;
          }
          if (this.#state === State.ChunkData && this.#remaining === 0) this.#state = State.ChunkDataEnd;
          if (pending.handler && !pending.handler.onData(piece) && this.#calls[0] === pending) this.#pause();
          break;
        }
        case State.ChunkSize: {
          const eol = buf.indexOf('\r\n', 0, 'latin1');
          if (eol < 0) {
            if (buf.length > maxChunkLineBytes) this.#protocol('a chunk-size line too long');
            return;
          }
          const line = buf.toString('latin1', 0, eol);
          this.#take(eol + 2);
          const m = chunkSize.exec(line);
          if (!m) return this.#protocol('an invalid chunk-size line');
          const size = parseInt(m[1]!, 16);
          if (!Number.isSafeInteger(size)) return this.#protocol('a chunk too large');
          this.#remaining = size;
          this.#state = size === 0 ? State.Trailers : State.ChunkData;
          break;
        }
        case State.ChunkDataEnd: {
          if (buf.length < 2) return;
          if (buf[0] !== 0x0d || buf[1] !== 0x0a) return this.#protocol('a chunk not followed by CRLF');
          this.#take(2);
          this.#state = State.ChunkSize;
          break;
        }
        case State.Trailers: {
          // Trailers are not passed on (the caller's answer is framed anew); they are skipped to the blank line.
          const eol = buf.indexOf('\r\n', 0, 'latin1');
          if (eol < 0) {
            if (this.#trailerBytes + buf.length > this.#maxHeadBytes) this.#protocol('trailers too long');
            return;
          }
          this.#trailerBytes += eol + 2;
          if (this.#trailerBytes > this.#maxHeadBytes) return this.#protocol('trailers too long');
          this.#take(eol + 2);
          if (eol === 0) this.#complete();
          break;
        }
        default:
          return this.#protocol('bytes after the answer');
      }
    }
  }

  /** Drops the first `n` pending bytes. */
  #take(n: number): void {
    const buf = this.#pending!;
    this.#pending = n >= buf.length ? undefined : buf.subarray(n);
  }

  #head(pending: Pending, text: string): void {
    if (!validHead.test(text)) return this.#protocol(validStatusLine.test(text) ? 'an invalid header line' : 'an invalid status line');
    const lines = text.split('\r\n');
    const status = (text.charCodeAt(9) - 48) * 100 + (text.charCodeAt(10) - 48) * 10 + (text.charCodeAt(11) - 48);
    // HTTP/1.0 keeps a connection only when it says so.
    let keepAlive = text.charCodeAt(7) === 49; // '1'
    const headers: string[] = [];
    let length: number | undefined;
    let chunked = false;
    let encoded = false;
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i]!;
      const colon = line.indexOf(':');
      const name = line.slice(0, colon).toLowerCase();
      const value = trimSpace(line, colon + 1);
      if (name === 'content-length') {
        if (!/^\d{1,15}$/.test(value) || (length !== undefined && length !== Number(value))) return this.#protocol('an invalid Content-Length');
        length = Number(value);
      } else if (name === 'transfer-encoding') {
        encoded = true;
        chunked = /(?:^|,)[ \t]*chunked[ \t]*$/i.test(value);
      } else if (name === 'connection') {
        if (/(?:^|,)[ \t]*close[ \t]*(?:,|$)/i.test(value)) keepAlive = false;
        else if (/(?:^|,)[ \t]*keep-alive[ \t]*(?:,|$)/i.test(value)) keepAlive = true;
      } else if (name === 'keep-alive') {
        const t = /timeout=(\d+)/i.exec(value);
        if (t) this.#keepAliveMs = Number(t[1]) * 1000;
      }
      headers.push(name, value);
    }
    if (!keepAlive) this.#reuse = false;
    if (status < 200) {
      // 100 Continue and the like come before the answer; no upgrade was asked for.
      if (status === 101) return this.#protocol('an upgrade that was not asked for');
      return;
    }
    // A length beside a transfer coding, or a coding that is not chunked last, is how answers are smuggled.
    if (encoded && (length !== undefined || !chunked)) return this.#protocol('a Transfer-Encoding the gateway does not take');
    const bodiless = pending.method === 'HEAD' || status === 204 || status === 304;
    if (bodiless) this.#state = State.Done;
    else if (chunked) this.#state = State.ChunkSize;
    else if (length !== undefined) {
      this.#remaining = length;
      this.#state = State.Body;
    } else {
      this.#state = State.UntilClose;
      this.#reuse = false;
    }
    const handler = pending.handler;
    if (handler && !handler.onHeaders(status, headers, () => this.#resume(pending))) {
      // Dropped: alone, the connection goes; pipelined, this answer is read and let go.
      pending.handler = undefined;
      if (this.#calls.length === 1) {
        this.#calls.length = 0;
        this.destroy();
        return;
      }
    }
    // onHeaders may have cut the call with the abort given to onConnect, and the connection with it.
    if (this.#calls[0] !== pending) return;
    if (this.#state === State.Done || (this.#state === State.Body && this.#remaining === 0)) this.#complete();
  }

  /** Stops reading until the caller drains; a caller slow to read is not the replica's silence, so no timeout meanwhile. */
  #pause(): void {
    this.#paused = true;
    this.#socket.pause();
    this.#setTimeout(0);
  }

  #resume(pending: Pending): void {
    if (this.#calls[0] !== pending || !this.#paused) return;
    this.#paused = false;
    this.#setTimeout(this.#callTimeoutMs);
    this.#socket.resume();
    this.#parse();
  }

  /** The oldest call is answered in full. */
  #complete(): void {
    const pending = this.#calls.shift()!;
    const handler = pending.handler;
    pending.handler = undefined;
    // A chunked answer completes in Trailers, one read until close in UntilClose: both streamed.
    this.#client.ended(pending.sentAt, this.#state === State.Trailers || this.#state === State.UntilClose);
    if (this.#calls.length > 0) {
      // Pipelined: the next answer follows; a replica that ends the connection here leaves the rest unanswered.
      if (!this.#reuse || !this.usable) this.destroy();
      else this.#nextAnswer();
    } else {
      this.#state = State.Idle;
      if (this.#pending !== undefined || !this.#reuse || !this.usable) this.destroy();
      else this.#client.released(this, this.#keepAliveMs);
    }
    handler?.onComplete();
  }

  #protocol(what: string): void {
    this.#fail(new ReplicaHopError('REPLICA_PROTOCOL', `the replica sent ${what}`));
  }
}

/** `line` from `from` without the spaces and tabs around it (what HTTP calls optional whitespace). */
function trimSpace(line: string, from: number): string {
  let start = from;
  let end = line.length;
  while (start < end && (line.charCodeAt(start) === 32 || line.charCodeAt(start) === 9)) start++;
  while (end > start && (line.charCodeAt(end - 1) === 32 || line.charCodeAt(end - 1) === 9)) end--;
  return line.slice(start, end);
}

const chunkSize = /^([0-9a-fA-F]{1,15})[ \t]*(?:;.*)?$/;
