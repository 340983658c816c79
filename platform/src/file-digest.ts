// Checks that a stored file still has the sha256 it was stored under, hashing it again only when
// it may have been rewritten since the last check; and a per-key lock for the stores.

import { createHash } from 'node:crypto';
import { open, stat } from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';

/** Most files whose last good check is remembered (a few hundred bytes each); the oldest is forgotten, and hashed again, first. */
export const maxVerifiedFiles = 100_000;

/**
 * A file changed less than this long before it was hashed is hashed again at every check, in ms.
 * File times come from a clock that ticks coarsely (a jiffy, up to 10 ms; 2 s on some file
 * systems): a rewrite in the same tick as the hash can leave size, mtime and ctime as they were
 * (what git calls "racily clean"). Once a file is older than this, any rewrite moves its ctime.
 */
export const racyMs = 2000;

export type FileCheck =
  | { state: 'ok' }
  | { state: 'missing' }
  /** `actual` is the content's sha256 (hex) when it is a readable regular file. */
  | { state: 'mismatch'; why: string; actual?: string };

/**
 * What stat says about a file's bytes: device, inode, size, mtime and ctime in ns. Equal keys
 * mean the file was not rewritten in between: a write moves mtime and ctime, and nothing but the
 * kernel can set ctime (utimes sets mtime back, and moves ctime).
 */
export function fileKey(info: BigIntStats): string {
  return `${info.dev}:${info.ino}:${info.size}:${info.mtimeNs}:${info.ctimeNs}`;
}

/** Remembers which files were hashed and found right, by path and fileKey; bounded. */
export class VerifiedFiles {
  readonly #keys = new Map<string, string>();
  readonly #max: number;
  #hashedBytes = 0;

  constructor(max = maxVerifiedFiles) {
    this.#max = max;
  }

  /** Bytes hashed by check(), ever (monotonic): a check answered from the cache adds nothing. */
  get hashedBytes(): number {
    return this.#hashedBytes;
  }

  /**
   * Whether `file` is a regular file whose sha256 is `expectedHex` (and, given, whose size is
   * `expectedSize`). Hashes it unless its fileKey is the one of its last good check.
   */
  async check(file: string, expectedHex: string, expectedSize?: number, now = Date.now()): Promise<FileCheck> {
    const info = await stat(file, { bigint: true }).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return undefined;
      throw err;
    });
    if (!info) return { state: 'missing' };
    if (!info.isFile()) return { state: 'mismatch', why: 'it is not a regular file' };
    if (expectedSize !== undefined && info.size !== BigInt(expectedSize)) {
      return { state: 'mismatch', why: `it is ${info.size} bytes, not ${expectedSize}` };
    }
    const key = fileKey(info);
    if (this.#keys.get(file) === key) return { state: 'ok' };
    this.#keys.delete(file);
    const hashed = await hashFile(file);
    this.#hashedBytes += hashed.bytes;
    if (hashed.hex !== expectedHex) return { state: 'mismatch', why: `its content hashes to sha256:${hashed.hex}`, actual: hashed.hex };
    // Only a result that holds for the key seen: unchanged while hashed, and not racily fresh.
    if (hashed.key === key && hashed.keyAfter === key && now - Number(info.ctimeNs / 1_000_000n) > racyMs) this.#remember(file, key);
    return { state: 'ok' };
  }

  forget(file: string): void {
    this.#keys.delete(file);
  }

  /** Forgets every file under `dir` (a directory that was removed or replaced). */
  forgetUnder(dir: string): void {
    const prefix = dir.endsWith('/') ? dir : `${dir}/`;
    for (const file of this.#keys.keys()) if (file.startsWith(prefix)) this.#keys.delete(file);
  }

  #remember(file: string, key: string): void {
    this.#keys.set(file, key);
    if (this.#keys.size > this.#max) this.#keys.delete(this.#keys.keys().next().value!);
  }
}

/** The sha256 (hex) of a file's content, with its fileKey before and after reading. */
export async function hashFile(file: string): Promise<{ hex: string; bytes: number; key: string; keyAfter: string }> {
  const handle = await open(file, 'r');
  try {
    const key = fileKey(await handle.stat({ bigint: true }));
    const hash = createHash('sha256');
    let bytes = 0;
    for await (const chunk of handle.createReadStream({ autoClose: false, highWaterMark: 1024 * 1024 }) as AsyncIterable<Buffer>) {
      hash.update(chunk);
      bytes += chunk.length;
    }
    const keyAfter = fileKey(await handle.stat({ bigint: true }));
    return { hex: hash.digest('hex'), bytes, key, keyAfter };
  } finally {
    await handle.close();
  }
}

/** Runs operations on one key one at a time; keys are dropped once idle, so it holds only what runs. */
export class KeyedMutex {
  readonly #tails = new Map<string, Promise<unknown>>();

  run<T>(key: string, op: () => Promise<T>): Promise<T> {
    const previous = this.#tails.get(key) ?? Promise.resolve();
    const result = previous.then(op, op);
    const tail = result.catch(() => undefined);
    this.#tails.set(key, tail);
    void tail.then(() => {
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    });
    return result;
  }
}
