// Registry credentials from the files `docker login` and `podman login` write. Credential
// helpers (credsStore, credHelpers) are not run: kubefn reads only what is stored inline.

import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { KubefnError } from '@kubefn/platform';
import { dockerHub } from './reference.js';

export interface Credentials {
  username: string;
  password: string;
}

/**
 * The username docker uses for an identity token (an OAuth2 refresh token): the password is
 * then the token, exchanged at the token server rather than sent as Basic credentials.
 */
export const identityTokenUsername = '<token>';

export interface CredentialOptions {
  /** Files to read, in order; default `defaultConfigPaths()`. */
  configPaths?: string[];
}

interface AuthEntry {
  auth?: string;
  username?: string;
  password?: string;
  identitytoken?: string;
}

interface ConfigFile {
  auths?: Record<string, AuthEntry>;
  credsStore?: string;
  credHelpers?: Record<string, string>;
}

/** docker's config, then podman's auth file: the places `docker login` / `podman login` write. */
export function defaultConfigPaths(env: NodeJS.ProcessEnv = process.env, home: string = homedir()): string[] {
  const paths = [join(env.DOCKER_CONFIG ?? join(home, '.docker'), 'config.json')];
  if (env.REGISTRY_AUTH_FILE) paths.push(env.REGISTRY_AUTH_FILE);
  else if (env.XDG_RUNTIME_DIR) paths.push(join(env.XDG_RUNTIME_DIR, 'containers', 'auth.json'));
  return paths;
}

/**
 * The stored credentials for `registry` ("ghcr.io", "localhost:5000"), or undefined when no file
 * has any: the caller then goes on anonymously, and `credentialHelperFor` says whether a helper
 * holds them instead.
 */
export async function loadCredentials(registry: string, options: CredentialOptions = {}): Promise<Credentials | undefined> {
  const want = normaliseHost(registry);
  for (const file of await readConfigs(options)) {
    for (const [key, entry] of Object.entries(file.config.auths ?? {})) {
      if (normaliseHost(key) !== want) continue;
      const creds = fromEntry(entry, file.path, key);
      if (creds) return creds;
    }
  }
  return undefined;
}

/** The credential helper configured for `registry` ("desktop", "pass", …), if any. */
export async function credentialHelperFor(registry: string, options: CredentialOptions = {}): Promise<string | undefined> {
  const want = normaliseHost(registry);
  for (const { config } of await readConfigs(options)) {
    const specific = Object.entries(config.credHelpers ?? {}).find(([key]) => normaliseHost(key) === want);
    if (specific) return specific[1];
    if (config.credsStore) return config.credsStore;
  }
  return undefined;
}

function fromEntry(entry: AuthEntry, path: string, key: string): Credentials | undefined {
  if (entry.identitytoken) return { username: identityTokenUsername, password: entry.identitytoken };
  if (entry.auth) {
    const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) {
      throw new KubefnError('BAD_REQUEST', `${path}: auths["${key}"].auth is not base64 of "user:password"`, {
        hint: `log in again with \`docker login ${key}\``,
      });
    }
    return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
  }
  if (entry.username && entry.password !== undefined) return { username: entry.username, password: entry.password };
  return undefined;
}

async function readConfigs(options: CredentialOptions): Promise<{ path: string; config: ConfigFile }[]> {
  const out: { path: string; config: ConfigFile }[] = [];
  for (const path of options.configPaths ?? defaultConfigPaths()) {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw err;
    }
    try {
      out.push({ path, config: JSON.parse(text) as ConfigFile });
    } catch (err) {
      throw new KubefnError('BAD_REQUEST', `${path} is not valid JSON`, { cause: err, hint: 'fix or remove the file, then log in again' });
    }
  }
  return out;
}

/** "https://index.docker.io/v1/" and "docker.io" name the same registry; so do "HOST" and "http://HOST/v2". */
function normaliseHost(keyOrHost: string): string {
  const host = keyOrHost.replace(/^[a-z]+:\/\//i, '').split('/')[0]!.toLowerCase();
  return host === 'index.docker.io' || host === 'registry-1.docker.io' ? dockerHub : host;
}
