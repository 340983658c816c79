// Bounded per-function log history with followers, and a byte stream -> line splitter, for drivers.

import type { LogLine, LogOptions } from './driver.js';

/** Longest line kept, in bytes; the rest of a longer line is dropped and counted. */
export const maxLogLineBytes = 16 * 1024;

interface Entry {
  line: LogLine;
  atMs: number;
  bytes: number;
}

/** A FIFO that drops its oldest entries beyond `maxLines` or `maxBytes`. */
class BoundedQueue {
  #items: (Entry | undefined)[] = [];
  #head = 0;
  #bytes = 0;
  /** Entries dropped since the last resetDropped(). */
  dropped = 0;

  constructor(
    readonly maxLines: number,
    readonly maxBytes: number,
  ) {}

  get length(): number {
    return this.#items.length - this.#head;
  }

  push(entry: Entry): void {
    this.#items.push(entry);
    this.#bytes += entry.bytes;
    while (this.length > 1 && (this.length > this.maxLines || this.#bytes > this.maxBytes)) {
      this.shift();
      this.dropped++;
    }
  }

  shift(): Entry | undefined {
    if (this.length === 0) return undefined;
    const entry = this.#items[this.#head]!;
    this.#items[this.#head++] = undefined;
    this.#bytes -= entry.bytes;
    // Compact now and then so the array does not grow with the total number of lines ever seen.
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return entry;
  }

  toArray(): Entry[] {
    return this.#items.slice(this.#head) as Entry[];
  }

  clear(): void {
    this.#items = [];
    this.#head = 0;
    this.#bytes = 0;
  }
}

interface Follower {
  queue: BoundedQueue;
  wake: (() => void) | undefined;
}

export interface LogBufferOptions {
  /** Lines of history kept (default 5000). */
  maxLines?: number;
  /** Bytes of history kept (default 8 MiB), so 5000 long lines cannot take 80 MiB. */
  maxBytes?: number;
  /** Lines a follower may fall behind by before the oldest are dropped (default 1000). */
  followerMaxLines?: number;
  /** Bytes a follower may fall behind by (default 1 MiB). */
  followerMaxBytes?: number;
}

/** The log history of one function: a bounded ring, plus live followers with bounded queues. */
export class LogBuffer {
  readonly name: string;
  readonly #history: BoundedQueue;
  readonly #followers = new Set<Follower>();
  readonly #followerMaxLines: number;
  readonly #followerMaxBytes: number;
  #closed = false;

  constructor(name: string, options: LogBufferOptions = {}) {
    this.name = name;
    this.#history = new BoundedQueue(options.maxLines ?? 5000, options.maxBytes ?? 8 * 1024 * 1024);
    this.#followerMaxLines = options.followerMaxLines ?? 1000;
    this.#followerMaxBytes = options.followerMaxBytes ?? 1024 * 1024;
  }

  get closed(): boolean {
    return this.#closed;
  }

  append(instance: string, stream: LogLine['stream'], text: string, at: Date = new Date()): void {
    if (this.#closed) return;
    const line: LogLine = { name: this.name, instance, timestamp: at.toISOString(), text, stream };
    const entry: Entry = { line, atMs: at.getTime(), bytes: text.length + instance.length + 64 };
    this.#history.push(entry);
    for (const f of this.#followers) {
      f.queue.push(entry);
      f.wake?.();
    }
  }

  /** Lines kept, oldest first, filtered by `since` and then cut to the last `tail`. */
  snapshot(options: Pick<LogOptions, 'since' | 'tail'> = {}): LogLine[] {
    let entries = this.#history.toArray();
    if (options.since) {
      const sinceMs = options.since.getTime();
      entries = entries.filter((e) => e.atMs >= sinceMs);
    }
    if (options.tail !== undefined) entries = options.tail > 0 ? entries.slice(-Math.floor(options.tail)) : [];
    return entries.map((e) => e.line);
  }

  /**
   * History, then (with `follow`) new lines until `signal` aborts or close(). A follower that falls
   * behind loses its oldest pending lines and gets one `system` line saying how many.
   */
  async *read(options: LogOptions, signal: AbortSignal): AsyncGenerator<LogLine> {
    // Subscribe before the snapshot, in the same tick, so no line falls between the two.
    const follower: Follower | undefined =
      options.follow && !this.#closed
        ? { queue: new BoundedQueue(this.#followerMaxLines, this.#followerMaxBytes), wake: undefined }
        : undefined;
    if (follower) this.#followers.add(follower);
    try {
      for (const line of this.snapshot(options)) {
        if (signal.aborted) return;
        yield line;
      }
      if (!follower) return;
      while (!signal.aborted) {
        if (follower.queue.dropped > 0) {
          const n = follower.queue.dropped;
          follower.queue.dropped = 0;
          yield { name: this.name, instance: this.name, timestamp: new Date().toISOString(), stream: 'system', text: `${n} log lines dropped: the reader fell behind` };
          continue;
        }
        const entry = follower.queue.shift();
        if (entry) {
          yield entry.line;
          continue;
        }
        if (this.#closed) return;
        await waitForWake(follower, signal);
      }
    } finally {
      if (follower) this.#followers.delete(follower);
    }
  }

  /** Ends every follower (after what it has queued) and drops the history. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#history.clear();
    for (const f of this.#followers) f.wake?.();
  }
}

function waitForWake(follower: Follower, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = (): void => {
      follower.wake = undefined;
      signal.removeEventListener('abort', done);
      resolve();
    };
    follower.wake = done;
    signal.addEventListener('abort', done, { once: true });
  });
}

/**
 * Splits a byte stream into lines. A line longer than `maxLineBytes` is cut there and the rest
 * counted, so a process that never prints a newline cannot grow the partial-line buffer.
 */
export class LineSplitter {
  readonly #emit: (text: string) => void;
  readonly #maxLineBytes: number;
  #parts: Buffer[] = [];
  #size = 0;
  #overflowBytes = 0;

  constructor(emit: (text: string) => void, maxLineBytes: number = maxLogLineBytes) {
    this.#emit = emit;
    this.#maxLineBytes = maxLineBytes;
  }

  write(chunk: Buffer | string): void {
    const data = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    let start = 0;
    for (;;) {
      // 0x0a never occurs inside a multi-byte UTF-8 sequence, so splitting bytes is safe.
      const nl = data.indexOf(10, start);
      this.#append(data.subarray(start, nl === -1 ? data.length : nl));
      if (nl === -1) return;
      this.#flush();
      start = nl + 1;
    }
  }

  /** Emits a last line that had no newline. */
  end(): void {
    if (this.#size > 0 || this.#overflowBytes > 0) this.#flush();
  }

  #append(piece: Buffer): void {
    if (piece.length === 0) return;
    const room = this.#maxLineBytes - this.#size;
    if (piece.length <= room) {
      this.#parts.push(Buffer.from(piece));
      this.#size += piece.length;
      return;
    }
    if (room > 0) {
      this.#parts.push(Buffer.from(piece.subarray(0, room)));
      this.#size += room;
    }
    this.#overflowBytes += piece.length - Math.max(room, 0);
  }

  #flush(): void {
    let text = Buffer.concat(this.#parts, this.#size).toString('utf8');
    if (text.endsWith('\r')) text = text.slice(0, -1);
    if (this.#overflowBytes > 0) text += ` [truncated ${this.#overflowBytes} bytes]`;
    this.#parts = [];
    this.#size = 0;
    this.#overflowBytes = 0;
    this.#emit(text);
  }
}
