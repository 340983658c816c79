// The test set-up's caches on a fresh machine, with two test processes at once (as `node --test`
// runs files): the images every podman and cluster test builds on (an empty cache, two processes
// each setting up twice at once beside `fn platform-image`), and the Kubernetes binaries (built by
// a stand-in `go` here: the real build takes many minutes).

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startRegistry, type TestRegistry } from '@kubefn/builder/testing';
import { waitFor } from '@kubefn/platform/testing';
import { lockHolder } from '../support/pid-lock.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const controlPlaneModule = new URL('../support/control-plane.js', import.meta.url).href;

interface Run {
  child: ChildProcess;
  stdout: string;
  stderr: string;
  exited: Promise<number | null>;
}

function start(args: string[], env: Record<string, string>, options: { detached?: boolean } = {}): Run {
  const child = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: options.detached ?? false });
  const run: Run = { child, stdout: '', stderr: '', exited: new Promise((resolve) => child.once('exit', (code) => resolve(code))) };
  child.stdout!.on('data', (d: Buffer) => (run.stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (run.stderr += d.toString()));
  return run;
}

async function succeeded(run: Run): Promise<unknown> {
  const code = await run.exited;
  assert.equal(code, 0, `exit ${code}:\n${run.stderr}`);
  return JSON.parse(run.stdout.trim().split('\n').at(-1)!);
}

/** Every file under `dir`, relative. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => path.relative(dir, path.join(e.parentPath, e.name))).sort();
}

describe('test images on an empty cache', () => {
  let registry: TestRegistry;
  let home: string;

  before(async () => {
    registry = await startRegistry();
    home = await mkdtemp(path.join(tmpdir(), 'kubefn-cache-test-'));
  });

  after(async () => {
    await registry?.close();
    if (home) await rm(home, { recursive: true, force: true });
  });

  it('two processes set up the images at once, each twice beside fn platform-image: all succeed with the same images and a sound cache', { timeout: 900_000 }, async () => {
    const cache = path.join(home, 'cache');
    const env = { KUBEFN_TEST_CACHE: cache, KUBEFN_HOME: home };
    const runs = [0, 1].map(() => start([path.join(here, 'image-setup-child.js'), registry.host], env));
    const [a, b] = (await Promise.all(runs.map(succeeded))) as { first: Record<string, string>; second: Record<string, string>; platform: string }[];
    assert.deepEqual(a!.first, a!.second, 'one process, two set-ups at once');
    assert.deepEqual(a, b, 'two processes');
    for (const digest of [...Object.values(a!.first), a!.platform]) assert.match(digest, /^sha256:[0-9a-f]{64}$/);
    // Nothing half-written or left behind: every blob is named by its content's digest.
    const files = await filesUnder(cache);
    assert.deepEqual(files.filter((f) => !/^(blobs\/sha256\/[0-9a-f]{64}|host-base\/[0-9a-f]+\.json)$/.test(f)), []);
    for (const f of files.filter((x) => x.startsWith('blobs/'))) {
      assert.equal(createHash('sha256').update(await readFile(path.join(cache, f))).digest('hex'), path.basename(f), f);
    }
  });
});

describe('Kubernetes binaries cache', () => {
  const components = ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubelet', 'kube-proxy', 'kubectl'];
  let dir: string;
  let env: Record<string, string>;
  let cache: string;
  let log: string;
  let gate: string;

  // A stand-in for `go build -o <dir>/ k8s.io/kubernetes/cmd/...`: it notes each build, writes
  // half of every binary, waits for the gate file, then writes the rest.
  const fakeGo = `#!/bin/sh
echo "build $$" >> "$FAKE_GO_LOG"
out=""; prev=""
for a in "$@"; do [ "$prev" = "-o" ] && out="$a"; prev="$a"; done
for a in "$@"; do case "$a" in k8s.io/kubernetes/cmd/*) printf 'first half\\n' > "$out\${a##*/}"; chmod +x "$out\${a##*/}";; esac; done
while [ ! -e "$FAKE_GO_GATE" ]; do sleep 0.05; done
for a in "$@"; do case "$a" in k8s.io/kubernetes/cmd/*) printf 'second half\\n' >> "$out\${a##*/}";; esac; done
`;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'kubefn-k8s-cache-test-'));
    await mkdir(path.join(dir, 'fake-bin'));
    await writeFile(path.join(dir, 'fake-bin', 'go'), fakeGo);
    await chmod(path.join(dir, 'fake-bin', 'go'), 0o755);
  });

  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** A fresh cache, build log and gate for one case. */
  async function fresh(name: string): Promise<void> {
    const root = path.join(dir, name);
    await mkdir(root);
    cache = path.join(root, 'bin');
    log = path.join(root, 'go.log');
    gate = path.join(root, 'gate');
    env = { KUBEFN_K8S_CACHE: cache, FAKE_GO_LOG: log, FAKE_GO_GATE: gate, PATH: `${path.join(dir, 'fake-bin')}:${process.env.PATH ?? ''}` };
  }

  const ensure = (options: { detached?: boolean } = {}): Run =>
    start(
      ['--input-type=module', '-e', 'const m = await import(process.argv[1]); console.log(JSON.stringify(await m.ensureBinaries((l) => console.error(l))));', controlPlaneModule],
      env,
      options,
    );
  const builds = async (): Promise<number> => (await readFile(log, 'utf8').catch(() => '')).split('\n').filter(Boolean).length;

  it('two processes at once on an empty cache: one builds while the other waits, and both get the complete binaries', { timeout: 120_000 }, async () => {
    await fresh('concurrent');
    const runs = [ensure(), ensure()];
    await waitFor(async () => (await builds()) === 1 && runs.some((r) => r.stderr.includes('waiting for process')), {
      timeoutMs: 60_000,
      what: 'one process building and the other waiting for it',
    });
    assert.deepEqual((await readdir(cache)).filter((f) => !f.startsWith('.build')), [], 'nothing in the cache while the build runs');
    await writeFile(gate, '');
    const [a, b] = await Promise.all(runs.map(succeeded));
    assert.deepEqual(a, b);
    assert.deepEqual(Object.keys(a as object).sort(), [...components].sort());
    for (const c of components) assert.equal(await readFile(path.join(cache, c), 'utf8'), 'first half\nsecond half\n', c);
    assert.equal(await builds(), 1, 'built once');
    assert.deepEqual((await readdir(cache)).sort(), [...components].sort(), 'no lock or build folder left');
  });

  it('a build whose process dies leaves no binary in the cache; the next run takes over the lock and builds them whole', { timeout: 120_000 }, async () => {
    await fresh('crash');
    const dying = ensure({ detached: true });
    await waitFor(async () => (await builds()) === 1, { timeoutMs: 60_000, what: 'the first build running' });
    const buildDir = (await readdir(cache)).find((f) => f.startsWith('.build-'));
    assert.ok(buildDir);
    await waitFor(async () => (await readdir(path.join(cache, buildDir))).length === components.length, { timeoutMs: 30_000, what: 'half of each binary written' });
    // The process and its stand-in go, by their process group.
    process.kill(-dying.child.pid!, 'SIGKILL');
    await dying.exited;
    assert.deepEqual((await readdir(cache)).filter((f) => !f.startsWith('.build')), [], 'no half-written binary in the cache');
    assert.equal(lockHolder(path.join(cache, '.build.lock')), dying.child.pid, 'the dead build still names itself in the lock');

    await writeFile(gate, '');
    const paths = await succeeded(ensure());
    assert.deepEqual(Object.keys(paths as object).sort(), [...components].sort());
    for (const c of components) assert.equal(await readFile(path.join(cache, c), 'utf8'), 'first half\nsecond half\n', c);
    assert.equal(await builds(), 2);
    assert.deepEqual((await readdir(cache)).sort(), [...components].sort(), 'the dead build\'s folder and lock are gone');
  });
});
