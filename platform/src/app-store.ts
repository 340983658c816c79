// Function apps for the process driver: a bundle and the files shipped next to it as one tar,
// stored by sha256 digest, and unpacked once per digest into the directory its replicas run in.
// Each unpacked directory has a manifest of its files' digests, checked whenever it is used.

import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { extract as tarExtract, type Header } from 'tar-stream';
import { BundleStore, defaultMaxRemovals, isBundleDigest, type CollectOptions } from './bundle-store.js';
import { KubefnError } from './errors.js';
import { VerifiedFiles } from './file-digest.js';

const imageRefPrefix = 'app:';
/** Bundle file names an app may start from, in the order they are looked for. */
export const appEntries = ['fn.cjs', 'fn.mjs'] as const;
/** Most entries (files and directories) one app archive may hold. */
export const maxAppEntries = 20_000;
const maxNameBytes = 4096;
const tempPrefix = '.tmp-';
/** Manifest beside each unpacked directory: `<runDir>/<hex>.files.json`. */
const manifestSuffix = '.files.json';
/** Largest manifest read back, in bytes (20000 entries of long names fit). */
const maxManifestBytes = 32 * 1024 * 1024;

/** The image reference a FunctionSpec carries for an app: `app:sha256:<64 hex>`. */
export function appImageRef(digest: string): string {
  if (!isBundleDigest(digest)) throw new KubefnError('BAD_REQUEST', `invalid app digest ${JSON.stringify(digest)}`);
  return imageRefPrefix + digest;
}

/** The digest in an `app:sha256:<hex>` image reference, or undefined for any other image. */
export function parseAppImageRef(image: string | undefined): string | undefined {
  if (!image?.startsWith(imageRefPrefix)) return undefined;
  const digest = image.slice(imageRefPrefix.length);
  return isBundleDigest(digest) ? digest : undefined;
}

/** An unpacked app: the directory a replica runs in and the bundle file it starts. */
export interface UnpackedApp {
  dir: string;
  entry: string;
}

/** A regular file of an unpacked app, as extracted: relative name, size in bytes, sha256 (hex). */
export interface AppFile {
  name: string;
  size: number;
  sha256: string;
}

export class AppStore {
  /** The archives, `<dir>/archives/<hex>.tar`, uploaded and checked like bundles. */
  readonly archives: BundleStore;
  /** Where each digest is unpacked, `<dir>/run/<hex>/`, with its manifest `<dir>/run/<hex>.files.json`. */
  readonly runDir: string;
  readonly #unpacking = new Map<string, Promise<UnpackedApp>>();
  readonly #files = new VerifiedFiles();
  #onWarning: (message: string) => void = () => {};

  constructor(dir: string) {
    this.archives = new BundleStore(path.join(dir, 'archives'), '.tar', 'app');
    this.runDir = path.join(path.resolve(dir), 'run');
  }

  /** Told about archives that failed their digest check and unpacked directories that changed; default: nowhere. */
  get onWarning(): (message: string) => void {
    return this.#onWarning;
  }
  set onWarning(warn: (message: string) => void) {
    this.#onWarning = warn;
    this.archives.onWarning = warn;
  }

  /** Bytes hashed to check archives and unpacked files, ever (monotonic). */
  get hashedBytes(): number {
    return this.archives.hashedBytes + this.#files.hashedBytes;
  }

  /** Creates the directories and clears what a crashed upload or unpack left behind. */
  static async open(dir: string): Promise<AppStore> {
    const store = new AppStore(dir);
    await BundleStore.open(store.archives.dir, '.tar');
    await mkdir(store.runDir, { recursive: true });
    for (const entry of await readdir(store.runDir)) {
      if (entry.startsWith(tempPrefix)) await rm(path.join(store.runDir, entry), { recursive: true, force: true });
    }
    return store;
  }

  /**
   * Whether the store holds this app with the right content (see BundleStore.has). An unpacked
   * directory of it that changed since it was unpacked is unpacked again from the archive.
   */
  async has(digest: string): Promise<boolean> {
    if (!(await this.archives.has(digest))) return false;
    if (await isDirectory(this.#dirOf(digest))) {
      await this.unpack(digest).catch((err: unknown) => this.#onWarning(`cannot check the unpacked app ${digest}: ${(err as Error).message}`));
    }
    return true;
  }

  /** Stores an archive (see BundleStore.put); an unpacked directory of it that changed is unpacked again. */
  async put(...args: Parameters<BundleStore['put']>): Promise<void> {
    await this.archives.put(...args);
    const [digest] = args;
    if (await isDirectory(this.#dirOf(digest))) await this.unpack(digest);
  }

  /**
   * The app's directory, unpacked from its archive on first use (once, even when asked
   * concurrently). Every call checks the archive against its digest (CORRUPT if it fails) and
   * the directory against the manifest written when it was unpacked: a directory whose files
   * changed or went missing is unpacked again. Both checks hash only files that were rewritten
   * since their last good check.
   */
  unpack(digest: string): Promise<UnpackedApp> {
    let unpacking = this.#unpacking.get(digest);
    if (!unpacking) {
      unpacking = this.#unpack(digest).finally(() => this.#unpacking.delete(digest));
      this.#unpacking.set(digest, unpacking);
    }
    return unpacking;
  }

  #dirOf(digest: string): string {
    return path.join(this.runDir, path.basename(this.archives.path(digest), '.tar'));
  }

  async #unpack(digest: string): Promise<UnpackedApp> {
    if (!(await this.archives.verify(digest))) {
      throw new KubefnError('BAD_REQUEST', `app ${digest} is not in the app store`, {
        hint: 'upload the app before deploying the spec that names it; `fn deploy` does both',
      });
    }
    const dir = this.#dirOf(digest);
    const manifest = `${dir}${manifestSuffix}`;
    const exists = await isDirectory(dir);
    const problem = exists ? await this.#checkDir(dir, manifest) : 'missing';
    if (problem) {
      if (exists) this.#onWarning(`the unpacked app ${digest} in ${dir} ${problem}; unpacking it again from its archive`);
      await this.#extractInto(digest, dir, manifest, exists);
    }
    for (const entry of appEntries) {
      if ((await stat(path.join(dir, entry)).catch(() => undefined))?.isFile()) return { dir, entry: path.join(dir, entry) };
    }
    throw new KubefnError('BAD_REQUEST', `app ${digest} has no ${appEntries.join(' or ')} at its root`, {
      hint: 'deploy with `fn deploy`, which packs the bundle and its files',
    });
  }

  /** Into a temp directory first, renamed into place whole: a reader never sees half an app. */
  async #extractInto(digest: string, dir: string, manifest: string, replace: boolean): Promise<void> {
    const temp = path.join(this.runDir, `${tempPrefix}${randomBytes(8).toString('hex')}`);
    const old = `${temp}-old`;
    try {
      await mkdir(temp, { mode: 0o755 });
      const files = await extractApp(createReadStream(this.archives.path(digest)), temp);
      // The manifest first: a crash before the directory is in place leaves a manifest that the
      // old directory (or none) fails, so the next use unpacks again.
      await writeFileAtomic(manifest, `${JSON.stringify({ version: 1, digest, files })}\n`, `${temp}.files.json`);
      if (replace) await rename(dir, old).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? undefined : Promise.reject(err)));
      this.#files.forgetUnder(dir);
      await rename(temp, dir).catch(async (err: NodeJS.ErrnoException) => {
        // Another process unpacked the same digest first: same bytes, keep theirs.
        if (err.code !== 'ENOTEMPTY' && err.code !== 'EEXIST') throw err;
      });
    } finally {
      await rm(temp, { recursive: true, force: true });
      await rm(old, { recursive: true, force: true });
    }
  }

  /** Why an unpacked directory no longer matches its manifest, or undefined when it does. */
  async #checkDir(dir: string, manifestFile: string): Promise<string | undefined> {
    const manifest = await readManifest(manifestFile);
    if (!manifest) return 'has no readable manifest of its files';
    for (const f of manifest) {
      const found = await this.#files.check(path.join(dir, ...f.name.split('/')), f.sha256, f.size, this.archives.clock());
      if (found.state === 'missing') return `lost ${f.name}`;
      if (found.state === 'mismatch') return `has a changed ${f.name} (${found.why})`;
    }
    return undefined;
  }

  /**
   * Removes the archives nothing references (see BundleStore.collect), and the unpacked
   * directories and manifests whose archive is gone and whose digest is not referenced.
   */
  async collect(referenced: ReadonlySet<string>, options: CollectOptions): Promise<string[]> {
    const removed = new Set(await this.archives.collect(referenced, options));
    let budget = (options.maxRemovals ?? defaultMaxRemovals) - removed.size;
    for (const entry of await readdir(this.runDir)) {
      if (budget <= 0) break;
      const isManifest = entry.endsWith(manifestSuffix);
      const digest = `sha256:${isManifest ? entry.slice(0, -manifestSuffix.length) : entry}`;
      if (!isBundleDigest(digest) || referenced.has(digest) || this.#unpacking.has(digest)) continue;
      // Kept with its archive (fresh, or referenced by a deploy on its way); gone with it otherwise.
      if (await stat(this.archives.path(digest)).catch(() => undefined)) continue;
      const target = path.join(this.runDir, entry);
      await rm(target, { recursive: true, force: true });
      this.#files.forgetUnder(target);
      if (isManifest) continue;
      budget--;
      removed.add(digest);
    }
    return [...removed];
  }
}

async function isDirectory(dir: string): Promise<boolean> {
  return (await stat(dir).catch(() => undefined))?.isDirectory() ?? false;
}

async function readManifest(file: string): Promise<AppFile[] | undefined> {
  const info = await stat(file).catch(() => undefined);
  if (!info?.isFile() || info.size > maxManifestBytes) return undefined;
  try {
    const parsed = JSON.parse(await readFile(file, 'utf8')) as { version?: unknown; files?: unknown };
    if (parsed.version !== 1 || !Array.isArray(parsed.files)) return undefined;
    const files = parsed.files as AppFile[];
    const ok = files.every((f) => typeof f?.name === 'string' && Number.isSafeInteger(f.size) && typeof f.sha256 === 'string' && safeName(f.name));
    return ok ? files : undefined;
  } catch {
    return undefined;
  }
}

async function writeFileAtomic(target: string, text: string, temp: string): Promise<void> {
  const file = await open(temp, 'wx', 0o644);
  try {
    await file.writeFile(text);
    await file.sync();
  } finally {
    await file.close();
  }
  await rename(temp, target);
}

/** A relative name without `.`, `..`, empty segments, backslashes or NUL, and not too long. */
function safeName(name: string): boolean {
  const parts = name.split('/');
  return Buffer.byteLength(name) <= maxNameBytes && !parts.some((p) => p === '' || p === '.' || p === '..') && !/[\\\0]/.test(name);
}

/**
 * Extracts an app archive into `dest` (an existing empty directory): only regular files and
 * directories, relative names without `.`, `..`, empty segments, backslashes or NUL, each path
 * once, at most `maxAppEntries`. Links and devices are refused, so nothing is ever written
 * outside `dest`. The archive's size is already bounded by the store's upload limit.
 */
export async function extractApp(input: NodeJS.ReadableStream, dest: string): Promise<AppFile[]> {
  const parser = tarExtract();
  const files: AppFile[] = [];
  let entries = 0;
  parser.on('entry', (header: Header, body, next) => {
    const fail = (why: string) => {
      body.resume();
      parser.destroy(new KubefnError('BAD_REQUEST', `app archive entry ${JSON.stringify(header.name)}: ${why}`, { hint: 'pack apps with `fn deploy`' }));
    };
    if (++entries > maxAppEntries) return fail(`more than ${maxAppEntries} entries`);
    const name = header.name.replace(/\/$/, '');
    const parts = name.split('/');
    if (!safeName(name)) return fail('not a plain relative path');
    const target = path.join(dest, ...parts);
    if (header.type === 'directory') {
      body.resume();
      mkdir(target, { recursive: true, mode: 0o755 }).then(() => next(), (err: Error) => parser.destroy(err));
      return;
    }
    if (header.type !== 'file') return fail(`a ${header.type ?? 'unknown'} entry; apps hold only files and directories`);
    const mode = (header.mode ?? 0o644) & 0o111 ? 0o755 : 0o644;
    (async () => {
      await mkdir(path.dirname(target), { recursive: true, mode: 0o755 });
      // 'wx': a second entry for one path is refused, never last-wins.
      const hash = createHash('sha256');
      let size = 0;
      const digesting = async function* (source: AsyncIterable<unknown>) {
        for await (const chunk of source as AsyncIterable<Buffer>) {
          hash.update(chunk);
          size += chunk.length;
          yield chunk;
        }
      };
      await pipeline(body, digesting, createWriteStream(target, { flags: 'wx', mode })).catch((err: NodeJS.ErrnoException) => {
        throw err.code === 'EEXIST' ? new KubefnError('BAD_REQUEST', `app archive has ${JSON.stringify(name)} twice`) : err;
      });
      files.push({ name, size, sha256: hash.digest('hex') });
    })().then(() => next(), (err: Error) => parser.destroy(err));
  });
  await pipeline(input, parser);
  return files;
}
