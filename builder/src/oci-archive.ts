// Writes an image as an OCI image-layout tar archive (what `podman load` and skopeo read).

import { pack as tarPack } from 'tar-stream';
import type { AssembledImage } from './oci-image.js';

export interface ArchiveBlob {
  digest: string;
  content: Uint8Array;
}

/**
 * The archive holds `oci-layout`, `index.json` (one manifest, tagged `refName`) and every blob
 * under `blobs/sha256/`. `layers` must hold every layer the manifest names, base layers too.
 */
export async function writeOciArchive(image: AssembledImage, layers: ArchiveBlob[], refName: string): Promise<Buffer> {
  const blobs = new Map<string, Uint8Array>();
  blobs.set(image.configDescriptor.digest, image.config);
  blobs.set(image.manifestDescriptor.digest, image.manifest);
  for (const l of layers) blobs.set(l.digest, l.content);
  const named = (JSON.parse(image.manifest.toString()) as { layers: { digest: string }[] }).layers.map((l) => l.digest);
  const missing = named.filter((d) => !blobs.has(d));
  if (missing.length) throw new Error(`archive is missing layer blobs: ${missing.join(', ')}`);

  const index = {
    schemaVersion: 2,
    manifests: [{ ...image.manifestDescriptor, annotations: { 'org.opencontainers.image.ref.name': refName } }],
  };
  const files: [string, Uint8Array][] = [
    ['oci-layout', Buffer.from(JSON.stringify({ imageLayoutVersion: '1.0.0' }))],
    ['index.json', Buffer.from(JSON.stringify(index))],
    ...[...blobs.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([d, c]) => [`blobs/sha256/${d.slice('sha256:'.length)}`, c] as [string, Uint8Array]),
  ];
  const pack = tarPack();
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    pack.on('data', (c: unknown) => chunks.push(c as Buffer));
    pack.on('end', () => resolve());
    pack.on('error', reject);
  });
  const header = { mtime: new Date(0), uid: 0, gid: 0, uname: '', gname: '' };
  for (const dir of ['blobs/', 'blobs/sha256/']) pack.entry({ ...header, name: dir, type: 'directory', mode: 0o755 });
  for (const [name, content] of files) pack.entry({ ...header, name, type: 'file', mode: 0o644, size: content.length }, Buffer.from(content));
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}
