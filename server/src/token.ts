// The management token: at least 16 bytes wherever it comes from, and made (24 random bytes,
// mode 0600) in the state directory when `fn up` is given none.

import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { KubefnError } from '@kubefn/platform';

/** Shorter tokens are refused: a token guessed gives the whole management API. */
export const minTokenBytes = 16;

/** Returns `token` when it is long enough; otherwise throws, naming where it came from. */
export function strongToken(token: string, from: string): string {
  const bytes = Buffer.byteLength(token);
  if (bytes < minTokenBytes) {
    throw new KubefnError('BAD_REQUEST', `the token from ${from} has ${bytes} byte${bytes === 1 ? '' : 's'}; at least ${minTokenBytes} are needed`, {
      hint: 'make one with `openssl rand -base64 24`, or leave it out and `fn up` makes one',
    });
  }
  return token;
}

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
