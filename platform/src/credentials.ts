// Bearer tokens between kubefn's users and its components, and among the components. A cluster
// keeps each kind in a Secret mounted as files (`token`, and `previous` during a rotation) and
// re-reads them while running, so a rotation needs no restart: put the new token in `token` and
// the old one in `previous`, wait for the pods to see it (the kubelet updates a Secret volume
// within about a minute), move every client to the new one, then drop `previous`.

import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { KubefnError } from './errors.js';

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

export interface Credential {
  /** The token to present now. */
  current(): string;
  /** Whether `presented` is accepted now: the current token, or the previous one during a rotation. */
  accepts(presented: string): boolean;
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/** Compares digests, so the time taken says nothing about the lengths or the first difference. */
function sameToken(a: string, b: string): boolean {
  return timingSafeEqual(digest(a), digest(b));
}

/** A token that never changes (KUBEFN_TOKEN, `fn up`'s token file). */
export function staticCredential(token: string): Credential {
  return { current: () => token, accepts: (presented) => sameToken(presented, token) };
}

/** The token a client presents: `credential` now. */
export function presentedToken(credential: string | Credential): string {
  return typeof credential === 'string' ? credential : credential.current();
}

/** Whether `presented` is accepted by any of `credentials`. */
export function acceptedBy(credentials: readonly (string | Credential)[], presented: string): boolean {
  // Every one is compared, so the time taken does not say which matched.
  let ok = false;
  for (const c of credentials) ok = (typeof c === 'string' ? sameToken(presented, c) : c.accepts(presented)) || ok;
  return ok;
}

export interface CredentialFilesOptions {
  /** What it is, for messages: "the user token". */
  what: string;
  /** How often the files are read again, ms (default 2000). */
  pollMs?: number;
  onChange?: () => void;
  onWarning?: (message: string, err?: unknown) => void;
}

/**
 * `<dir>/token`, and `<dir>/previous` when there, read at open (a missing or weak token fails
 * it) and again every pollMs. A change is taken when the new token is strong; otherwise the last
 * good one stays and a warning says why.
 */
export class CredentialFiles implements Credential {
  #token: string;
  #previous: string | undefined;
  readonly #timer: NodeJS.Timeout;
  #warned = '';

  private constructor(
    readonly dir: string,
    loaded: { token: string; previous: string | undefined },
    readonly options: CredentialFilesOptions,
  ) {
    this.#token = loaded.token;
    this.#previous = loaded.previous;
    this.#timer = setInterval(() => void this.reload(), options.pollMs ?? 2000);
    this.#timer.unref();
  }

  static async open(dir: string, options: CredentialFilesOptions): Promise<CredentialFiles> {
    return new CredentialFiles(dir, await readTokens(dir), options);
  }

  current(): string {
    return this.#token;
  }

  accepts(presented: string): boolean {
    const previous = this.#previous !== undefined && sameToken(presented, this.#previous);
    return sameToken(presented, this.#token) || previous;
  }

  /** Reads the files again now; resolves whether anything changed. */
  async reload(): Promise<boolean> {
    let loaded: { token: string; previous: string | undefined };
    try {
      loaded = await readTokens(this.dir);
    } catch (err) {
      const message = `${this.options.what} in ${this.dir} could not be read again; keeping the last one`;
      if (this.#warned !== message) this.options.onWarning?.(message, err);
      this.#warned = message;
      return false;
    }
    this.#warned = '';
    if (loaded.token === this.#token && loaded.previous === this.#previous) return false;
    this.#token = loaded.token;
    this.#previous = loaded.previous;
    this.options.onChange?.();
    return true;
  }

  close(): void {
    clearInterval(this.#timer);
  }
}

async function readTokens(dir: string): Promise<{ token: string; previous: string | undefined }> {
  const file = path.join(dir, 'token');
  const token = strongToken((await readFile(file, 'utf8')).trim(), file);
  const previousFile = path.join(dir, 'previous');
  const previous = await readFile(previousFile, 'utf8').then(
    (s) => s.trim() || undefined,
    (err: { code?: string }) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    },
  );
  return { token, previous: previous === undefined ? undefined : strongToken(previous, previousFile) };
}
