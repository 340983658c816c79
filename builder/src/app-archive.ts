// A function's app as one deterministic tar: the bundle and the files shipped next to it, the
// artifact the process driver stores by digest and unpacks, and the content of an image's /app.

import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Bundle } from './bundle.js';
import { reproducibleTar, sha256, type LayerFile } from './oci-layer.js';

export interface AppArchive {
  /** The uncompressed tar: the bundle at its root (fn.cjs or fn.mjs), each file at its path. */
  tar: Buffer;
  /** sha256 of `tar`: "sha256:<hex>", what an `app:` image reference names. */
  digest: string;
  /** The bundle's file name in the app root. */
  entry: string;
}

/** The bundle and its files with their bytes and modes, paths relative to the app root. */
export async function appFiles(bundle: Pick<Bundle, 'file' | 'files'>): Promise<LayerFile[]> {
  const out: LayerFile[] = [{ path: path.basename(bundle.file), content: await readFile(bundle.file) }];
  for (const f of bundle.files) {
    const info = await stat(f.source);
    out.push({ path: f.path, content: await readFile(f.source), mode: info.mode & 0o111 ? 0o755 : 0o644 });
  }
  return out;
}

/** Packs the bundle and its files; the same bundle and files always give the same digest. */
export async function packApp(bundle: Pick<Bundle, 'file' | 'files'>): Promise<AppArchive> {
  const tar = await reproducibleTar(await appFiles(bundle));
  return { tar, digest: sha256(tar), entry: path.basename(bundle.file) };
}
