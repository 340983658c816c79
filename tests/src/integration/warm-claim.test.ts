// The warm runtime as a cluster pool pod runs it (deploy/pool.yaml): the real bundled runtime
// (/kubefn/warm.cjs of the pool image) with only the gateways' public key, taking a claim signed
// for its own pod name and a function's real app layer (the builder's, assets beside the
// bundle), refusing claims it must not take, and unable to take a second one.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { buildFunctionImage, bundleWarmRuntime, RegistryClient } from '@kubefn/builder';
import { signClaim, warmClaimEnv, warmSignatureHeader, type WarmClaim } from '@kubefn/platform/warm-claim';
import { waitFor } from '@kubefn/platform/testing';
import { freePort } from '../support/control-plane.js';
import { testCacheDir } from '../support/podman.js';

const handler = `
const { readFileSync } = require('node:fs');
const path = require('node:path');
let calls = 0;
module.exports = async () => ({
  fn: process.env.KUBEFN_FUNCTION,
  pod: process.env.POD_NAME,
  marker: process.env.MARKER ?? null,
  key: process.env.WARM_PUBLIC_KEY_SEEN ?? (process.env.${warmClaimEnv.publicKey} ? 'visible' : 'gone'),
  secret: readFileSync(path.join(process.env.SECRETS_DIR, 'api-key'), 'utf8'),
  asset: readFileSync(path.join(__dirname, 'data', 'greeting.txt'), 'utf8').trim(),
  calls: ++calls,
});
`;

interface Pod {
  child: ChildProcess;
  admin: string;
  http: string;
  /** What the gateway puts in every claim: the ports and address the pod's runtime takes. */
  env: Record<string, string>;
  app: string;
  secrets: string;
  exited: Promise<number | null>;
}

describe('a cluster pool pod\'s warm runtime (signed claims)', () => {
  let dir: string;
  let warmFile: string;
  let layer: { blob: Buffer; digest: string };
  let keys: { publicKey: KeyObject; privateKey: KeyObject };
  const pods: Pod[] = [];

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'kubefn-warm-claim-'));
    warmFile = path.join(dir, 'warm.cjs');
    await writeFile(warmFile, await bundleWarmRuntime());
    const fnDir = path.join(dir, 'fn');
    await mkdir(path.join(fnDir, 'data'), { recursive: true });
    await writeFile(path.join(fnDir, 'handler.js'), handler);
    await writeFile(path.join(fnDir, 'data', 'greeting.txt'), 'hello from an asset\n');
    const fi = await buildFunctionImage({ dir: fnDir, handler: 'handler.js', name: 'claimed', base: 'scratch', assets: ['data'], client: new RegistryClient(), cacheDir: testCacheDir });
    layer = fi.layer;
    keys = generateKeyPairSync('ed25519');
  });
  after(async () => {
    for (const p of pods) p.child.kill('SIGKILL');
    await Promise.all(pods.map((p) => p.exited));
    await rm(dir, { recursive: true, force: true });
  });

  async function startPod(name: string): Promise<Pod> {
    const [port, adminPort] = [await freePort(), await freePort()];
    const app = await mkdtemp(path.join(dir, 'app-'));
    const secrets = await mkdtemp(path.join(dir, 'secrets-'));
    const child = spawn(process.execPath, [warmFile], {
      env: {
        PATH: process.env.PATH,
        POD_NAME: name,
        PORT: String(port),
        ADMIN_PORT: String(adminPort),
        KUBEFN_HOST: '127.0.0.1',
        [warmClaimEnv.publicKey]: keys.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
        [warmClaimEnv.appDir]: app,
        [warmClaimEnv.secretsDir]: secrets,
      },
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const env = { PORT: String(port), ADMIN_PORT: String(adminPort), KUBEFN_HOST: '127.0.0.1', SECRETS_DIR: secrets };
    const pod = { child, admin: `http://127.0.0.1:${adminPort}`, http: `http://127.0.0.1:${port}`, env, app, secrets, exited };
    pods.push(pod);
    await waitFor(async () => (await fetch(`${pod.admin}/kubefn/warm`).catch(() => undefined))?.status === 200, { what: `pool pod ${name} warm`, timeoutMs: 20_000 });
    return pod;
  }

  function claimFor(pod: string, over: Partial<WarmClaim> = {}): WarmClaim {
    return {
      pod,
      function: 'claimed',
      layer: { digest: layer.digest, size: layer.blob.length },
      bundle: 'fn.cjs',
      env: { KUBEFN_FUNCTION: 'claimed', POD_NAME: pod, MARKER: 'one' },
      files: { 'api-key': Buffer.from('s3cret').toString('base64') },
      expires: Date.now() + 30_000,
      ...over,
    };
  }

  async function post(pod: Pod, claim: WarmClaim, options: { key?: KeyObject; blob?: Buffer } = {}): Promise<{ status: number; text: string }> {
    const { head, signature } = signClaim(claim, options.key ?? keys.privateKey);
    const res = await fetch(`${pod.admin}/kubefn/specialize`, {
      method: 'POST',
      headers: { [warmSignatureHeader]: signature },
      body: Readable.toWeb(Readable.from([head, options.blob ?? layer.blob])) as ReadableStream,
      duplex: 'half',
    } as RequestInit);
    return { status: res.status, text: await res.text() };
  }

  it('refuses claims not signed by the gateways, for another pod or expired, and then takes a good one', { timeout: 60_000 }, async () => {
    const pod = await startPod('kubefn-pool-a');
    const env = (claim: WarmClaim) => ({ ...claim, env: { ...claim.env, ...pod.env } });
    const stranger = generateKeyPairSync('ed25519').privateKey;
    assert.equal((await post(pod, env(claimFor('kubefn-pool-a')), { key: stranger })).status, 403);
    const other = await post(pod, env(claimFor('kubefn-pool-b')));
    assert.equal(other.status, 403);
    assert.match(other.text, /for pod "kubefn-pool-b", not this one/);
    assert.equal((await post(pod, env(claimFor('kubefn-pool-a', { expires: Date.now() - 1 })))).status, 403);
    const unsigned = await fetch(`${pod.admin}/kubefn/specialize`, { method: 'POST', body: 'x' });
    assert.equal(unsigned.status, 401);

    const taken = await post(pod, env(claimFor('kubefn-pool-a')));
    assert.equal(taken.status, 202, taken.text);
    await waitFor(async () => (await fetch(`${pod.admin}/readyz`).catch(() => undefined))?.status === 200, { what: 'the function ready in the pool pod', timeoutMs: 20_000 });
    const answer = (await (await fetch(pod.http)).json()) as Record<string, unknown>;
    assert.deepEqual(answer, { fn: 'claimed', pod: 'kubefn-pool-a', marker: 'one', key: 'gone', secret: 's3cret', asset: 'hello from an asset', calls: 1 });

    // Specialized: the warm listener is gone, and no second claim is taken.
    const again = await post(pod, env(claimFor('kubefn-pool-a'))).catch(() => ({ status: 0, text: 'refused' }));
    assert.notEqual(again.status, 202);
    assert.equal((await fetch(`${pod.admin}/kubefn/warm`)).status, 404);
  });

  it('refuses a layer whose bytes are not the claim\'s digest, empties its app directory and exits', { timeout: 60_000 }, async () => {
    const pod = await startPod('kubefn-pool-c');
    // A signed claim naming other bytes than those sent: the pod checks what it unpacked.
    const res = await post(pod, { ...claimFor('kubefn-pool-c'), layer: { digest: `sha256:${'1'.repeat(64)}`, size: layer.blob.length }, env: pod.env });
    assert.equal(res.status, 400);
    assert.match(res.text, /the layer's digest is sha256:[0-9a-f]{64}, the claim's sha256:1111/);
    assert.equal(await pod.exited, 1, 'a runtime with half an app unpacked does not stay');
    const { readdir } = await import('node:fs/promises');
    assert.deepEqual(await readdir(pod.app), []);
  });
});
