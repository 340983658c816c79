// What tests need to run podman here and to build images for it: podman's configuration for this
// kind of machine, a base image pushed to a local registry, fixture images built on it.

import { mkdir, writeFile } from 'node:fs/promises';
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
  type PushReport,
} from '@kubefn/builder';
import { startRegistry, type TestRegistry } from '@kubefn/builder/testing';
import type { PodmanOptions } from '@kubefn/platform';

export const fixturesDir = fileURLToPath(new URL('../../fixtures/', import.meta.url));
export const examplesDir = fileURLToPath(new URL('../../../examples/', import.meta.url));

/** Shared by every test file and run: the host base takes seconds to build and never changes. */
export const testCacheDir = path.join(tmpdir(), 'kubefn-test-cache');

/**
 * podman settings for a sandboxed machine: runc (crun's cgroup handling is refused) and no
 * default ulimits (setting rlimits is refused). Harmless on a normal machine.
 */
export async function podmanTestOptions(): Promise<Required<Pick<PodmanOptions, 'globalArgs' | 'env'>>> {
  const dir = path.join(tmpdir(), 'kubefn-test-podman');
  await mkdir(dir, { recursive: true });
  const conf = path.join(dir, 'containers.conf');
  await writeFile(conf, '[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\n');
  return { globalArgs: ['--runtime', 'runc'], env: { CONTAINERS_CONF: conf } };
}

/**
 * Pushes the base image made from this machine's node to `registry` as kubefn/node-base and
 * returns its reference: what tests pass as `--base`, standing in for a public Node image.
 */
export async function pushTestBase(client: RegistryClient, registry: string): Promise<string> {
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
