// Writes an image as an OCI image-layout tar archive (what `podman load` and skopeo read).

import type { AssembledImage } from './oci-image.js';
import { writeTar } from './oci-layer.js';

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
  return writeTar([
    { name: 'blobs/', mode: 0o755 },
    { name: 'blobs/sha256/', mode: 0o755 },
    ...files.map(([name, content]) => ({ name, mode: 0o644, content })),
  ]);
}
