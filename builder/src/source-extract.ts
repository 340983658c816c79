// Extracts an untrusted function source upload (tar or tar.gz) into a build's scratch directory
// for the build service, within limits and without ever writing outside it.

import { once } from 'node:events';
import { constants as fsc } from 'node:fs';
import { chmod, copyFile, lstat, mkdir, open, readdir, realpath, stat, symlink, unlink } from 'node:fs/promises';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { extract as tarExtract, type Extract } from 'tar-stream';
import { KubefnError, isKubefnError } from '@kubefn/platform';
import { defaultPathLimits, fileMode, isInside, linkProblem, pathProblem, pathSegments, quote } from './source-paths.js';

const MiB = 1024 * 1024;

export interface ExtractLimits {
  /** Most entries (files, directories and links) an archive may hold. */
  maxEntries: number;
  /** Most bytes of file content once extracted, hard-link copies included. */
  maxBytes: number;
  /** Most bytes of input as uploaded, before gunzip. */
  maxCompressedBytes: number;
  /** Most uncompressed bytes per compressed byte, checked once past `ratioFloorBytes`. */
  maxRatio: number;
  /** Longest entry name or link target, in bytes. */
  maxPathLength: number;
  /** Most path segments in an entry name. */
  maxDepth: number;
}

export const defaultExtractLimits: Readonly<ExtractLimits> = Object.freeze({
  maxEntries: 20_000,
  maxBytes: 200 * MiB,
  maxCompressedBytes: 50 * MiB,
  maxRatio: 200,
  maxPathLength: defaultPathLimits.maxPathLength,
  maxDepth: defaultPathLimits.maxDepth,
});

/** Small archives of text compress very well; only past this many bytes is the ratio a bomb sign. */
const ratioFloorBytes = 1 * MiB;
/**
 * Tar bytes allowed per entry on top of file content when bounding the uncompressed stream: a
 * 512-byte header, a pax record for a long name or link, and block padding. Generous on purpose;
 * it only has to stop a stream of zero blocks, which the tar parser would read forever.
 */
const tarBytesPerEntry = 4096;

/**
 * Extracts a tar or tar.gz (told apart by the gzip magic bytes) from an untrusted upload into
 * `dest`, an existing empty directory, and never writes outside it. A hostile or malformed entry
 * is refused with BAD_REQUEST naming the entry and the reason; passing a limit with
 * BODY_TOO_LARGE. Limits are checked while streaming, before the bytes past them are read.
 *
 * - Names: relative, "/"-separated, no `..` component, no NUL. Backslashes and drive letters
 *   (`C:`) are refused rather than taken literally: such a name is almost always a Windows path
 *   meant as a separator, and refusing it keeps one meaning on every platform.
 * - Each path may appear once: a second entry for a path (file, link or directory over a file)
 *   is refused, never last-wins. Repeated directory entries are harmless and allowed.
 * - Symlinks must point inside the archive and resolve (dangling links are refused, since where
 *   they would lead cannot be checked). They are created after every file, so nothing is ever
 *   written through one, and each is then checked with realpath.
 * - Hard links must name an earlier file entry and become a copy of it.
 * - Devices, FIFOs, contiguous files and unknown types are refused.
 * - Files get mode 0o755 if any execute bit is set, else 0o644; directories 0o755.
 *
 * On error the input is destroyed (an HTTP request's socket with it), so a refused upload is
 * never read to its end. `dest` may then hold part of the archive, never an escaping link: the
 * caller must delete it.
 */
export async function extractSource(
  input: NodeJS.ReadableStream | AsyncIterable<Uint8Array>,
  dest: string,
  limits: Partial<ExtractLimits> = {},
): Promise<{ files: number; bytes: number }> {
  const lim: ExtractLimits = { ...defaultExtractLimits, ...limits };
  const source = input instanceof Readable ? input : Readable.from(input);
  const parser = tarExtract();
  const abort = new AbortController();
  try {
    const out = new Extraction(await emptyDirectory(dest), lim);
    const feeding = feed(source, parser, lim, abort.signal);
    // An input, gunzip or limit error stops the parser, which ends the loop below with that error.
    feeding.catch((err: unknown) => parser.destroy(asArchiveError(err)));
    for await (const entry of archiveErrors(parser)) await out.add(entry);
    await feeding;
    await out.createSymlinks();
    return { files: out.files, bytes: out.bytes };
  } catch (err) {
    abort.abort();
    parser.destroy();
    source.destroy();
    throw err;
  }
}

type EntryStream = Extract extends AsyncIterable<infer S> ? S : never;
type Kind = 'directory' | 'file' | 'symlink';

/** What has been extracted so far; every path it makes is checked to be under `root`. */
class Extraction {
  files = 0;
  bytes = 0;
  private entries = 0;
  /** Every path the archive has named, by what it is; "" is `root` itself. */
  private readonly seen = new Map<string, Kind>([['', 'directory']]);
  private readonly links: { rel: string; name: string; target: string }[] = [];

  constructor(
    private readonly root: string,
    private readonly limits: ExtractLimits,
  ) {}

  async add(entry: EntryStream): Promise<void> {
    const { name, type } = entry.header;
    if (++this.entries > this.limits.maxEntries) {
      throw tooLarge(name, `passes the limit of ${this.limits.maxEntries} entries`);
    }
    const why = pathProblem(name, this.limits);
    if (why) throw refused(name, why);
    const segments = pathSegments(name);
    if (type !== 'file') entry.resume(); // nothing else has content we use; let the parser move on
    try {
      if (type === 'directory') return await this.directory(segments, name);
      if (segments.length === 0) throw refused(name, 'names the archive root');
      if (type === 'file') return await this.file(entry, segments);
      if (type === 'link') return await this.hardLink(segments, name, entry.header.linkname ?? '');
      if (type === 'symlink') return await this.planSymlink(segments, name, entry.header.linkname ?? '');
      const what = type ? `a ${type}` : 'an unknown type of';
      throw refused(name, `is ${what} entry; only files, directories and links are allowed`);
    } catch (err) {
      throw clash(name, err);
    }
  }

  /**
   * Links are made last, so no entry above was written through one. Each is then checked where
   * it really leads: links that each look inside can lead out together (`d/s -> ..` and
   * `t -> d/s/..`). On refusal every link made here is removed again.
   */
  async createSymlinks(): Promise<void> {
    const made: string[] = [];
    try {
      for (const l of this.links) {
        await symlink(l.target, this.abs(l.rel)).catch((err: unknown) => {
          throw clash(l.name, err);
        });
        made.push(l.rel);
      }
      for (const l of this.links) {
        const real = await realpath(this.abs(l.rel)).catch((err: NodeJS.ErrnoException) => {
          throw refused(l.name, `is a symlink to ${quote(l.target)}, which does not resolve (${err.code})`);
        });
        if (!isInside(this.root, real)) {
          throw refused(l.name, `is a symlink to ${quote(l.target)}, which leads outside the archive`);
        }
      }
    } catch (err) {
      await Promise.all(made.map((rel) => unlink(this.abs(rel)).catch(() => undefined)));
      throw err;
    }
  }

  private async directory(segments: string[], name: string): Promise<void> {
    const kind = this.seen.get(segments.join('/'));
    if (kind !== undefined && kind !== 'directory') {
      throw refused(name, `is a directory, but an earlier entry made it a ${kind}`);
    }
    await this.ensureDirectory(segments, name);
  }

  private async file(entry: EntryStream, segments: string[]): Promise<void> {
    const { name, size, mode } = entry.header;
    const rel = await this.claim(segments, name, 'file');
    this.countBytes(size, name); // declared size: refused before a byte of it is read
    const flags = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | (fsc.O_NOFOLLOW ?? 0);
    const handle = await open(this.abs(rel), flags, 0o600);
    try {
      for await (const chunk of archiveErrors(entry)) await handle.write(chunk as Uint8Array);
      await handle.chmod(fileMode(mode ?? 0)); // exact, whatever the umask
    } finally {
      await handle.close();
    }
    this.files++;
  }

  private async hardLink(segments: string[], name: string, linkname: string): Promise<void> {
    const why = pathProblem(linkname, this.limits);
    if (why) throw refused(name, `is a hard link whose target ${quote(linkname)} ${why}`);
    const target = pathSegments(linkname).join('/');
    if (this.seen.get(target) !== 'file') {
      throw refused(name, `is a hard link to ${quote(linkname)}, which is not an earlier file in the archive`);
    }
    const rel = await this.claim(segments, name, 'file');
    this.countBytes((await lstat(this.abs(target))).size, name);
    // A copy, never a real link: the target is our own regular file, and COPYFILE_EXCL refuses
    // to replace anything already at `rel`.
    await copyFile(this.abs(target), this.abs(rel), fsc.COPYFILE_EXCL);
    this.files++;
  }

  private async planSymlink(segments: string[], name: string, target: string): Promise<void> {
    const why = linkProblem(segments, target, this.limits);
    if (why) throw refused(name, `is a symlink whose target ${quote(target)} ${why}`);
    const rel = await this.claim(segments, name, 'symlink');
    this.links.push({ rel, name, target });
  }

  /** Records `segments` as a new `kind` entry after making its parent directories. */
  private async claim(segments: string[], name: string, kind: Kind): Promise<string> {
    const rel = segments.join('/');
    const earlier = this.seen.get(rel);
    if (earlier !== undefined) throw refused(name, `repeats a path an earlier entry made a ${earlier}`);
    await this.ensureDirectory(segments.slice(0, -1), name);
    this.seen.set(rel, kind);
    return rel;
  }

  /** Makes each missing directory of `segments`; refuses to go through a file or planned link. */
  private async ensureDirectory(segments: string[], name: string): Promise<void> {
    for (let i = 1; i <= segments.length; i++) {
      const rel = segments.slice(0, i).join('/');
      const kind = this.seen.get(rel);
      if (kind === 'directory') continue;
      if (kind !== undefined) throw refused(name, `goes through ${quote(rel)}, which an earlier entry made a ${kind}`);
      await mkdir(this.abs(rel)); // not recursive: fails if anything is already there
      await chmod(this.abs(rel), 0o755);
      this.seen.set(rel, 'directory');
    }
  }

  private countBytes(n: number, name: string): void {
    this.bytes += n;
    if (this.bytes > this.limits.maxBytes) {
      throw tooLarge(name, `passes the limit of ${this.limits.maxBytes} bytes of files`);
    }
  }

  private abs(rel: string): string {
    const p = path.join(this.root, ...rel.split('/'));
    // Names were checked already; this guards the checks.
    if (!isInside(this.root, p)) throw new KubefnError('INTERNAL', `${quote(rel)} resolved outside the extraction directory`);
    return p;
  }
}

/**
 * Streams `source` into the tar parser, gunzipping it if it starts with the gzip magic bytes,
 * and stops at the first limit passed.
 */
async function feed(source: Readable, parser: Extract, limits: ExtractLimits, signal: AbortSignal): Promise<void> {
  const chunks = source[Symbol.asyncIterator]() as AsyncIterator<Uint8Array | string>;
  const head = await readHead(chunks);
  const gzip = head[0] === 0x1f && head[1] === 0x8b;
  const maxTarBytes = limits.maxBytes + limits.maxEntries * tarBytesPerEntry;
  let compressed = 0;
  let expanded = 0;
  await pipeline(
    async function* uploaded() {
      for (let chunk: Buffer | undefined = head; chunk; chunk = await nextBuffer(chunks)) {
        compressed += chunk.length;
        if (compressed > limits.maxCompressedBytes) {
          throw tooLarge(undefined, `is larger than ${limits.maxCompressedBytes} bytes as uploaded`);
        }
        yield chunk;
      }
    },
    gzip ? createGunzip() : new PassThrough(),
    async function* tarBytes(tar: AsyncIterable<Buffer>) {
      for await (const chunk of tar) {
        expanded += chunk.length;
        if (expanded > maxTarBytes) throw tooLarge(undefined, `expands to more than ${maxTarBytes} bytes`);
        if (gzip && expanded > ratioFloorBytes && expanded > compressed * limits.maxRatio) {
          throw tooLarge(undefined, `expands more than ${limits.maxRatio} times when gunzipped (a gzip bomb?)`);
        }
        yield chunk;
      }
    },
    async function toParser(tar: AsyncIterable<Buffer>) {
      for await (const chunk of tar) if (!parser.write(chunk)) await once(parser, 'drain', { signal });
      parser.end(null); // streamx's typings want an argument; null adds no data
    },
    { signal },
  );
}

/** The first chunks of the input, at least two bytes: enough to tell gzip from tar. */
async function readHead(chunks: AsyncIterator<Uint8Array | string>): Promise<Buffer> {
  const parts: Buffer[] = [];
  let length = 0;
  for (let chunk = await nextBuffer(chunks); chunk; chunk = length < 2 ? await nextBuffer(chunks) : undefined) {
    parts.push(chunk);
    length += chunk.length;
  }
  if (length === 0) throw new KubefnError('BAD_REQUEST', 'not a valid tar or tar.gz archive: the upload is empty');
  return Buffer.concat(parts);
}

async function nextBuffer(chunks: AsyncIterator<Uint8Array | string>): Promise<Buffer | undefined> {
  const r = await chunks.next();
  if (r.done) return undefined;
  const v = r.value;
  return typeof v === 'string' ? Buffer.from(v) : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

/** Passes `items` through, turning parse and gunzip errors into BAD_REQUEST. */
async function* archiveErrors<T>(items: AsyncIterable<T>): AsyncGenerator<T> {
  try {
    yield* items;
  } catch (err) {
    throw asArchiveError(err);
  }
}

function asArchiveError(err: unknown): Error {
  if (isKubefnError(err)) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new KubefnError('BAD_REQUEST', `not a valid tar or tar.gz archive: ${message}`, { cause: err });
}

/** An fs error caused by the archive's own shape (a path already taken) is the uploader's fault. */
function clash(name: string, err: unknown): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  if (isKubefnError(err) || !['EEXIST', 'ENOTDIR', 'EISDIR', 'ELOOP'].includes(code ?? '')) return err;
  return new KubefnError('BAD_REQUEST', `archive entry ${quote(name)} clashes with an earlier entry (${code})`, { cause: err });
}

async function emptyDirectory(dest: string): Promise<string> {
  const root = await realpath(dest);
  if (!(await stat(root)).isDirectory() || (await readdir(root)).length > 0) {
    throw new KubefnError('INTERNAL', `extractSource needs an existing empty directory, not ${dest}`);
  }
  return root;
}

function refused(name: string, why: string): KubefnError {
  return new KubefnError('BAD_REQUEST', `archive entry ${quote(name)} ${why}`);
}

function tooLarge(name: string | undefined, why: string): KubefnError {
  const subject = name === undefined ? 'the archive' : `archive entry ${quote(name)}`;
  return new KubefnError('BODY_TOO_LARGE', `${subject} ${why}`);
}
