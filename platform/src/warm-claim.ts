// How a gateway hands a function to a warm pod of the cluster's pool (`kubefn-pool`), and how the
// pod checks it. A pool pod holds no secret: it holds the gateways' public key. The gateway signs
// a claim naming the one pod it is for, the function's app layer by digest, its environment and
// its secret files; the pod takes the first claim signed for its own name, and only while it is
// fresh. A function that later runs in one pool pod therefore has nothing it could use against
// another: it can read the public key, not sign with it, and a claim it saw names another pod.
//
// On the wire (POST warmPaths.specialize): header `x-kubefn-signature` is the Ed25519 signature,
// base64url, of the claim's JSON bytes; the body is the claim's length as 4 bytes big-endian,
// the claim's JSON, then the layer blob itself (a gzip tar, as in the registry). The pod hashes
// the blob as it unpacks it into its app directory and refuses the claim when the hash differs.

import { createHash, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, gzipSync } from 'node:zlib';
import tar from 'tar-stream';

export interface WarmClaim {
  /** The pool pod's name: no other pod takes this claim. */
  pod: string;
  function: string;
  /** The function image's last layer, which holds /app: as its manifest lists it. */
  layer: { digest: string; size: number };
  /** The bundle in the app directory to load: fn.cjs or fn.mjs. */
  bundle: string;
  /** The function's whole environment. */
  env: Record<string, string>;
  /** Secret files by name, base64: written read-only into the pod's secrets directory. */
  files: Record<string, string>;
  /** Epoch ms after which the pod refuses the claim. */
  expires: number;
}

export { warmClaimEnv, warmSignatureHeader } from './runtime-contract.js';
/** Files up to this size are unpacked in one write. */
const smallFileBytes = 4 * 1024 * 1024;
/** Longest claim JSON a pod reads (environment and secret files included). */
export const warmClaimMaxBytes = 1024 * 1024;
/** Most a layer may unpack to in a pool pod, and the most entries it may hold. */
export const warmLayerLimits = { bytes: 1024 * 1024 * 1024, entries: 100_000 } as const;

/** The body's head (length and claim JSON) and its signature. */
export function signClaim(claim: WarmClaim, privateKey: KeyObject): { head: Buffer; signature: string } {
  const json = Buffer.from(JSON.stringify(claim));
  const length = Buffer.alloc(4);
  length.writeUInt32BE(json.length);
  return { head: Buffer.concat([length, json]), signature: sign(null, json, privateKey).toString('base64url') };
}

export function publicKeyOf(pem: string): KeyObject {
  return createPublicKey(pem);
}

/** The claim when `json` is signed by `publicKey`, names `self` and has not expired; else why not. */
export function verifyClaim(json: Buffer, signature: string, publicKey: KeyObject, self: string, now = Date.now()): WarmClaim | string {
  let signed = false;
  try {
    signed = verify(null, json, publicKey, Buffer.from(signature, 'base64url'));
  } catch {
    signed = false;
  }
  if (!signed) return 'the claim is not signed by a gateway';
  let claim: WarmClaim;
  try {
    claim = JSON.parse(json.toString('utf8')) as WarmClaim;
  } catch {
    return 'the claim is not JSON';
  }
  if (claim.pod !== self) return `the claim is for pod "${String(claim.pod)}", not this one ("${self}")`;
  if (!(claim.expires > now)) return 'the claim has expired';
  if (!/^fn\.(cjs|mjs)$/.test(claim.bundle)) return `the claim names bundle "${String(claim.bundle)}"; only fn.cjs or fn.mjs load`;
  if (!/^sha256:[0-9a-f]{64}$/.test(claim.layer?.digest ?? '')) return 'the claim names no sha256 layer digest';
  return claim;
}

/**
 * Reads the claim's head from `body`: 4 bytes of length, then the JSON. Returns the JSON and
 * whatever of the layer already arrived with it.
 */
export function readClaimHead(body: Readable): Promise<{ json: Buffer; rest: Buffer }> {
  // Not `for await`: leaving that loop early would destroy the stream the layer still comes on.
  return new Promise((resolve, reject) => {
    let got = Buffer.alloc(0);
    const finish = (err: Error | undefined, head?: { json: Buffer; rest: Buffer }): void => {
      body.off('data', onData);
      body.off('end', onEnd);
      body.off('error', finish);
      body.pause();
      if (head) resolve(head);
      else reject(err);
    };
    const onEnd = (): void => finish(new Error('the body ended inside the claim'));
    const onData = (chunk: Buffer): void => {
      got = Buffer.concat([got, chunk]);
      if (got.length < 4) return;
      const length = got.readUInt32BE(0);
      if (length > warmClaimMaxBytes) return finish(new Error(`the claim is ${length} bytes, more than ${warmClaimMaxBytes}`));
      if (got.length >= 4 + length) finish(undefined, { json: got.subarray(4, 4 + length), rest: got.subarray(4 + length) });
    };
    body.on('data', onData);
    body.once('end', onEnd);
    body.once('error', finish);
  });
}

/**
 * Unpacks a gzip tar layer into `appDir`: its entries under `app/` (what a function image's own
 * layer holds), files, directories and symlinks that stay inside. Anything else, or a blob whose
 * sha256 or size is not the claim's, throws, and what was written is removed.
 */
export async function unpackLayer(blob: Readable, first: Buffer, layer: WarmClaim['layer'], appDir: string): Promise<void> {
  const hash = createHash('sha256');
  let size = 0;
  const counted = new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      size += chunk.length;
      if (size > layer.size) done(new Error(`the layer is longer than the ${layer.size} bytes its manifest says`));
      else done(null, chunk);
    },
  });
  const root = path.resolve(appDir);
  let bytes = 0;
  let entries = 0;
  const extract = tar.extract();
  extract.on('entry', (header, stream, next) => {
    // Destroying the extractor errors the entry it is on; that error is the extractor's to report.
    stream.on('error', () => {});
    const fail = (why: string): void => {
      stream.resume();
      extract.destroy(new Error(`layer entry "${header.name}": ${why}`));
    };
    if (++entries > warmLayerLimits.entries) return fail(`more than ${warmLayerLimits.entries} entries`);
    const name = header.name.replace(/^\.\//, '').replace(/\/+$/, '');
    if (name === 'app' && header.type === 'directory') {
      stream.resume();
      return next();
    }
    if (!name.startsWith('app/')) return fail('outside /app');
    const target = path.resolve(root, name.slice('app/'.length));
    if (!target.startsWith(root + path.sep)) return fail('escapes /app');
    if (path.basename(target).startsWith('.wh.')) return fail('a whiteout: a layer on top of another is not a function layer');
    const mode = (header.mode ?? 0o644) & 0o755;
    const done = (err?: unknown): void => (err ? extract.destroy(err as Error) : next());
    if (header.type === 'directory') {
      stream.resume();
      mkdir(target, { recursive: true, mode: mode | 0o700 }).then(() => done(), done);
    } else if (header.type === 'symlink') {
      stream.resume();
      const to = path.resolve(path.dirname(target), header.linkname ?? '');
      if (to !== root && !to.startsWith(root + path.sep)) return fail('a symlink out of /app');
      mkdir(path.dirname(target), { recursive: true })
        .then(() => symlink(header.linkname ?? '', target))
        .then(() => done(), done);
    } else if (header.type === 'file') {
      bytes += header.size ?? 0;
      if (bytes > warmLayerLimits.bytes) return fail(`unpacks to more than ${warmLayerLimits.bytes} bytes`);
      const size = header.size ?? 0;
      const options = { mode: mode | 0o400, flag: 'wx', flags: 'wx' };
      // A small file is written at once; a large one streams.
      const write =
        size <= smallFileBytes
          ? async () => {
              const parts: Buffer[] = [];
              for await (const chunk of stream) parts.push(chunk as Buffer);
              await writeFile(target, Buffer.concat(parts), options);
            }
          : () => pipeline(stream, createWriteStream(target, options));
      mkdir(path.dirname(target), { recursive: true })
        .then(write)
        .then(() => done(), done);
    } else {
      fail(`a ${header.type}: only files, directories and symlinks`);
    }
  });
  const source = async function* (): AsyncGenerator<Buffer> {
    if (first.length) yield first;
    for await (const chunk of blob) yield chunk as Buffer;
  };
  try {
    await pipeline(source, counted, createGunzip({ chunkSize: 256 * 1024 }), extract);
    const digest = `sha256:${hash.digest('hex')}`;
    if (size !== layer.size) throw new Error(`the layer is ${size} bytes, its manifest says ${layer.size}`);
    if (digest !== layer.digest) throw new Error(`the layer's digest is ${digest}, the claim's ${layer.digest}`);
  } catch (err) {
    // The directory itself may be a mount point: empty it.
    const left = await readdir(root).catch(() => []);
    await Promise.all(left.map((n) => rm(path.join(root, n), { recursive: true, force: true })));
    throw err;
  }
}

/** Writes the claim's secret files, read-only, into `dir`. */
export async function writeClaimFiles(files: WarmClaim['files'], dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const [name, content] of Object.entries(files)) {
    if (!/^[A-Za-z0-9._-]+$/.test(name) || name === '.' || name === '..') throw new Error(`secret file "${name}" is not a plain file name`);
    await writeFile(path.join(dir, name), Buffer.from(content, 'base64'), { mode: 0o444 });
  }
}

/**
 * Takes a made-up claim end to end in `scratch` (signed with a throwaway key, a small layer of a
 * directory, a file and a symlink, a secret file), then removes it: run while a pool pod warms up,
 * so the first real claim finds this code compiled and costs I/O, not parsing.
 */
export async function rehearseClaim(scratch: string): Promise<void> {
  const pack = tar.pack();
  pack.entry({ name: 'app', type: 'directory', mode: 0o755 });
  pack.entry({ name: 'app/lib', type: 'directory', mode: 0o755 });
  pack.entry({ name: 'app/lib/fn.cjs', mode: 0o644 }, 'module.exports = () => "rehearsal";\n');
  pack.entry({ name: 'app/fn.cjs', type: 'symlink', linkname: 'lib/fn.cjs' });
  pack.finalize();
  const parts: Buffer[] = [];
  for await (const chunk of pack) parts.push(chunk as Buffer);
  const blob = gzipSync(Buffer.concat(parts));
  const keys = generateKeyPairSync('ed25519');
  const claim: WarmClaim = {
    pod: 'rehearsal',
    function: 'rehearsal',
    layer: { digest: `sha256:${createHash('sha256').update(blob).digest('hex')}`, size: blob.length },
    bundle: 'fn.cjs',
    env: {},
    files: { token: Buffer.from('rehearsal').toString('base64') },
    expires: Date.now() + 60_000,
  };
  const { head, signature } = signClaim(claim, keys.privateKey);
  const body = Readable.from([head, blob]);
  try {
    const read = await readClaimHead(body);
    const taken = verifyClaim(read.json, signature, publicKeyOf(keys.publicKey.export({ type: 'spki', format: 'pem' }).toString()), 'rehearsal');
    if (typeof taken === 'string') throw new Error(`rehearsal claim refused: ${taken}`);
    await unpackLayer(body, read.rest, taken.layer, path.join(scratch, 'app'));
    await writeClaimFiles(taken.files, path.join(scratch, 'secrets'));
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}
