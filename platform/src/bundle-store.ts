// A content-addressed store of function bundles (one ES module each), named by their sha256 digest;
// with another suffix, of app archives (see app-store.ts). What it holds is checked against its
// digest when it is used, a blob that fails is moved aside, and unreferenced ones are collected.

import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rename, rm, stat, unlink, utimes } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { KubefnError } from './errors.js';
import { KeyedMutex, VerifiedFiles } from './file-digest.js';

const digestPattern = /^sha256:([0-9a-f]{64})$/;
const imageRefPrefix = 'bundle:';
const tempPrefix = '.tmp-';
/** Where blobs that failed their digest check are moved, one per digest, until collected. */
const corruptDir = '.corrupt';
/** Most digests whose last use is remembered for collection; the oldest is forgotten first. */
const maxUsed = 100_000;
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

export interface CollectOptions {
  /**
   * A blob written or used (checked, uploaded, prepared) less than this long ago is kept even
   * when nothing references it: its upload may be the first half of a deploy still on its way.
   */
  graceMs: number;
  /** The time to judge age by, in ms since the epoch (default: now). */
  now?: number;
  /** Most blobs removed in one call; the rest wait for the next (default 1000). */
  maxRemovals?: number;
}

/** Default most blobs one collect() removes. */
export const defaultMaxRemovals = 1000;

export class BundleStore {
  readonly dir: string;
  /** File name suffix: `.mjs` for bundles, so node loads one as an ES module whatever package.json sits above the store. */
  readonly suffix: string;
  /** What the blobs are, for messages: "bundle", "app". */
  readonly what: string;
  /** Told about blobs that failed their digest check (and were moved aside); default: nowhere. */
  onWarning: (message: string) => void = () => {};
  /** The time, in ms since the epoch: when a blob was used, and whether a file is too fresh to remember as checked. */
  clock: () => number = Date.now;
  /** Bytes hashed to check stored blobs, ever (monotonic): a cache hit adds nothing. */
  get hashedBytes(): number {
    return this.#verified.hashedBytes;
  }
  readonly #verified = new VerifiedFiles();
  readonly #locks = new KeyedMutex();
  /** Last use of each digest (check, upload), in ms since the epoch, so collection spares it for the grace period. */
  readonly #used = new Map<string, number>();

  constructor(dir: string, suffix = '.mjs', what = 'bundle') {
    this.dir = path.resolve(dir);
    this.suffix = suffix;
    this.what = what;
  }

  /** Creates the directory and clears temp files a crashed upload left behind. */
  static async open(dir: string, suffix?: string, what?: string): Promise<BundleStore> {
    const store = new BundleStore(dir, suffix, what);
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

  /**
   * Whether the store holds this digest with the right content: false when it never had it, or
   * when what it had failed the digest check (that blob is moved aside, so an upload replaces it).
   */
  async has(digest: string): Promise<boolean> {
    try {
      return await this.verify(digest);
    } catch (err) {
      if ((err as KubefnError).code === 'CORRUPT') return false;
      throw err;
    }
  }

  /**
   * True when the blob is there and its sha256 is its digest, false when it is not there. A blob
   * whose content does not match is moved to `<dir>/.corrupt/` and reported: this throws CORRUPT
   * (and keeps throwing it until a good copy is uploaded). The result is cached by the file's
   * device, inode, size, mtime and ctime, so a blob is hashed again only once it was rewritten.
   */
  async verify(digest: string): Promise<boolean> {
    const file = this.path(digest);
    return this.#locks.run(digest, async () => {
      this.#touch(digest);
      const found = await this.#verified.check(file, digest.slice('sha256:'.length), undefined, this.clock());
      if (found.state === 'ok') return true;
      const aside = path.join(this.dir, corruptDir, path.basename(file));
      if (found.state === 'missing') {
        if (!(await stat(aside).catch(() => undefined))) return false;
        throw this.#corrupt(digest, `failed its digest check earlier and was moved aside to ${aside}`);
      }
      await mkdir(path.dirname(aside), { recursive: true });
      await rm(aside, { recursive: true, force: true });
      await rename(file, aside);
      // Its age is the time it was moved aside: collection keeps it for the grace period from now.
      const now = new Date(this.clock());
      await utimes(aside, now, now).catch(() => {});
      this.#verified.forget(file);
      const error = this.#corrupt(digest, `failed its digest check (${found.why}); it was moved aside to ${aside}`);
      this.onWarning(error.message);
      throw error;
    });
  }

  #corrupt(digest: string, what: string): KubefnError {
    return new KubefnError('CORRUPT', `the stored ${this.what} ${digest} ${what}`, {
      hint: '`fn deploy` uploads it again (the platform asks for it, as it no longer has a good copy)',
    });
  }

  #touch(digest: string): void {
    this.#used.delete(digest);
    this.#used.set(digest, this.clock());
    if (this.#used.size > maxUsed) this.#used.delete(this.#used.keys().next().value!);
  }

  /**
   * Removes the blobs whose digest is not in `referenced` and that were neither written nor
   * used within the grace period, and the moved-aside blobs older than it. Returns the digests
   * removed (at most `maxRemovals`).
   */
  async collect(referenced: ReadonlySet<string>, options: CollectOptions): Promise<string[]> {
    const now = options.now ?? this.clock();
    const max = options.maxRemovals ?? defaultMaxRemovals;
    const removed: string[] = [];
    const stale = (mtimeMs: number, digest?: string) => Math.max(mtimeMs, (digest && this.#used.get(digest)) || 0) <= now - options.graceMs;
    for (const entry of await readdir(this.dir)) {
      if (removed.length >= max) break;
      const digest = this.#digestOf(entry);
      if (!digest || referenced.has(digest)) continue;
      const file = path.join(this.dir, entry);
      await this.#locks.run(digest, async () => {
        const info = await stat(file).catch(() => undefined);
        if (!info?.isFile() || !stale(info.mtimeMs, digest)) return;
        await unlink(file);
        this.#verified.forget(file);
        this.#used.delete(digest);
        removed.push(digest);
      });
    }
    const aside = path.join(this.dir, corruptDir);
    for (const entry of await readdir(aside).catch(() => [] as string[])) {
      const file = path.join(aside, entry);
      const info = await stat(file).catch(() => undefined);
      if (info && stale(info.mtimeMs)) await rm(file, { recursive: true, force: true }).catch(() => {});
    }
    return removed;
  }

  /** The digest a file in the store is named for, or undefined for anything else (temp files, .corrupt). */
  #digestOf(entry: string): string | undefined {
    if (!entry.endsWith(this.suffix)) return undefined;
    const digest = `sha256:${entry.slice(0, -this.suffix.length)}`;
    return digestPattern.test(digest) ? digest : undefined;
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
      // Under the digest's lock: a check of the old blob never moves this new one aside.
      await this.#locks.run(digest, async () => {
        this.#touch(digest);
        await rename(temp, target);
        this.#verified.forget(target);
      });
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
