// A real registry for tests: Debian's `docker-registry` (github.com/docker/distribution 2.8) in
// a temp dir, open, behind htpasswd Basic auth, or behind a token server run here in-process.

import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, sign, X509Certificate } from 'node:crypto';
import { access, constants, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { waitFor } from '@kubefn/platform/testing';

export interface RegistryServerOptions {
  /** default 'none' */
  auth?: 'none' | 'basic' | 'token';
  /** Who may log in, user -> password; default { kubefn: 'kubefn-password' }. */
  users?: Record<string, string>;
  /**
   * The address pods and containers reach the registry at, e.g. the host's own IPv4: the registry
   * then listens on all interfaces and `host` names that address. Default: 127.0.0.1 only.
   */
  advertise?: string;
}

export interface TokenRequest {
  /** The user the token server authenticated; undefined when the request was anonymous. */
  user?: string;
  scopes: string[];
}

export interface TestRegistry {
  /** "127.0.0.1:PORT": the registry part of image references. */
  host: string;
  /** "http://127.0.0.1:PORT" */
  url: string;
  /** With auth 'token': every token request the token server granted, in order. */
  tokenRequests?: TokenRequest[];
  /** Stops the registry (and token server) and removes its storage; idempotent. */
  close(): Promise<void>;
}

/** What the token mode's registry calls itself; tokens are issued for this audience. */
export const testTokenService = 'kubefn-test-registry';
const testTokenIssuer = 'kubefn-test-token-issuer';
/** Lifetime of the tokens the test token server issues, in seconds. */
const tokenLifetimeS = 300;
/** A free port can be taken between our probe and the registry's bind; try this many ports. */
const portAttempts = 5;
/** How long the registry may take to answer GET /v2/, in ms. */
const startTimeoutMs = 15_000;
/** Keep this much of the registry's stderr for error messages, in bytes. */
const stderrKeep = 8192;

export async function startRegistry(options: RegistryServerOptions = {}): Promise<TestRegistry> {
  const binary = await findExecutable('docker-registry');
  if (!binary) throw new Error('docker-registry is not installed: apt-get install docker-registry (bash .ci/run installs it)');
  const users = options.users ?? { kubefn: 'kubefn-password' };
  const dir = await mkdtemp(join(tmpdir(), 'kubefn-registry-'));
  const cleanups: (() => Promise<void>)[] = [() => rm(dir, { recursive: true, force: true })];
  const cleanup = async (): Promise<void> => {
    for (const c of cleanups.reverse()) await c().catch(() => {});
  };
  try {
    let auth: object | undefined;
    let tokenRequests: TokenRequest[] | undefined;
    if (options.auth === 'basic') {
      auth = { htpasswd: { realm: 'kubefn-test', path: await writeHtpasswd(dir, users) } };
    } else if (options.auth === 'token') {
      const issuer = await startTokenServer(dir, users);
      cleanups.push(issuer.close);
      tokenRequests = issuer.requests;
      auth = { token: { realm: issuer.realm, service: testTokenService, issuer: testTokenIssuer, rootcertbundle: issuer.certPath } };
    }
    const child = await launch(binary, dir, auth, options.advertise);
    cleanups.push(() => stop(child.process));
    const registry: TestRegistry = { host: child.host, url: `http://${child.host}`, close: once(cleanup) };
    if (tokenRequests) registry.tokenRequests = tokenRequests;
    return registry;
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/** Starts the registry on a free port, retrying when another process takes the port first. */
async function launch(binary: string, dir: string, auth: object | undefined, advertise: string | undefined): Promise<{ process: ChildProcess; host: string }> {
  for (let attempt = 1; ; attempt++) {
    // distribution cannot listen on port 0 and report the port, so probe for a free one.
    const port = await freePort();
    const host = `${advertise ?? '127.0.0.1'}:${port}`;
    const config = {
      version: '0.1',
      log: { level: 'warn', accesslog: { disabled: true } },
      storage: { filesystem: { rootdirectory: join(dir, 'data') }, delete: { enabled: true }, maintenance: { uploadpurging: { enabled: false } } },
      http: { addr: advertise ? `0.0.0.0:${port}` : host, secret: randomBytes(16).toString('hex') },
      ...(auth ? { auth } : {}),
    };
    const configPath = join(dir, 'config.yml');
    await writeFile(configPath, JSON.stringify(config, null, 2)); // JSON is YAML too
    // A clean environment: REGISTRY_* variables would override the config.
    const child = spawn(binary, ['serve', configPath], { env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr = (stderr + s).slice(-stderrKeep)));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const gaveUp = new AbortController();
    const ready = waitFor(
      async () => {
        const res = await fetch(`http://${host}/v2/`);
        await res.arrayBuffer();
        return res.status === 200 || res.status === 401;
      },
      { timeoutMs: startTimeoutMs, what: `docker-registry to answer on ${host}`, signal: gaveUp.signal },
    );
    const outcome = await Promise.race([ready.then(() => 'ready' as const), exited.then(() => 'exited' as const)]).catch(async (err: unknown) => {
      await stop(child);
      throw new Error(`${(err as Error).message}; its stderr:\n${stderr}`);
    });
    if (outcome === 'ready') return { process: child, host };
    gaveUp.abort();
    await ready.catch(() => {});
    if (!/address already in use/.test(stderr) || attempt >= portAttempts) {
      throw new Error(`docker-registry exited with code ${await exited} before it was ready; its stderr:\n${stderr}`);
    }
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createNetServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

/**
 * distribution's htpasswd accepts only bcrypt hashes, and node:crypto has no bcrypt, so the
 * hashes come from apache2-utils' `htpasswd`.
 */
async function writeHtpasswd(dir: string, users: Record<string, string>): Promise<string> {
  const htpasswd = await findExecutable('htpasswd');
  if (!htpasswd) throw new Error('htpasswd is not installed: apt-get install apache2-utils (a Basic-auth test registry needs its bcrypt hashes)');
  const lines: string[] = [];
  for (const [user, password] of Object.entries(users)) {
    // -n: print, -i: password from stdin, -B: bcrypt.
    lines.push((await run(htpasswd, ['-niB', user], password)).trim());
  }
  const path = join(dir, 'htpasswd');
  await writeFile(path, `${lines.join('\n')}\n`);
  return path;
}

/**
 * A token server as distribution's token auth expects (its docs' spec/auth/jwt.md): checks
 * Basic credentials against `users`, and answers with an RS256 JWT whose `x5c` header carries
 * the self-signed certificate the registry trusts as its rootcertbundle. Anonymous requests
 * get a token granting nothing, as a real token server's anonymous user would.
 */
async function startTokenServer(dir: string, users: Record<string, string>): Promise<{ realm: string; certPath: string; requests: TokenRequest[]; close(): Promise<void> }> {
  const openssl = await findExecutable('openssl');
  if (!openssl) throw new Error('openssl is not installed: apt-get install openssl (a token-auth test registry needs a certificate)');
  const keyPath = join(dir, 'token.key');
  const certPath = join(dir, 'token.crt');
  await run(openssl, ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyPath, '-out', certPath, '-days', '2', '-subj', `/CN=${testTokenIssuer}`]);
  const key = await readFile(keyPath, 'utf8');
  const certDer = new X509Certificate(await readFile(certPath)).raw.toString('base64');
  const requests: TokenRequest[] = [];

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const url = new URL(req.url ?? '/', 'http://token');
    const reply = (status: number, body: object): void => {
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    };
    if (req.method !== 'GET' || url.pathname !== '/token') return reply(404, { error: 'not found' });
    let user: string | undefined;
    const basic = /^Basic (.+)$/i.exec(req.headers.authorization ?? '');
    if (basic) {
      const [name, ...rest] = Buffer.from(basic[1]!, 'base64').toString('utf8').split(':');
      if (name === undefined || users[name] !== rest.join(':')) {
        return reply(401, { errors: [{ code: 'UNAUTHORIZED', message: 'wrong user name or password' }] });
      }
      user = name;
    }
    const scopes = url.searchParams.getAll('scope').flatMap((s) => s.split(' ')).filter(Boolean);
    requests.push(user === undefined ? { scopes } : { user, scopes });
    const access = user === undefined ? [] : scopes.flatMap(grant);
    const token = signJwt(key, certDer, { sub: user ?? '', aud: url.searchParams.get('service') ?? '', access });
    reply(200, { token, access_token: token, expires_in: tokenLifetimeS, issued_at: new Date().toISOString() });
  };
  const server: Server = createHttpServer(handle);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    realm: `http://127.0.0.1:${port}/token`,
    certPath,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** "repository:acme/fn:pull,push" -> what the token grants on it: pull and push only. */
function grant(scope: string): { type: string; name: string; actions: string[] }[] {
  const m = /^(repository):(.+):([a-z,*]+)$/.exec(scope);
  if (!m) return [];
  const actions = m[3]!.split(',').filter((a) => a === 'pull' || a === 'push');
  return [{ type: m[1]!, name: m[2]!, actions }];
}

function signJwt(keyPem: string, certDer: string, claims: { sub: string; aud: string; access: object[] }): string {
  const now = Math.floor(Date.now() / 1000);
  const header = { typ: 'JWT', alg: 'RS256', x5c: [certDer] };
  const body = { iss: testTokenIssuer, ...claims, iat: now, nbf: now - 1, exp: now + tokenLifetimeS, jti: randomBytes(8).toString('hex') };
  const input = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(body))}`;
  return `${input}.${base64url(sign('sha256', Buffer.from(input), keyPem))}`;
}

function base64url(data: string | Buffer): string {
  return Buffer.from(data).toString('base64url');
}

async function findExecutable(name: string): Promise<string | undefined> {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/bin'].filter(Boolean);
  for (const d of dirs) {
    const path = join(d, name);
    if (await access(path, constants.X_OK).then(() => true, () => false)) return path;
  }
  return undefined;
}

/** Runs a command to completion; its stdout, or an error with its stderr. */
function run(command: string, args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve(stdout) : reject(new Error(`${command} ${args[0] ?? ''} failed (${code}): ${stderr.trim()}`))));
    child.stdin.end(input ?? '');
  });
}

function once(f: () => Promise<void>): () => Promise<void> {
  let p: Promise<void> | undefined;
  return () => (p ??= f());
}
