// Function source tarballs: packs a function directory for upload (the CLI), and extracts an
// untrusted upload into a build's scratch directory (the build service) without ever writing
// outside it.

import { once } from 'node:events';
import { constants as fsc } from 'node:fs';
import { chmod, copyFile, lstat, mkdir, open, readdir, readFile, realpath, stat, symlink, unlink } from 'node:fs/promises';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { extract as tarExtract, type Extract } from 'tar-stream';
import { KubefnError, isKubefnError } from '@kubefn/platform';
import { reproducibleGzip } from './gzip.js';
import { writeTar, type TarEntry } from './oci-layer.js';

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
  maxPathLength: 1024,
  maxDepth: 64,
});

export interface PackOptions {
  /** Most bytes of file content; default 100 MiB. */
  maxBytes?: number;
  /** Most files and directories; default 20 000. */
  maxEntries?: number;
}

export interface PackedSource {
  /** The tar.gz to upload. */
  archive: Buffer;
  files: number;
  /** Bytes of file content, before compression. */
  bytes: number;
}

/** Small archives of text compress very well; only past this many bytes is the ratio a bomb sign. */
const ratioFloorBytes = 1 * MiB;
/**
 * Tar bytes allowed per entry on top of file content when bounding the uncompressed stream: a
 * 512-byte header, a pax record for a long name or link, and block padding. Generous on purpose;
 * it only has to stop a stream of zero blocks, which the tar parser would read forever.
 */
const tarBytesPerEntry = 4096;
/** Never packed: version control, kubefn's own state, tool caches. Same syntax as .kubefnignore. */
const alwaysIgnored = ['.git', '.kubefn', '/node_modules/.cache'];
const ignoreHint = 'list build output, data and anything else the function does not need in .kubefnignore';

/**
 * A reproducible tar.gz of `dir` for upload: files and directories in byte order, fixed times and
 * owners, modes 0o755 (executable) or 0o644. A symlink is stored as the file it points to, and
 * only if that file is inside `dir`. `.kubefnignore` in `dir` lists paths to leave out, one per
 * line: `#` comments, `name` matches at any depth, a pattern with a `/` is anchored at `dir`, a
 * trailing `/` matches directories only, `*` matches within one path segment; no `!` or `**`.
 */
export async function packSource(dir: string, options: PackOptions = {}): Promise<PackedSource> {
  const maxBytes = options.maxBytes ?? 100 * MiB;
  const maxEntries = options.maxEntries ?? 20_000;
  const root = await realpath(dir);
  const ignored = ignoreMatcher([...alwaysIgnored, ...(await readIgnoreFile(root))]);
  const tooLarge = (what: string) =>
    new KubefnError('BODY_TOO_LARGE', `${dir} has more than ${what}`, { hint: ignoreHint });
  const entries: TarEntry[] = [];
  let files = 0;
  let bytes = 0;

  const walk = async (rel: string): Promise<void> => {
    for (const d of await readdir(path.join(root, rel), { withFileTypes: true })) {
      const child = rel === '' ? d.name : `${rel}/${d.name}`;
      if (ignored(child, d.isDirectory())) continue;
      if (!d.isDirectory() && !d.isFile() && !d.isSymbolicLink()) continue; // sockets, FIFOs: not source
      const why = pathProblem(child, defaultExtractLimits);
      if (why) throw new KubefnError('BAD_REQUEST', `cannot pack ${quote(child)}: it ${why}`, { hint: ignoreHint });
      if (entries.length >= maxEntries) throw tooLarge(`${maxEntries} files and directories`);
      if (d.isDirectory()) {
        entries.push({ name: `${child}/`, mode: 0o755 });
        await walk(child);
        continue;
      }
      const file = d.isSymbolicLink() ? await followLink(root, child) : path.join(root, child);
      const st = await stat(file);
      if (bytes + st.size > maxBytes) throw tooLarge(`${maxBytes} bytes of files`);
      bytes += st.size;
      files++;
      entries.push({ name: child, mode: fileMode(st.mode), content: await readFile(file) });
    }
  };
  await walk('');

  // Byte-wise order, directories as "<dir>/" so each comes right before its contents (as buildLayer).
  entries.sort((x, y) => Buffer.compare(Buffer.from(x.name), Buffer.from(y.name)));
  const archive = await reproducibleGzip(await writeTar(entries));
  return { archive, files, bytes };
}

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

/** Why `p`, an entry name or link target, is not a plain relative "/" path, or undefined if it is. */
function syntaxProblem(p: string, maxPathLength: number): string | undefined {
  if (p === '') return 'is empty';
  if (p.includes('\0')) return 'contains a NUL byte';
  if (Buffer.byteLength(p) > maxPathLength) return `is longer than ${maxPathLength} bytes`;
  if (p.startsWith('/')) return 'is an absolute path';
  if (p.includes('\\') || /^[A-Za-z]:/.test(p)) return 'uses Windows path syntax (a backslash or drive letter)';
  return undefined;
}

/** Why `name` is not a safe path inside the archive, or undefined if it is. */
function pathProblem(name: string, limits: Pick<ExtractLimits, 'maxPathLength' | 'maxDepth'>): string | undefined {
  const why = syntaxProblem(name, limits.maxPathLength);
  if (why) return why;
  const segments = pathSegments(name);
  if (segments.includes('..')) return 'has a ".." component';
  if (segments.length > limits.maxDepth) return `is nested more than ${limits.maxDepth} deep`;
  return undefined;
}

/** "./a//b/" -> ["a", "b"]; safe only for names pathProblem accepted. */
function pathSegments(name: string): string[] {
  return name.split('/').filter((s) => s !== '' && s !== '.');
}

/** Why a symlink at `segments` to `target` leaves the archive, judged by its text alone. */
function linkProblem(segments: string[], target: string, limits: ExtractLimits): string | undefined {
  const why = syntaxProblem(target, limits.maxPathLength);
  if (why) return why;
  const resolved = path.posix.normalize(path.posix.join(...segments.slice(0, -1), target));
  return resolved === '..' || resolved.startsWith('../') ? 'leads outside the archive' : undefined;
}

async function emptyDirectory(dest: string): Promise<string> {
  const root = await realpath(dest);
  if (!(await stat(root)).isDirectory() || (await readdir(root)).length > 0) {
    throw new KubefnError('INTERNAL', `extractSource needs an existing empty directory, not ${dest}`);
  }
  return root;
}

/** Follows a symlink inside the packed directory to the file it names, if that stays inside. */
async function followLink(root: string, rel: string): Promise<string> {
  const hint = 'replace the link with the file itself, or list it in .kubefnignore';
  const real = await realpath(path.join(root, rel)).catch(() => {
    throw new KubefnError('BAD_REQUEST', `cannot pack ${quote(rel)}: it is a broken symlink`, { hint });
  });
  if (!isInside(root, real)) {
    throw new KubefnError('BAD_REQUEST', `cannot pack ${quote(rel)}: it is a symlink to ${real}, outside ${root}`, { hint });
  }
  if (!(await stat(real)).isFile()) {
    throw new KubefnError('BAD_REQUEST', `cannot pack ${quote(rel)}: only symlinks to files are packed`, { hint });
  }
  return real;
}

async function readIgnoreFile(root: string): Promise<string[]> {
  try {
    return (await readFile(path.join(root, '.kubefnignore'), 'utf8')).split(/\r?\n/);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/** Compiles ignore lines (syntax in packSource's comment) into a test of a relative path. */
function ignoreMatcher(lines: string[]): (rel: string, isDirectory: boolean) => boolean {
  const rules = lines
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((line) => {
      if (line.startsWith('!')) {
        throw new KubefnError('INVALID_SPEC', `.kubefnignore: "!" patterns are not supported (${line})`);
      }
      const body = line.replace(/^\/+|\/+$/g, '');
      const glob = body.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('[^/]*');
      return {
        re: new RegExp(`^${glob}$`),
        anchored: line.startsWith('/') || body.includes('/'),
        directoryOnly: line.endsWith('/'),
      };
    });
  return (rel, isDirectory) =>
    rules.some((r) => (isDirectory || !r.directoryOnly) && r.re.test(r.anchored ? rel : path.posix.basename(rel)));
}

function isInside(root: string, p: string): boolean {
  return p === root || p.startsWith(root + path.sep);
}

/** 0o755 if any execute bit is set, else 0o644: no setuid, nothing group or world writable. */
function fileMode(mode: number): number {
  return mode & 0o111 ? 0o755 : 0o644;
}

function quote(name: string): string {
  return JSON.stringify(name.length > 200 ? `${name.slice(0, 200)}...` : name);
}

function refused(name: string, why: string): KubefnError {
  return new KubefnError('BAD_REQUEST', `archive entry ${quote(name)} ${why}`);
}

function tooLarge(name: string | undefined, why: string): KubefnError {
  const subject = name === undefined ? 'the archive' : `archive entry ${quote(name)}`;
  return new KubefnError('BODY_TOO_LARGE', `${subject} ${why}`);
}
