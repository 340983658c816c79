// Function apps for the process driver: a bundle and the files shipped next to it as one tar,
// stored by sha256 digest, and unpacked once per digest into the directory its replicas run in.

import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { extract as tarExtract, type Header } from 'tar-stream';
import { BundleStore, isBundleDigest } from './bundle-store.js';
import { KubefnError } from './errors.js';

const imageRefPrefix = 'app:';
/** Bundle file names an app may start from, in the order they are looked for. */
export const appEntries = ['fn.cjs', 'fn.mjs'] as const;
/** Most entries (files and directories) one app archive may hold. */
export const maxAppEntries = 20_000;
const maxNameBytes = 4096;
const tempPrefix = '.tmp-';

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

export class AppStore {
  /** The archives, `<dir>/archives/<hex>.tar`, uploaded and checked like bundles. */
  readonly archives: BundleStore;
  /** Where each digest is unpacked, `<dir>/run/<hex>/`. */
  readonly runDir: string;
  readonly #unpacking = new Map<string, Promise<UnpackedApp>>();

  constructor(dir: string) {
    this.archives = new BundleStore(path.join(dir, 'archives'), '.tar');
    this.runDir = path.join(path.resolve(dir), 'run');
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

  has(digest: string): Promise<boolean> {
    return this.archives.has(digest);
  }

  put(...args: Parameters<BundleStore['put']>): Promise<void> {
    return this.archives.put(...args);
  }

  /** The app's directory, unpacked from its archive on first use (once, even when asked concurrently). */
  unpack(digest: string): Promise<UnpackedApp> {
    let unpacking = this.#unpacking.get(digest);
    if (!unpacking) {
      unpacking = this.#unpack(digest).finally(() => this.#unpacking.delete(digest));
      this.#unpacking.set(digest, unpacking);
    }
    return unpacking;
  }

  async #unpack(digest: string): Promise<UnpackedApp> {
    const archive = this.archives.path(digest);
    const dir = path.join(this.runDir, path.basename(archive, '.tar'));
    if (!(await stat(dir).catch(() => undefined))?.isDirectory()) {
      // Into a temp directory first, renamed into place whole: a reader never sees half an app.
      const temp = path.join(this.runDir, `${tempPrefix}${randomBytes(8).toString('hex')}`);
      try {
        await mkdir(temp, { mode: 0o755 });
        await extractApp(createReadStream(archive), temp);
        await rename(temp, dir).catch(async (err: NodeJS.ErrnoException) => {
          // Another process unpacked the same digest first: same bytes, keep theirs.
          if (err.code !== 'ENOTEMPTY' && err.code !== 'EEXIST') throw err;
        });
      } finally {
        await rm(temp, { recursive: true, force: true });
      }
    }
    for (const entry of appEntries) {
      if ((await stat(path.join(dir, entry)).catch(() => undefined))?.isFile()) return { dir, entry: path.join(dir, entry) };
    }
    throw new KubefnError('BAD_REQUEST', `app ${digest} has no ${appEntries.join(' or ')} at its root`, {
      hint: 'deploy with `fn deploy`, which packs the bundle and its files',
    });
  }
}

/**
 * Extracts an app archive into `dest` (an existing empty directory): only regular files and
 * directories, relative names without `.`, `..`, empty segments, backslashes or NUL, each path
 * once, at most `maxAppEntries`. Links and devices are refused, so nothing is ever written
 * outside `dest`. The archive's size is already bounded by the store's upload limit.
 */
export async function extractApp(input: NodeJS.ReadableStream, dest: string): Promise<void> {
  const parser = tarExtract();
  let entries = 0;
  parser.on('entry', (header: Header, body, next) => {
    const fail = (why: string) => {
      body.resume();
      parser.destroy(new KubefnError('BAD_REQUEST', `app archive entry ${JSON.stringify(header.name)}: ${why}`, { hint: 'pack apps with `fn deploy`' }));
    };
    if (++entries > maxAppEntries) return fail(`more than ${maxAppEntries} entries`);
    const name = header.name.replace(/\/$/, '');
    const parts = name.split('/');
    if (Buffer.byteLength(name) > maxNameBytes || parts.some((p: string) => p === '' || p === '.' || p === '..') || /[\\\0]/.test(name)) {
      return fail('not a plain relative path');
    }
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
      await pipeline(body, createWriteStream(target, { flags: 'wx', mode })).catch((err: NodeJS.ErrnoException) => {
        throw err.code === 'EEXIST' ? new KubefnError('BAD_REQUEST', `app archive has ${JSON.stringify(name)} twice`) : err;
      });
    })().then(() => next(), (err: Error) => parser.destroy(err));
  });
  await pipeline(input, parser);
}
