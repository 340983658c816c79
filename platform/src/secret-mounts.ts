// Secret values as files for replicas: a directory with one file per secret, what OpenFaaS
// functions read at /var/openfaas/secrets/<name>. The process driver points its replicas at a
// per-function directory; the podman driver mounts a per-replica one read-only.

import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { KubefnError } from './errors.js';
import type { SecretStore } from './secrets.js';

/** The store and where a driver given one writes the decrypted files: `secretFilesDir`, else `<stateDir>/secret-files`. */
export function secretFiles(options: { secrets?: SecretStore; stateDir?: string; secretFilesDir?: string }): { store: SecretStore; filesDir: string } | undefined {
  if (!options.secrets) return undefined;
  const filesDir = options.secretFilesDir ?? (options.stateDir === undefined ? undefined : path.join(options.stateDir, 'secret-files'));
  if (filesDir === undefined) throw new KubefnError('BAD_REQUEST', 'a driver given a secret store needs stateDir or secretFilesDir for the decrypted files');
  return { store: options.secrets, filesDir: path.resolve(filesDir) };
}

/**
 * Makes `dir` hold exactly `values`, one file per name. `root` (the parent of every such
 * directory) is made 0700, so nobody but this user reaches the decrypted files whatever the
 * modes below it; `mode` is the files' own mode (the directory gets the matching x bits).
 * Each file is written beside its target and renamed, so a replica reading it sees the old
 * value or the new one.
 */
export function writeSecretFiles(root: string, dir: string, values: ReadonlyMap<string, Buffer>, mode: 0o600 | 0o444): void {
  mkdirSync(root, { recursive: true, mode: 0o700 });
  chmodSync(root, 0o700);
  const dirMode = mode === 0o600 ? 0o700 : 0o755;
  mkdirSync(dir, { recursive: true, mode: dirMode });
  chmodSync(dir, dirMode);
  for (const [name, value] of values) {
    const temp = path.join(dir, `.tmp-${randomBytes(6).toString('hex')}`);
    writeFileSync(temp, value, { mode, flag: 'wx' });
    renameSync(temp, path.join(dir, name));
  }
  for (const entry of readdirSync(dir)) {
    if (!values.has(entry)) rmSync(path.join(dir, entry), { force: true, recursive: true });
  }
}

/** Removes a directory writeSecretFiles made; quiet when it is gone already. */
export function removeSecretFiles(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
