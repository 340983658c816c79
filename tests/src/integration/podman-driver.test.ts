// The podman driver against real podman and a real registry: the shared conformance suite, plus
// what only this driver does (pulls, limits, published ports, leftover containers).

import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FileSecretStore, isKubefnError, parseFunctionSpec, Podman, PodmanDriver, podmanLabels, type FunctionSpecInput } from '@kubefn/platform';
import { driverConformance, expectCode, waitFor } from '@kubefn/platform/testing';
import { fixtureImages, podmanTestOptions, type FixtureImages } from '../support/podman.js';

const waitTimeoutMs = 120_000;
const timeout = 600_000;

driverConformance(
  'podman',
  async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'kubefn-podman-conformance-'));
    const images = await fixtureImages();
    const driver = await PodmanDriver.open({ ...(await podmanTestOptions()), owner: `conformance-${process.pid}`, stateDir: path.join(dir, 'state') });
    return {
      driver,
      image: (fixture) => images.image(fixture),
      cleanup: async () => {
        await driver.close();
        await images.registry.close();
        await rm(dir, { recursive: true, force: true });
      },
    };
  },
  { waitTimeoutMs, testTimeoutMs: timeout },
);

describe('podman driver', () => {
  let images: FixtureImages;
  let podman: Podman;
  const drivers: PodmanDriver[] = [];

  before(async () => {
    images = await fixtureImages();
    podman = new Podman(await podmanTestOptions());
  });

  after(async () => {
    for (const d of drivers) await d.close();
    await images?.registry.close();
  });

  async function newDriver(owner: string): Promise<PodmanDriver> {
    const driver = await PodmanDriver.open({ ...(await podmanTestOptions()), owner });
    drivers.push(driver);
    return driver;
  }

  async function spec(input: FunctionSpecInput & { fixture?: string }) {
    const { fixture = 'hello', ...rest } = input;
    return parseFunctionSpec({ ...rest, image: await images.image(fixture) });
  }

  it('runs replicas as containers with the spec resources as limits, labelled with function and replica', { timeout }, async () => {
    const owner = `limits-${process.pid}`;
    const driver = await newDriver(owner);
    await driver.deploy(await spec({ name: 'limited', resources: { memory: '96Mi', cpu: '500m' }, env: { GREETING: 'boxed' } }));
    const [endpoint] = await waitFor(() => (driver.endpoints('limited').current().length === 1 ? driver.endpoints('limited').current() : false), {
      timeoutMs: waitTimeoutMs,
      what: 'a ready replica',
    });
    const res = await fetch(endpoint!.url);
    assert.equal(res.status, 200);
    assert.match(await res.text(), /greeting=boxed/);

    const ids = (await podman.check(['ps', '--quiet', '--filter', `label=${podmanLabels.owner}=${owner}`])).trim().split('\n');
    assert.equal(ids.length, 1);
    const [inspect] = JSON.parse(await podman.check(['inspect', ids[0]!])) as {
      HostConfig: { Memory: number; NanoCpus: number };
      Config: { Labels: Record<string, string>; User: string };
    }[];
    assert.equal(inspect!.HostConfig.Memory, 96 * 1024 * 1024);
    assert.equal(inspect!.HostConfig.NanoCpus, 500_000_000);
    assert.equal(inspect!.Config.Labels[podmanLabels.function], 'limited');
    assert.equal(inspect!.Config.Labels[podmanLabels.replica], endpoint!.id);
    assert.equal(inspect!.Config.User, '65534:65534', 'replicas do not run as root');
    await driver.remove('limited');
    const left = (await podman.check(['ps', '--all', '--quiet', '--filter', `label=${podmanLabels.owner}=${owner}`])).trim();
    assert.equal(left, '', 'remove() leaves no container behind');
  });

  it('a replica over its memory limit is OOM-killed, reported as OUT_OF_MEMORY and replaced, or deploy warns that podman cannot limit memory', { timeout }, async () => {
    const driver = await newDriver(`oom-${process.pid}`);
    const status = await driver.deploy(await spec({ name: 'hog', fixture: 'memory-hog', resources: { memory: '128Mi' }, scale: { initial: 1, max: 1 } }));
    const [endpoint] = await waitFor(() => (driver.endpoints('hog').current().length === 1 ? driver.endpoints('hog').current() : false), {
      timeoutMs: waitTimeoutMs,
      what: 'a ready replica',
    });
    const warned = status.warnings?.some((w) => w.startsWith('resources.memory 128Mi is not enforced'));
    // Buffers, outside V8's heap: only the container's memory cgroup stops them.
    const answer = await fetch(`${endpoint!.url}/?kind=buffer&mib=1024`, { signal: AbortSignal.timeout(waitTimeoutMs) }).then(
      (res) => res.text(),
      () => undefined,
    );
    if (warned) {
      assert.equal(answer, 'holding 1024 MiB in buffer\n', 'podman said it cannot limit memory here, and it did not');
      return;
    }
    assert.equal(answer, undefined, `the replica held 1 GiB under a 128Mi limit: ${answer}`);
    await waitFor(async () => (await driver.get('hog')).lastError?.code === 'OUT_OF_MEMORY', { what: 'OUT_OF_MEMORY in status', timeoutMs: waitTimeoutMs });
    const message = (await driver.get('hog')).lastError!.message;
    // runc on this kind of machine leaves State.OOMKilled false: the message then says "most likely".
    assert.ok(
      message === `replica ${endpoint!.id} reached its 128Mi memory limit; killed by the kernel (OOM)` ||
        message === `replica ${endpoint!.id} was killed (SIGKILL, exit 137) under its 128Mi memory limit, most likely by the kernel's OOM killer (podman did not confirm it)`,
      message,
    );
    const logged: string[] = [];
    for await (const line of driver.logs('hog', {}, AbortSignal.timeout(waitTimeoutMs))) if (line.stream === 'system' && line.text.includes(message)) logged.push(line.text);
    assert.equal(logged.length, 1, 'one system line in the logs says why');
    await waitFor(() => driver.endpoints('hog').current().some((e) => e.id !== endpoint!.id), { what: 'a replacement replica', timeoutMs: waitTimeoutMs });
    await driver.remove('hog');
  });

  it('refuses an image it cannot pull at deploy, with podman\'s reason', { timeout }, async () => {
    const driver = await newDriver(`pull-${process.pid}`);
    const missing = `${images.registry.host}/kubefn-test/nothing-here:1`;
    await expectCode(driver.deploy(parseFunctionSpec({ name: 'ghost', image: missing })), 'BAD_REQUEST');
    await assert.rejects(driver.get('ghost'), /not found/);
  });

  it('mounts the secrets a function lists read-only at /var/openfaas/secrets, a copy per replica removed with it', { timeout }, async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'kubefn-podman-secrets-'));
    const stateDir = path.join(dir, 'state');
    const store = new FileSecretStore(stateDir);
    const owner = `secrets-${process.pid}`;
    const driver = await PodmanDriver.open({ ...(await podmanTestOptions()), owner, stateDir, secrets: store });
    drivers.push(driver);
    const input = { name: 'reads-secret', fixture: 'secrets', secrets: ['db-password', 'tls-key'], secretEnv: { DB_PASSWORD: 'db-password' } };
    await assert.rejects(driver.deploy(await spec(input)), (e) => isKubefnError(e, 'BAD_REQUEST') && /needs secrets "db-password", "tls-key", which do not exist/.test(e.message));

    await store.create('db-password', Buffer.from('hunter2'));
    await store.create('tls-key', Buffer.from('-----BEGIN KEY-----'));
    await driver.deploy(await spec(input));
    const [endpoint] = await waitFor(() => (driver.endpoints('reads-secret').current().length === 1 ? driver.endpoints('reads-secret').current() : false), {
      timeoutMs: waitTimeoutMs,
      what: 'a ready replica',
    });
    const answer = (await (await fetch(endpoint!.url)).json()) as { dir: string; files: Record<string, string>; env: string; writable: boolean };
    assert.deepEqual(answer, {
      dir: '/var/openfaas/secrets',
      files: { 'db-password': 'hunter2', 'tls-key': '-----BEGIN KEY-----' },
      env: 'hunter2',
      writable: false,
    });

    const [id] = (await podman.check(['ps', '--quiet', '--filter', `label=${podmanLabels.owner}=${owner}`])).trim().split('\n');
    const [inspect] = JSON.parse(await podman.check(['inspect', id!])) as { Mounts: { Source: string; Destination: string; RW: boolean }[]; Config: { Env: string[] } }[];
    const mount = inspect!.Mounts.find((m) => m.Destination === '/var/openfaas/secrets');
    assert.ok(mount, JSON.stringify(inspect!.Mounts));
    assert.equal(mount.RW, false);
    assert.equal(path.dirname(mount.Source), path.join(stateDir, 'secret-files'));
    assert.equal((await stat(path.dirname(mount.Source))).mode & 0o777, 0o700);
    // Values reach podman through its environment, never its argv; the inspect shows the env var the spec asked for.
    assert.ok(inspect!.Config.Env.includes('DB_PASSWORD=hunter2'));

    await driver.remove('reads-secret');
    await waitFor(async () => (await readdir(path.join(stateDir, 'secret-files'))).length === 0, { timeoutMs: waitTimeoutMs, what: 'the replica\'s secret files removed' });
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses bundles, secrets (without a secret store) and GPUs with NOT_SUPPORTED', { timeout }, async () => {
    const driver = await newDriver(`refuse-${process.pid}`);
    await expectCode(driver.deploy(parseFunctionSpec({ name: 'b', image: `bundle:sha256:${'a'.repeat(64)}` })), 'NOT_SUPPORTED');
    await expectCode(driver.deploy(await spec({ name: 's', secrets: ['db'] })), 'NOT_SUPPORTED');
    await expectCode(driver.deploy(await spec({ name: 'g', resources: { gpu: 1 } })), 'NOT_SUPPORTED');
  });

  it('removes the containers a previous driver of the same owner left behind', { timeout }, async () => {
    const owner = `leftover-${process.pid}`;
    const image = await images.image('hello');
    await podman.check(['pull', '--quiet', '--tls-verify=false', image]);
    // A container as a crashed driver would leave it: running, labelled with the owner.
    await podman.check(['run', '--detach', '--pull', 'never', '--label', `${podmanLabels.owner}=${owner}`, '--env', 'PORT=0', '--env', 'ADMIN_PORT=0', image]);
    const before = (await podman.check(['ps', '--quiet', '--filter', `label=${podmanLabels.owner}=${owner}`])).trim();
    assert.notEqual(before, '');
    await newDriver(owner);
    const after = (await podman.check(['ps', '--all', '--quiet', '--filter', `label=${podmanLabels.owner}=${owner}`])).trim();
    assert.equal(after, '');
  });
});
