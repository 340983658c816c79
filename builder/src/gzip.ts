// gzip for what builder ships (image layers, source archives): on zlib's thread pool, so a build
// in the embedded platform does not stall its HTTP gateway, and the same bytes on every machine.

import { promisify } from 'node:util';
import { gzip } from 'node:zlib';

const gzipAsync = promisify(gzip);

/** Byte 9 of a gzip header names the OS that wrote it; fixed so every machine writes the same. */
const gzipOsUnix = 3;

/**
 * `data` gzipped at level 9 with a fixed header (no name, no time, OS "Unix"). The async API
 * gives exactly the bytes gzipSync does, in slices between which the event loop runs.
 */
export async function reproducibleGzip(data: Uint8Array): Promise<Buffer> {
  const out = await gzipAsync(data, { level: 9 });
  out[9] = gzipOsUnix;
  return out;
}
