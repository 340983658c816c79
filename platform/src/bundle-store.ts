// A content-addressed store of function bundles (one ES module each), named by their sha256 digest;
// with another suffix, of app archives (see app-store.ts).

import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rename, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { KubefnError } from './errors.js';

const digestPattern = /^sha256:([0-9a-f]{64})$/;
const imageRefPrefix = 'bundle:';
const tempPrefix = '.tmp-';
/** Temp files older than this are left over from a crash, never from a live upload. */
const staleTempMs = 60 * 60 * 1000;

/** Default largest bundle accepted by put(), in bytes. */
export const defaultMaxBundleBytes = 64 * 1024 * 1024;

/** The image reference a FunctionSpec carries for a bundle: `bundle:sha256:<64 hex>`. */
export function bundleImageRef(digest: string): string {
  checkDigest(digest);
  return imageRefPrefix + digest;
}

/** The digest in a `bundle:sha256:<hex>` image reference, or undefined for any other image. */
export function parseBundleImageRef(image: string | undefined): string | undefined {
  if (!image?.startsWith(imageRefPrefix)) return undefined;
  const digest = image.slice(imageRefPrefix.length);
  return digestPattern.test(digest) ? digest : undefined;
}

export function isBundleDigest(digest: string): boolean {
  return digestPattern.test(digest);
}

export interface PutOptions {
  /** Largest bundle accepted, in bytes; default 64 MiB. */
  maxBytes?: number;
}

export class BundleStore {
  readonly dir: string;
  /** File name suffix: `.mjs` for bundles, so node loads one as an ES module whatever package.json sits above the store. */
  readonly suffix: string;

  constructor(dir: string, suffix = '.mjs') {
    this.dir = path.resolve(dir);
    this.suffix = suffix;
  }

  /** Creates the directory and clears temp files a crashed upload left behind. */
  static async open(dir: string, suffix?: string): Promise<BundleStore> {
    const store = new BundleStore(dir, suffix);
    await mkdir(store.dir, { recursive: true });
    const now = Date.now();
    for (const entry of await readdir(store.dir)) {
      if (!entry.startsWith(tempPrefix)) continue;
      const file = path.join(store.dir, entry);
      const info = await stat(file).catch(() => null);
      if (info && now - info.mtimeMs > staleTempMs) await unlink(file).catch(() => {});
    }
    return store;
  }

  /** Where the bundle with this digest lives (whether or not it is there yet). */
  path(digest: string): string {
    return path.join(this.dir, `${checkDigest(digest)}${this.suffix}`);
  }

  async has(digest: string): Promise<boolean> {
    const info = await stat(this.path(digest)).catch(() => null);
    return info?.isFile() ?? false;
  }

  /**
   * Streams `source` into the store under `digest`. The bytes land in a temp file in the same
   * directory and are renamed into place only when their sha256 matches, so a reader never sees
   * a partial or wrong bundle, and a failed upload leaves nothing behind.
   */
  async put(digest: string, source: AsyncIterable<Uint8Array> | Readable, options: PutOptions = {}): Promise<void> {
    const target = this.path(digest);
    const maxBytes = options.maxBytes ?? defaultMaxBundleBytes;
    await mkdir(this.dir, { recursive: true });
    const temp = path.join(this.dir, `${tempPrefix}${randomBytes(8).toString('hex')}`);
    const file = await open(temp, 'wx', 0o644);
    let closed = false;
    try {
      const hash = createHash('sha256');
      let bytes = 0;
      for await (const chunk of source as AsyncIterable<Uint8Array | string>) {
        const data = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
        bytes += data.byteLength;
        if (bytes > maxBytes) {
          throw new KubefnError('BODY_TOO_LARGE', `bundle is larger than the limit of ${maxBytes} bytes`, {
            hint: 'make the function smaller (fewer or lighter dependencies), or raise the bundle size limit',
          });
        }
        hash.update(data);
        await file.write(data);
      }
      const actual = `sha256:${hash.digest('hex')}`;
      if (actual !== digest) {
        throw new KubefnError('BAD_REQUEST', `bundle content does not match its digest: expected ${digest}, got ${actual}`, {
          hint: 'the upload was corrupted or the digest is wrong; build and upload it again',
        });
      }
      await file.sync();
      await file.close();
      closed = true;
      await rename(temp, target);
    } catch (err) {
      if (!closed) await file.close().catch(() => {});
      await unlink(temp).catch(() => {});
      // A write through a file handle names no file: say which, for the log of a full disk.
      if ((err as NodeJS.ErrnoException).code && !(err as NodeJS.ErrnoException).path) (err as NodeJS.ErrnoException).path = temp;
      throw err;
    }
  }
}

function checkDigest(digest: string): string {
  const m = digestPattern.exec(digest);
  if (!m) {
    throw new KubefnError('BAD_REQUEST', `invalid bundle digest ${JSON.stringify(digest)}`, {
      hint: 'a bundle digest looks like "sha256:" followed by 64 lower-case hex digits',
    });
  }
  return m[1]!;
}
