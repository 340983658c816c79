// Run by test-caches.test.ts as a process of its own (`node image-setup-child.js <registry>`): the
// test suite's image set-up against <registry>, with the cache the test names (KUBEFN_TEST_CACHE,
// also KUBEFN_HOME/cache): the function base and NATS image the cluster install pushes, a fixture
// function on that base, twice at once, beside `fn platform-image` (the platform image on the
// host base, as fn install builds it). Prints the manifest digest of each image, one JSON line.

import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { parseReference, RegistryClient } from '@kubefn/builder';
import { platformImages } from '../support/platform-install.js';
import { fnBin } from '../support/platform-process.js';
import { buildAndPush, fixturesDir } from '../support/podman.js';

const registry = process.argv[2];
if (!registry) throw new Error('usage: node image-setup-child.js <registry host:port>');
const client = new RegistryClient();
const digest = async (ref: string): Promise<string> => (await client.getImageConfig(parseReference(ref))).manifestDescriptor.digest;

async function setUp(): Promise<Record<string, string>> {
  const [base, nats] = await platformImages(client, registry!);
  const hello = await buildAndPush(client, { dir: path.join(fixturesDir, 'hello'), name: 'hello', base, registry: registry! });
  return { base: await digest(base), nats: await digest(nats), hello: await digest(hello.ref) };
}

async function platformImage(): Promise<string> {
  const { stdout } = await promisify(execFile)(process.execPath, [fnBin, 'platform-image', '--registry', registry!], { maxBuffer: 16 * 1024 * 1024 });
  return digest(stdout.trim().split('\n')[0]!);
}

const [first, second, platform] = await Promise.all([setUp(), setUp(), platformImage()]);
console.log(JSON.stringify({ first, second, platform }));
