// Writes a file so that readers never see part of it: what builder's cache and build output use,
// since builds run concurrently in one process and in several.

import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, unlink } from 'node:fs/promises';
import path from 'node:path';

/**
 * Writes `content` to `file` so that a reader finds the previous file or the whole new one, never
 * part of it: into a temp file beside it, then renamed over `file`. Each write has its own temp
 * (pid and a random suffix, created exclusively), so concurrent writers of one file, in one
 * process or several, never write into each other's. A temp a crash leaves behind keeps its
 * `.tmp` name and is never read as the file.
 */
export async function writeAtomic(file: string, content: Uint8Array): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  const handle = await open(tmp, 'wx');
  try {
    try {
      await handle.writeFile(content);
      // On disk before the rename, so a power cut cannot leave a short file under the final name.
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, file);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
}
