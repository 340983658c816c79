// The management token: at least 16 bytes wherever it comes from, and made (24 random bytes,
// mode 0600) in the state directory when `fn up` is given none.

import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { strongToken } from '@kubefn/platform';

export { minTokenBytes, strongToken } from '@kubefn/platform';

/** The token kept in `<home>/token`, made there when missing or empty. */
export async function loadOrCreateToken(home: string): Promise<string> {
  const file = path.join(home, 'token');
  try {
    const t = (await readFile(file, 'utf8')).trim();
    if (t) return strongToken(t, file);
  } catch (err) {
    if ((err as { code?: string }).code !== 'ENOENT') throw err;
  }
  const t = randomBytes(24).toString('base64url');
  await writeFile(file, t + '\n', { mode: 0o600 });
  return t;
}
