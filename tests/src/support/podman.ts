// What tests need to run podman here and to build images for it: podman's configuration for this
// kind of machine, a base image pushed to a local registry, fixture images built on it.
//
// Several test processes share the files here at once: each file is written under a name of its
// own and renamed into place (a reader sees the old file or the new one, never half of one), and
// the host base, the one slow build, is built once per process however many callers ask at once.

import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  buildFunctionImage,
  hostBaseName,
  parseReference,
  pushBaseImage,
  pushFunctionImage,
  RegistryClient,
  resolveBase,
  type PushReport,
} from '@kubefn/builder';
import { startRegistry, type TestRegistry } from '@kubefn/builder/testing';
import type { PodmanOptions } from '@kubefn/platform';

export const fixturesDir = fileURLToPath(new URL('../../fixtures/', import.meta.url));
export const examplesDir = fileURLToPath(new URL('../../../examples/', import.meta.url));

/**
 * Shared by every test file and run: the host base takes seconds to build and never changes.
 * KUBEFN_TEST_CACHE puts it elsewhere (the cache tests start from an empty one).
 */
export const testCacheDir = process.env.KUBEFN_TEST_CACHE || path.join(tmpdir(), 'kubefn-test-cache');

/** Host base builds in flight or done in this process, by cache folder. */
const hostBases = new Map<string, Promise<void>>();

/**
 * Makes sure the host base is in `cacheDir`, building it once per process: callers that ask
 * while it builds wait for that build instead of starting their own on the same files.
 */
export function hostBaseCached(cacheDir: string = testCacheDir): Promise<void> {
  let ready = hostBases.get(cacheDir);
  if (!ready) {
    ready = resolveBase(hostBaseName, new RegistryClient(), cacheDir).then(() => undefined);
    // A failed build is not remembered: the next caller tries again.
    ready.catch(() => hostBases.delete(cacheDir));
    hostBases.set(cacheDir, ready);
  }
  return ready;
}

/** Writes `content` to `file` through a uniquely named file renamed into place; nothing when it holds that already. */
export async function writeFileAtomic(file: string, content: string): Promise<void> {
  if ((await readFile(file, 'utf8').catch(() => undefined)) === content) return;
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`;
  try {
    await writeFile(tmp, content);
    await rename(tmp, file);
  } finally {
    await rm(tmp, { force: true });
  }
}

/**
 * podman settings for a sandboxed machine: runc (crun's cgroup handling is refused) and no
 * default ulimits (setting rlimits is refused). Harmless on a normal machine.
 */
export async function podmanTestOptions(): Promise<Required<Pick<PodmanOptions, 'globalArgs' | 'env'>>> {
  // podman in another test process may be reading it right now.
  const conf = path.join(tmpdir(), 'kubefn-test-podman', 'containers.conf');
  await writeFileAtomic(conf, '[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\n');
  return { globalArgs: ['--runtime', 'runc'], env: { CONTAINERS_CONF: conf } };
}

/**
 * Pushes the base image made from this machine's node to `registry` as kubefn/node-base and
 * returns its reference: what tests pass as `--base`, standing in for a public Node image.
 */
export async function pushTestBase(client: RegistryClient, registry: string): Promise<string> {
  await hostBaseCached();
  await pushBaseImage(client, hostBaseName, `${registry}/kubefn/node-base:host`, testCacheDir);
  return `${registry}/kubefn/node-base:host`;
}

/** Builds a function directory into an image on `base` and pushes it to `registry/<repository>`. */
export async function buildAndPush(
  client: RegistryClient,
  options: { dir: string; handler?: string; name: string; base: string; registry: string; repository?: string; tag?: string },
): Promise<PushReport> {
  const fi = await buildFunctionImage({
    dir: options.dir,
    handler: options.handler ?? 'handler.js',
    name: options.name,
    base: options.base,
    client,
    cacheDir: testCacheDir,
  });
  const target = parseReference(`${options.registry}/${options.repository ?? `kubefn-test/${options.name}`}:${options.tag ?? 'latest'}`);
  return pushFunctionImage(client, fi, target);
}

export interface FixtureImages {
  registry: TestRegistry;
  client: RegistryClient;
  /** The image of tests/fixtures/<fixture>, built on the test base and pushed once per source. */
  image(fixture: string): Promise<string>;
}

/** A real registry holding the test base, and the fixture functions built into images on demand. */
export async function fixtureImages(): Promise<FixtureImages> {
  const registry = await startRegistry();
  const client = new RegistryClient();
  const base = await pushTestBase(client, registry.host);
  const built = new Map<string, Promise<string>>();
  return {
    registry,
    client,
    image(fixture) {
      let ref = built.get(fixture);
      if (!ref) {
        ref = buildAndPush(client, { dir: path.join(fixturesDir, fixture), name: fixture, base, registry: registry.host }).then((r) => r.ref);
        built.set(fixture, ref);
      }
      return ref;
    },
  };
}
