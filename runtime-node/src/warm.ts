// A warm runtime: a node process started before any function needs it, holding none. The pool
// that forked it hands it a function over IPC (SpecializeMessage), or, in a container, over its
// admin port (warmPaths); it then takes the function's environment, directory and user, and
// loads the bundle. A bundle finds this runtime already
// loaded (warmRunKey) and hands it its handler instead of starting its own copy, so
// specializing costs the handler's own loading and init() alone. From then on the process is
// an ordinary replica of that one function.
//
// Run as a script: `node warm.js`, without --enable-source-maps (see lazy-source-maps.ts). Until specialized it holds this runtime
// and node's own modules, nothing of any function.

import { timingSafeEqual, type KeyObject } from 'node:crypto';
import http from 'node:http';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { warmClaimEnv, warmPaths, warmRunKey, warmSignatureHeader, warmTokenEnv, type SpecializeMessage, type WarmMessage } from '@kubefn/platform/runtime-contract';
import { mapStacksLazily } from './lazy-source-maps.js';
import { loadGuardKey } from './load-failure.js';
import { run } from './run.js';
import { serve } from './serve.js';

type WarmClaims = typeof import('@kubefn/platform/warm-claim');

const require = createRequire(import.meta.url);

/** Node modules handlers often load at once; loaded now, they are cached. */
const preloaded = ['http', 'https', 'net', 'dns', 'zlib', 'crypto', 'util', 'url', 'os', 'fs', 'path', 'events', 'stream', 'string_decoder', 'buffer', 'perf_hooks', 'async_hooks', 'cluster', 'v8', 'worker_threads', 'tty', 'process', 'timers', 'querystring'];

function isSpecialize(m: unknown): m is SpecializeMessage {
  const s = m as Partial<SpecializeMessage> | null;
  return typeof s === 'object' && s !== null && s.type === 'kubefn:specialize' && typeof s.file === 'string' && typeof s.cwd === 'string' && typeof s.env === 'object' && s.env !== null;
}

/** Takes the function's user, directory and environment; a failure here is the pool's, not the function's. */
function become(m: SpecializeMessage, keep: Record<string, string> = {}): void {
  // The function's user first: nothing of the function runs with the pool's rights.
  if (m.gid !== undefined) {
    process.setgroups?.([m.gid]);
    process.setgid?.(m.gid);
  }
  if (m.uid !== undefined) process.setuid?.(m.uid);
  process.chdir(m.cwd);
  for (const key of Object.keys(process.env)) delete process.env[key];
  Object.assign(process.env, keep, m.env);
  // As if started as `node <file>`: the runtime finds its bundle's directory from argv[1].
  process.argv[1] = m.file;
  (globalThis as Record<symbol, unknown>)[warmRunKey] = run;
}

/**
 * Loads the bundle. A throw while it loads is left uncaught, as it would be in `node <file>`:
 * the bundle's load guard then reports it as the function's load failure.
 */
function load(file: string): void {
  mapStacksLazily(path.resolve(file));
  if (!file.endsWith('.mjs')) {
    require(file);
    return;
  }
  import(pathToFileURL(file).href).catch((err: unknown) => {
    const guard = (globalThis as Record<symbol, unknown>)[loadGuardKey];
    if (typeof guard === 'function') (guard as (err: unknown) => void)(err);
    else fail(err);
  });
}

function fail(err: unknown): never {
  process.stderr.write(`warm runtime: cannot become a replica: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
}

/**
 * Serves a few calls of a no-op handler through this runtime's own servers, on loopback, then
 * closes them: node loads and compiles the HTTP parser, the Request and Response classes and the
 * runtime's call path now, not during a function's first call.
 */
async function warmUp(): Promise<void> {
  const server = await serve({ default: async (req: Request) => new Response(await req.text()) }, { port: 0, adminPort: 0, host: '127.0.0.1', functionName: 'warm-up', log: () => {} });
  const agent = new http.Agent({ keepAlive: true });
  try {
    for (const method of ['GET', 'POST', 'POST']) {
      await new Promise<void>((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port: server.port, path: '/', method, agent }, (res) => {
          res.resume();
          res.once('end', resolve);
        });
        req.once('error', reject);
        req.end(method === 'POST' ? '{"warm":true}' : undefined);
      });
    }
  } finally {
    agent.destroy();
    await server.close();
  }
}

for (const name of preloaded) require(name);

function specialize(m: SpecializeMessage, keep?: Record<string, string>): void {
  try {
    become(m, keep);
  } catch (err) {
    fail(err);
  }
  load(m.file);
}

/** Forked by a pool: warm over IPC, specialized over IPC, gone with the pool. */
function overIpc(): void {
  const onDisconnect = (): void => process.exit(0);
  const onMessage = (m: unknown): void => {
    if (!isSpecialize(m)) return;
    process.off('message', onMessage);
    process.off('disconnect', onDisconnect);
    specialize(m);
  };
  process.on('message', onMessage);
  // The pool is gone: nothing will ever specialize this process.
  process.once('disconnect', onDisconnect);
  warmUp().then(
    () => process.send?.({ type: 'kubefn:warm' } satisfies WarmMessage),
    (err: unknown) => fail(err),
  );
}

/** Why a specialization was refused: the status to answer, and whether this runtime is spoiled. */
class Refusal extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly spoiled = false,
  ) {
    super(message);
  }
}

/**
 * In a container or pod: the admin port says when it is warm and takes the one specialization
 * `take` accepts. The listener is closed before the bundle loads, so the function's runtime takes
 * the port. A refusal that spoiled the runtime (half an app unpacked) ends the process.
 */
/** What a runtime took: the specialization, and what its 202 says (the default: "specializing"). */
type Taken = SpecializeMessage & { said?: string };

function listenUntilSpecialized(take: (req: http.IncomingMessage) => Promise<Taken>, rehearse?: () => Promise<void>): void {
  // The container's own PATH and HOME stay unless the function's environment names its own.
  const keep: Record<string, string> = {};
  for (const key of ['PATH', 'HOME']) if (process.env[key] !== undefined) keep[key] = process.env[key]!;
  let warm = false;
  let busy = false;
  const server = http.createServer((req, res) => {
    const answer = (status: number, text: string): void => {
      res.writeHead(status, { 'content-type': 'text/plain', connection: 'close' }).end(text);
    };
    if (req.method === 'GET' && req.url === warmPaths.warm) return answer(warm ? 200 : 503, warm ? 'warm' : 'warming up');
    if (req.method !== 'POST' || req.url !== warmPaths.specialize) return answer(404, 'a warm runtime: nothing here until it is specialized');
    if (!warm || busy) {
      req.resume();
      return answer(409, busy ? 'specialized already' : 'not warm yet');
    }
    busy = true;
    take(req).then(
      (m) => {
        // The container's user stays: a uid or gid in the message is not this runtime's to take.
        const { uid: _uid, gid: _gid, said, ...given } = m;
        res.once('finish', () => {
          server.closeAllConnections();
          server.close(() => specialize(given, keep));
        });
        answer(202, said ?? 'specializing');
      },
      (err: unknown) => {
        const r = err instanceof Refusal ? err : new Refusal(400, err instanceof Error ? err.message : String(err), true);
        if (r.spoiled) res.once('finish', () => fail(new Error(`specialization failed: ${r.message}`)));
        else busy = false;
        // The answer after the rest of the body (for at most 10 s): a sender still writing when
        // the connection closes sees a reset, not the reason.
        if (req.complete) return answer(r.status, r.message);
        const timer = setTimeout(() => answer(r.status, r.message), 10_000);
        req.once('end', () => (clearTimeout(timer), answer(r.status, r.message)));
        req.resume();
      },
    );
  });
  server.listen(Number(process.env.ADMIN_PORT ?? 8081), process.env.KUBEFN_HOST ?? '0.0.0.0');
  server.once('error', fail);
  warmUp()
    .then(rehearse)
    .then(
      () => (warm = true),
      (err: unknown) => fail(err),
    );
}

/** A podman pool's container: a SpecializeMessage as JSON, from whoever holds its token. */
function takeWithToken(token: Buffer): (req: http.IncomingMessage) => Promise<SpecializeMessage> {
  return async (req) => {
    const given = Buffer.from(/^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '');
    if (given.length !== token.length || !timingSafeEqual(given, token)) throw new Refusal(401, 'wrong or missing token');
    const parts: Buffer[] = [];
    let size = 0;
    for await (const c of req) {
      size += (c as Buffer).length;
      if (size > 1024 * 1024) throw new Refusal(413, 'a specialization is at most 1 MiB');
      parts.push(c as Buffer);
    }
    let m: unknown;
    try {
      m = JSON.parse(Buffer.concat(parts).toString('utf8'));
    } catch {
      throw new Refusal(400, 'not JSON');
    }
    if (!isSpecialize(m)) throw new Refusal(400, 'not a specialization: type, file, cwd and env are needed');
    return m;
  };
}

/**
 * A cluster pool's pod (see @kubefn/platform/warm-claim): a claim signed by a gateway for this
 * pod, then the function's app layer, unpacked here and checked against the claim's digest.
 * Only a pool pod loads the claim module (and its tar reader); other runtimes never do.
 */
function takeSignedClaim(claims: WarmClaims, publicKey: KeyObject, self: string, appDir: string, secretsDir: string): (req: http.IncomingMessage) => Promise<Taken> {
  const { readClaimHead, verifyClaim, unpackLayer, writeClaimFiles } = claims;
  return async (req) => {
    const signature = req.headers[warmSignatureHeader];
    if (typeof signature !== 'string') throw new Refusal(401, `no ${warmSignatureHeader} header`);
    const head = await readClaimHead(req).catch((err: unknown) => {
      throw new Refusal(400, (err as Error).message);
    });
    const claim = verifyClaim(head.json, signature, publicKey, self);
    if (typeof claim === 'string') throw new Refusal(403, claim);
    // From here on the app directory is written: a failure spoils this runtime.
    const unpacking = performance.now();
    try {
      await unpackLayer(req, head.rest, claim.layer, appDir);
      await writeClaimFiles(claim.files, secretsDir);
    } catch (err) {
      throw new Refusal(400, (err as Error).message, true);
    }
    const said = `specializing: layer unpacked in ${(performance.now() - unpacking).toFixed(1)} ms`;
    return { type: 'kubefn:specialize', file: path.join(appDir, claim.bundle), cwd: appDir, env: claim.env, said };
  };
}

async function startPoolPod(publicKeyPem: string): Promise<void> {
  const self = process.env.POD_NAME ?? '';
  if (!self) fail(new Error(`${warmClaimEnv.publicKey} is set but POD_NAME is not: a pool pod takes only claims for its own name`));
  const claims: WarmClaims = await import('@kubefn/platform/warm-claim');
  let key: KeyObject;
  try {
    key = claims.publicKeyOf(publicKeyPem);
  } catch (err) {
    fail(new Error(`${warmClaimEnv.publicKey} is not a public key: ${(err as Error).message}`));
  }
    const rehearse = () => claims.rehearseClaim(path.join(os.tmpdir(), `kubefn-rehearsal-${process.pid}`));
  listenUntilSpecialized(takeSignedClaim(claims, key, self, process.env[warmClaimEnv.appDir] ?? '/app', process.env[warmClaimEnv.secretsDir] ?? '/var/openfaas/secrets'), rehearse);
}

const httpToken = process.env[warmTokenEnv];
const publicKeyPem = process.env[warmClaimEnv.publicKey];
delete process.env[warmTokenEnv];
if (process.send !== undefined) overIpc();
else if (httpToken) listenUntilSpecialized(takeWithToken(Buffer.from(httpToken)));
else if (publicKeyPem) startPoolPod(publicKeyPem).catch(fail);
else fail(new Error(`started without an IPC channel, ${warmTokenEnv} or ${warmClaimEnv.publicKey}; only a warm pool starts this`));
