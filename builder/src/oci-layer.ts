// Writes one OCI image layer reproducibly: the same files give the same bytes and digest on
// every run and machine (sorted entries, fixed times, owners and modes, fixed gzip header).

import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { pack as tarPack } from 'tar-stream';
import { KubefnError } from '@kubefn/platform';

export interface LayerFile {
  /** Path inside the image, relative to /, with "/" separators: "app/fn.mjs". */
  path: string;
  content: Uint8Array;
  /** File mode; default 0o644. */
  mode?: number;
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
/** Byte 9 of a gzip header names the OS that wrote it; fix it so every machine writes the same. */
const gzipOsUnix = 3;

export function sha256(data: Uint8Array): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

export async function buildLayer(files: readonly LayerFile[]): Promise<Layer> {
  const entries = new Map<string, LayerFile>();
  for (const f of files) {
    const p = checkPath(f.path);
    if (entries.has(p)) throw new KubefnError('BUILD_FAILED', `layer has "${p}" twice`);
    entries.set(p, { ...f, path: p });
  }
  const dirs = new Set<string>();
  for (const p of entries.keys()) {
    const parts = p.split('/');
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
  }
  for (const d of dirs) {
    if (entries.has(d)) throw new KubefnError('BUILD_FAILED', `layer has "${d}" as both a file and a directory`);
  }
  // Byte-wise order, directories as "<dir>/" so each comes right before its contents.
  const ordered = [
    ...[...dirs].map((d) => ({ key: `${d}/`, dir: d })),
    ...[...entries.keys()].map((f) => ({ key: f, file: entries.get(f)! })),
  ].sort((a, b) => Buffer.compare(Buffer.from(a.key), Buffer.from(b.key)));

  const pack = tarPack();
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    pack.on('data', (c: unknown) => chunks.push(c as Buffer));
    pack.on('end', resolve);
    pack.on('error', reject);
  });
  const header = { mtime: fixedMtime, uid: 0, gid: 0, uname: '', gname: '' };
  for (const e of ordered) {
    if ('dir' in e && e.dir !== undefined) {
      pack.entry({ ...header, name: `${e.dir}/`, type: 'directory', mode: 0o755 });
    } else if ('file' in e && e.file) {
      const content = Buffer.from(e.file.content);
      pack.entry({ ...header, name: e.file.path, type: 'file', mode: e.file.mode ?? 0o644, size: content.length }, content);
    }
  }
  pack.finalize();
  await done;
  const tar = Buffer.concat(chunks);
  const blob = gzipSync(tar, { level: 9 });
  blob[9] = gzipOsUnix;
  return { blob, digest: sha256(blob), diffId: sha256(tar), tarBytes: tar.length };
}

function checkPath(raw: string): string {
  const p = raw.replace(/^\/+/, '');
  const parts = p.split('/');
  if (p === '' || parts.some((s) => s === '' || s === '.' || s === '..') || p.includes('\0')) {
    throw new KubefnError('BUILD_FAILED', `invalid path in layer: ${JSON.stringify(raw)}`);
  }
  return p;
}
