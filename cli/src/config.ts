// Where the gateway is and which token to send: flags, then environment, then <home>/token, then defaults.

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { usageError } from './errors.js';

export const defaultGateway = 'http://127.0.0.1:8080';

export const envVars = {
  gateway: 'KUBEFN_GATEWAY',
  token: 'KUBEFN_TOKEN',
  home: 'KUBEFN_HOME',
} as const;

export interface ConfigInput {
  /** `--gateway`, if given. */
  gateway?: string | undefined;
  /** `--token`, if given. */
  token?: string | undefined;
  env: Record<string, string | undefined>;
  /** The user's home directory (os.homedir()). */
  homedir: string;
  /** Reads the token file; injectable for tests. Returns undefined when there is none. */
  readTokenFile?: (file: string) => string | undefined;
}

export type TokenSource = 'flag' | 'env' | 'file' | 'none';

export interface Config {
  /** Gateway base URL without a trailing slash, e.g. "http://127.0.0.1:8080". */
  gateway: string;
  token: string | undefined;
  tokenSource: TokenSource;
  /** kubefn's state directory: KUBEFN_HOME or ~/.kubefn. */
  home: string;
  /** Where `fn up` writes the token and where it is read from. */
  tokenFile: string;
}

/** `KUBEFN_HOME`, else `~/.kubefn`. */
export function resolveHome(env: Record<string, string | undefined>, homedir: string): string {
  const fromEnv = env[envVars.home];
  return fromEnv ? path.resolve(fromEnv) : path.join(homedir, '.kubefn');
}

export function resolveConfig(input: ConfigInput): Config {
  const home = resolveHome(input.env, input.homedir);
  const tokenFile = path.join(home, 'token');
  const gateway = normalizeGateway(input.gateway ?? nonEmpty(input.env[envVars.gateway]) ?? defaultGateway);

  let token: string | undefined;
  let tokenSource: TokenSource = 'none';
  if (input.token !== undefined) {
    token = input.token;
    tokenSource = 'flag';
  } else if (nonEmpty(input.env[envVars.token])) {
    token = input.env[envVars.token];
    tokenSource = 'env';
  } else {
    const fromFile = nonEmpty((input.readTokenFile ?? readTokenFile)(tokenFile)?.trim());
    if (fromFile) {
      token = fromFile;
      tokenSource = 'file';
    }
  }
  return { gateway, token, tokenSource, home, tokenFile };
}

/** Accepts "http://host:port[/prefix]" (or a bare "host:port", taken as http) and drops trailing slashes. */
export function normalizeGateway(raw: string): string {
  const text = /^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `http://${raw}`;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw usageError(`invalid gateway URL ${JSON.stringify(raw)}`, `pass --gateway (or ${envVars.gateway}) like ${defaultGateway}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw usageError(`gateway URL must be http or https, got ${JSON.stringify(raw)}`, `pass --gateway like ${defaultGateway}`);
  }
  if (url.search || url.hash) {
    throw usageError(`gateway URL must not have a query or fragment: ${JSON.stringify(raw)}`, `pass --gateway like ${defaultGateway}`);
  }
  return url.href.replace(/\/+$/, '');
}

function readTokenFile(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}
