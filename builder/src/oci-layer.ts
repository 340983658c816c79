// Writes one OCI image layer reproducibly: the same files give the same bytes and digest on
// every run and machine (sorted entries, fixed times, owners and modes, fixed gzip header).

import { createHash } from 'node:crypto';
import { pack as tarPack } from 'tar-stream';
import { KubefnError } from '@kubefn/platform';
import { reproducibleGzip } from './gzip.js';

export interface LayerFile {
  /** Path inside the image, relative to /, with "/" separators: "app/fn.cjs". */
  path: string;
  /** File bytes; empty for a directory. */
  content: Uint8Array;
  /** File mode; default 0o644 (0o755 for a directory). */
  mode?: number;
  /** A directory entry (content ignored); parent directories are implied anyway, with mode 0o755. */
  directory?: boolean;
}

export interface Layer {
  /** The gzip-compressed tar: the blob pushed to a registry. */
  blob: Buffer;
  /** sha256 of `blob`: the layer's digest in the manifest. */
  digest: string;
  /** sha256 of the uncompressed tar: the diff_id in the image config. */
  diffId: string;
  /** Uncompressed tar size in bytes. */
  tarBytes: number;
}

export const layerMediaType = 'application/vnd.oci.image.layer.v1.tar+gzip';

/** Every entry gets this time: 1970-01-01, so rebuilding never changes a byte. */
const fixedMtime = new Date(0);

export function sha256(data: Uint8Array): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

export async function buildLayer(files: readonly LayerFile[]): Promise<Layer> {
  const tar = await reproducibleTar(files);
  const blob = await reproducibleGzip(tar);
  return { blob, digest: sha256(blob), diffId: sha256(tar), tarBytes: tar.length };
}

/** The uncompressed tar of `files`, parent directories implied: the same files always give the same bytes. */
export async function reproducibleTar(files: readonly LayerFile[]): Promise<Buffer> {
  const entries = new Map<string, LayerFile>();
  for (const f of files) {
    const p = checkPath(f.path);
    if (entries.has(p)) throw new KubefnError('BUILD_FAILED', `layer has "${p}" twice`);
    entries.set(p, { ...f, path: p });
  }
  const dirs = new Map<string, number>();
  for (const p of entries.keys()) {
    const parts = p.split('/');
    for (let i = 1; i < parts.length; i++) dirs.set(parts.slice(0, i).join('/'), 0o755);
  }
  for (const d of dirs.keys()) {
    if (entries.has(d) && !entries.get(d)!.directory) {
      throw new KubefnError('BUILD_FAILED', `layer has "${d}" as both a file and a directory`);
    }
  }
  for (const f of entries.values()) {
    if (f.directory) {
      dirs.set(f.path, f.mode ?? 0o755);
      entries.delete(f.path);
    }
  }
  // Byte-wise order, directories as "<dir>/" so each comes right before its contents.
  const ordered: TarEntry[] = [
    ...[...dirs].map(([d, mode]) => ({ name: `${d}/`, mode })),
    ...[...entries.values()].map((f) => ({ name: f.path, mode: f.mode ?? 0o644, content: f.content })),
  ].sort((x, y) => Buffer.compare(Buffer.from(x.name), Buffer.from(y.name)));
  return writeTar(ordered);
}

export interface TarEntry {
  /** A name ending in "/" is a directory. */
  name: string;
  mode: number;
  content?: Uint8Array;
}

/** A tar of `entries` in the order given, with the fixed time and owner of every kubefn tar. */
export async function writeTar(entries: readonly TarEntry[]): Promise<Buffer> {
  const pack = tarPack();
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    pack.on('data', (c: unknown) => chunks.push(c as Buffer));
    pack.on('end', () => resolve());
    pack.on('error', reject);
  });
  const header = { mtime: fixedMtime, uid: 0, gid: 0, uname: '', gname: '' };
  for (const e of entries) {
    if (e.name.endsWith('/')) pack.entry({ ...header, name: e.name, type: 'directory', mode: e.mode });
    else {
      const content = Buffer.from(e.content ?? new Uint8Array());
      pack.entry({ ...header, name: e.name, type: 'file', mode: e.mode, size: content.length }, content);
    }
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

function checkPath(raw: string): string {
  const p = raw.replace(/^\/+/, '');
  const parts = p.split('/');
  if (p === '' || parts.some((s) => s === '' || s === '.' || s === '..') || p.includes('\0')) {
    throw new KubefnError('BUILD_FAILED', `invalid path in layer: ${JSON.stringify(raw)}`);
  }
  return p;
}
