// Secrets: named values a function reads as files (/var/openfaas/secrets/<name>, as OpenFaaS
// functions expect) and, where its spec asks, as environment variables. One small store
// interface; each driver keeps them where it keeps its functions.

import { KubefnError } from './errors.js';
import { validateName } from './names.js';
import type { FunctionSpec } from './spec.js';

/** Largest secret value in bytes: well inside a Kubernetes Secret's 1 MiB and the API's body limit. */
export const maxSecretBytes = 512 * 1024;

/** Where a function finds its secrets as files, one per name, in a container. */
export const secretsMountPath = '/var/openfaas/secrets';

/**
 * Set on process-driver replicas, which cannot mount at secretsMountPath: the directory that
 * holds the function's secret files instead.
 */
export const secretsDirEnv = 'KUBEFN_SECRETS_DIR';

export interface SecretStore {
  /** Names, sorted. */
  list(): Promise<string[]>;
  /** ALREADY_EXISTS if the name is taken. */
  create(name: string, value: Uint8Array): Promise<void>;
  /** NOT_FOUND if there is no such secret. */
  update(name: string, value: Uint8Array): Promise<void>;
  /** NOT_FOUND if there is no such secret. */
  remove(name: string): Promise<void>;
  /** The values of those of `names` that exist (missingSecrets() says which do not). */
  read(names: readonly string[]): Promise<Map<string, Buffer>>;
}

/** Checks a name and a value before they reach a store. */
export function checkSecret(name: string, value: Uint8Array): void {
  validateName(name, 'secret');
  if (value.byteLength > maxSecretBytes) {
    throw new KubefnError('BODY_TOO_LARGE', `secret "${name}" is ${value.byteLength} bytes, over the ${maxSecretBytes} byte limit`, {
      hint: 'keep large files in the function image (assets) or an object store, and the key to them in the secret',
    });
  }
}

/**
 * The values of the secrets a spec lists, read once where a driver prepares its replicas; a
 * function naming one that does not exist gets NOT_FOUND naming every missing one.
 */
export async function readSpecSecrets(store: SecretStore, spec: FunctionSpec): Promise<Map<string, Buffer>> {
  const names = spec.secrets ?? [];
  if (names.length === 0) return new Map();
  const values = await store.read(names);
  const missing = names.filter((n) => !values.has(n));
  if (missing.length) throw missingSecrets(spec.name, missing);
  return values;
}

/** The error for a function that names secrets that do not exist. */
export function missingSecrets(fn: string, missing: readonly string[]): KubefnError {
  const list = missing.map((m) => `"${m}"`).join(', ');
  return new KubefnError('BAD_REQUEST', `function "${fn}" needs secret${missing.length > 1 ? 's' : ''} ${list}, which do${missing.length > 1 ? '' : 'es'} not exist`, {
    hint: `create ${missing.length > 1 ? 'them' : 'it'} first: fn secret create ${missing[0]} <value>`,
  });
}

/** The environment variables a spec sets from its secrets' values (secretEnv). */
export function secretEnvValues(spec: FunctionSpec, values: ReadonlyMap<string, Buffer>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, name] of Object.entries(spec.secretEnv ?? {})) {
    const value = values.get(name);
    if (value !== undefined) env[key] = value.toString('utf8');
  }
  return env;
}
