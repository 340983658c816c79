// The process driver: the shared driver conformance suite, plus what only this driver does
// (saved state, start failures, app and bundle images, files next to the bundle, no orphan processes).

import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Readable } from 'node:stream';
import { bundleFunction, packApp, warmRuntimeEntry } from '@kubefn/builder';
import {
  AppStore,
  appImageRef,
  BundleStore,
  bundleImageRef,
  loadFnYaml,
  parseFunctionSpec,
  ProcessDriver,
  type FunctionSpecInput,
  type LogLine,
  type ProcessDriverOptions,
} from '@kubefn/platform';
import { driverConformance, expectCode, waitFor } from '@kubefn/platform/testing';
import { isAlive } from '../support/processes.js';

const fixturesDir = fileURLToPath(new URL('../../fixtures/', import.meta.url));
const waitTimeoutMs = 90_000;
const timeout = 300_000;

/** Bundles fixtures with their files into an app store once each, as `fn deploy` would. */
function fixtureImages(store: AppStore, buildDir: string): (fixture: string) => Promise<string> {
  const built = new Map<string, Promise<string>>();
  return (fixture) => {
    let image = built.get(fixture);
    if (!image) {
      image = (async () => {
        const dir = path.join(fixturesDir, fixture);
        const assets = existsSync(path.join(dir, 'fn.yaml')) ? ((await loadFnYaml(dir)).spec.assets ?? []) : [];
        const bundle = await bundleFunction({ dir, handler: 'handler.js', outDir: path.join(buildDir, fixture), assets });
        const app = await packApp(bundle);
        await store.put(app.digest, Readable.from([app.tar]));
        return appImageRef(app.digest);
      })();
      built.set(fixture, image);
    }
    return image;
  };
}

driverConformance('process', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'kubefn-process-conformance-'));
  const bundles = await BundleStore.open(path.join(dir, 'bundles'));
  const apps = await AppStore.open(path.join(dir, 'apps'));
  const driver = new ProcessDriver({ bundles, apps, stateDir: path.join(dir, 'state') });
  return {
    driver,
    image: fixtureImages(apps, path.join(dir, 'build')),
    cleanup: async () => {
      await driver.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

describe('process driver', () => {
  let dir: string;
  let bundles: BundleStore;
  let apps: AppStore;
  let image: (fixture: string) => Promise<string>;
  const drivers: ProcessDriver[] = [];

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'kubefn-process-driver-'));
    bundles = await BundleStore.open(path.join(dir, 'bundles'));
    apps = await AppStore.open(path.join(dir, 'apps'));
    image = fixtureImages(apps, path.join(dir, 'build'));
  });

  after(async () => {
    await Promise.all(drivers.map((d) => d.close()));
    await rm(dir, { recursive: true, force: true });
  });

  function newDriver(options: Partial<ProcessDriverOptions> = {}): ProcessDriver {
    const driver = new ProcessDriver({ bundles, apps, ...options });
    drivers.push(driver);
    return driver;
  }

  async function spec(fixture: string, input: FunctionSpecInput) {
    return parseFunctionSpec({ ...input, image: await image(fixture) });
  }

  async function history(driver: ProcessDriver, name: string): Promise<LogLine[]> {
    const out: LogLine[] = [];
    for await (const line of driver.logs(name, {}, AbortSignal.timeout(waitTimeoutMs))) out.push(line);
    return out;
  }

  async function answer(url: string): Promise<string> {
    const res = await fetch(url, { signal: AbortSignal.timeout(30_000) });
    return res.text();
  }

  it('brings saved functions back after a restart, and forgets removed ones', { timeout }, async () => {
    const stateDir = path.join(dir, 'state-restart');
    const first = await ProcessDriver.open({ bundles, apps, stateDir });
    drivers.push(first);
    const created = await first.deploy(await spec('hello', { name: 'saved', env: { GREETING: 'saved' }, scale: { initial: 1, max: 3 } }));
    await first.scale('saved', 2);
    await waitFor(() => first.endpoints('saved').current().length === 2, { what: '2 replicas before restart', timeoutMs: waitTimeoutMs });
    await first.close();
    assert.deepEqual(first.endpoints('saved').current(), []);

    const second = new ProcessDriver({ bundles, apps, stateDir });
    drivers.push(second);
    assert.deepEqual(await second.restore(), ['saved']);
    const restored = await second.get('saved');
    assert.equal(restored.replicas, 1, 'a restored function starts at its initial count');
    assert.equal(restored.createdAt, created.createdAt);
    const [endpoint] = await waitFor(
      async () => {
        const list = second.endpoints('saved').current();
        return list.length === 1 && (await answer(list[0]!.url)).includes('greeting=saved') ? list : undefined;
      },
      { what: 'the restored replica answering', timeoutMs: waitTimeoutMs },
    );
    assert.ok(endpoint);

    await second.remove('saved');
    await assert.rejects(stat(path.join(stateDir, 'functions', 'saved.json')), { code: 'ENOENT' });
    await second.close();
    const third = await ProcessDriver.open({ bundles, stateDir });
    drivers.push(third);
    assert.deepEqual(await third.list(), []);
  });

  it('maps a load failure to its source line in a warm runtime from the pool too (its source map read lazily)', { timeout }, async () => {
    const driver = newDriver({ pool: { size: 1, entry: warmRuntimeEntry } });
    await waitFor(() => (driver.poolStats()?.idle ?? 0) >= 1, { what: 'a warm runtime', timeoutMs: waitTimeoutMs });
    await driver.deploy(await spec('broken', { name: 'broken-warm', scale: { initial: 1 } }));
    const status = await waitFor(async () => {
      const s = await driver.get('broken-warm');
      return s.loadError ? s : undefined;
    }, { what: 'the load error', timeoutMs: waitTimeoutMs });
    assert.equal(status.lastError?.code, 'LOAD_FAILED');
    assert.equal(status.loadError?.location, 'handler.js:2:7');
    const lines = await history(driver, 'broken-warm');
    assert.ok(lines.some((l) => l.stream === 'system' && /a warm runtime from the pool/.test(l.text)), 'the first replica came from the pool');
    await driver.remove('broken-warm');
  });

  it('reports a replica that fails at import time instead of waiting for it', { timeout }, async () => {
    const driver = newDriver();
    await driver.deploy(await spec('broken', { name: 'broken', scale: { initial: 1 } }));
    const failures = await waitFor(
      async () => {
        const lines = (await history(driver, 'broken')).filter((l) => l.stream === 'system' && l.text.includes('threw while loading'));
        return lines.length >= 2 ? lines : undefined;
      },
      { what: 'two failed loads in the system log', timeoutMs: waitTimeoutMs },
    );
    assert.match(failures[0]!.text, /broken fixture: failed at import time \(at handler\.js:2:7\)/, 'the reason and the line from the runtime');
    const delays = failures.map((l) => Number(/next start in (\d+) ms/.exec(l.text)?.[1]));
    assert.ok(delays[1]! > delays[0]!, `backoff grows between failures (${delays.join(', ')})`);

    const status = await driver.get('broken');
    assert.equal(status.lastError?.code, 'LOAD_FAILED');
    assert.equal(status.loadError?.location, 'handler.js:2:7');
    assert.equal(status.readyReplicas, 0);
    assert.deepEqual(driver.endpoints('broken').current(), []);
    await driver.remove('broken');
  });

  it('kills a replica that does not report ready within the start timeout', { timeout }, async () => {
    const driver = newDriver({ startTimeoutMs: 1500 });
    await driver.deploy(await spec('hang', { name: 'hang', scale: { initial: 1 } }));
    const line = await waitFor(
      async () => (await history(driver, 'hang')).find((l) => l.stream === 'system' && l.text.includes('failed to start')),
      { what: 'a start timeout in the system log', timeoutMs: waitTimeoutMs },
    );
    assert.match(line.text, /did not report ready within 1500 ms/);
    assert.equal((await driver.get('hang')).lastError?.code, 'START_FAILED');
    assert.deepEqual(driver.endpoints('hang').current(), []);
    await driver.remove('hang');
  });

  it('reports a node binary that cannot be spawned', { timeout }, async () => {
    const driver = newDriver({ nodePath: path.join(dir, 'no-such-node') });
    await driver.deploy(await spec('hello', { name: 'nonode', scale: { initial: 1 } }));
    const status = await waitFor(async () => {
      const s = await driver.get('nonode');
      return s.lastError ? s : undefined;
    }, { what: 'a start failure', timeoutMs: waitTimeoutMs });
    assert.equal(status.lastError?.code, 'START_FAILED');
    assert.match(status.lastError?.message ?? '', /could not be started: .*ENOENT/);
    await driver.remove('nonode');
  });

  it('runs only apps and bundles that are in its stores', { timeout }, async () => {
    const driver = newDriver();
    await expectCode(driver.deploy(parseFunctionSpec({ name: 'oci', image: 'registry.example/hello:1' })), 'NOT_SUPPORTED');
    const missing = bundleImageRef(`sha256:${'0'.repeat(64)}`);
    await expectCode(driver.deploy(parseFunctionSpec({ name: 'missing', image: missing })), 'BAD_REQUEST');
    await expectCode(driver.deploy(parseFunctionSpec({ name: 'missing-app', image: appImageRef(`sha256:${'0'.repeat(64)}`) })), 'BAD_REQUEST');
    await expectCode(driver.deploy(parseFunctionSpec({ name: 'noimage' })), 'BAD_REQUEST');
    await expectCode(driver.deploy(await spec('hello', { name: 'secret', secrets: ['db'] })), 'NOT_SUPPORTED');
    // A bundle image is one module alone; files travel in an app.
    await expectCode(driver.deploy(parseFunctionSpec({ name: 'assets', image: bundleImageRef(`sha256:${'a'.repeat(64)}`), assets: ['public'] })), 'NOT_SUPPORTED');
    await expectCode(Promise.resolve().then(() => parseFunctionSpec({ name: 'escape', assets: ['../secrets'] })), 'INVALID_SPEC');
    assert.deepEqual(await driver.list(), [], 'a rejected deploy creates nothing');
  });

  it('runs a CommonJS function with the files next to its bundle: __dirname, sloppy mode, assets, an .html import', { timeout }, async () => {
    const driver = newDriver();
    // A spec with assets runs: the app carries them.
    await driver.deploy(await spec('lambda-cjs', { name: 'lambda', assets: ['data/'], scale: { initial: 1 } }));
    await driver.deploy(await spec('html-import', { name: 'html', scale: { initial: 1 } }));
    const [endpoint] = await waitFor(() => driver.endpoints('lambda').current().length === 1 && driver.endpoints('lambda').current(), { what: 'lambda ready', timeoutMs: waitTimeoutMs });
    assert.equal(await answer(`${endpoint!.url}/?name=Ada`), '<h1>Hello, Ada!</h1>\nfooter from src\ndir=src\ntally=6\n');
    assert.equal(await answer(`${endpoint!.url}/?file=words.txt`), 'alpha beta\n', 'data/ shipped through assets');
    const [html] = await waitFor(() => driver.endpoints('html').current().length === 1 && driver.endpoints('html').current(), { what: 'html ready', timeoutMs: waitTimeoutMs });
    assert.equal(await answer(html!.url), '<p>imported page</p>\n');
    // The replica runs from the app's unpacked directory under the store.
    const unpacked = await readdir(apps.runDir);
    assert.ok(unpacked.some((d) => existsSync(path.join(apps.runDir, d, 'templates', 'page.html'))), `unpacked: ${unpacked.join(', ')}`);
    await Promise.all([driver.remove('lambda'), driver.remove('html')]);
  });

  it('keeps replicas when a deploy does not change what they run', { timeout }, async () => {
    const driver = newDriver();
    const input: FunctionSpecInput = { name: 'steady', scale: { initial: 1, max: 2 } };
    const first = await driver.deploy(await spec('hello', input));
    await waitFor(() => driver.endpoints('steady').current().length === 1, { what: 'one replica', timeoutMs: waitTimeoutMs });
    const starts = async () => (await history(driver, 'steady')).filter((l) => l.text.startsWith('starting replica')).length;
    assert.equal(await starts(), 1);

    const same = await driver.deploy(await spec('hello', input));
    assert.equal(same.updatedAt, first.updatedAt, 'an identical deploy changes nothing');
    const scaleOnly = await driver.deploy(await spec('hello', { ...input, scale: { initial: 1, max: 3 } }));
    assert.equal(scaleOnly.spec.scale.max, 3);
    // Starting is synchronous inside deploy(), so a restart would already show here.
    assert.equal(await starts(), 1, 'no replica was started for a scale-bounds change');
    await driver.remove('steady');
  });

  it('caps replicas at maxReplicasPerFunction', { timeout }, async () => {
    const driver = newDriver({ maxReplicasPerFunction: 1 });
    await driver.deploy(await spec('hello', { name: 'capped', scale: { initial: 0, max: 10 } }));
    await driver.scale('capped', 5);
    assert.equal((await driver.get('capped')).replicas, 1);
    await driver.remove('capped');
  });

  it('kills its replicas when the process that owns it exits without close()', { timeout }, async () => {
    // A separate node process deploys one replica, prints the replica's pid and exits at once.
    const script = `
      import { AppStore, BundleStore, ProcessDriver, parseFunctionSpec } from '@kubefn/platform';
      const driver = new ProcessDriver({ bundles: await BundleStore.open(process.env.STORE), apps: await AppStore.open(process.env.APPS) });
      await driver.deploy(parseFunctionSpec({ name: 'orphan', image: process.env.IMAGE, scale: { initial: 1 } }));
      await new Promise((resolve) => driver.endpoints('orphan').subscribe((list) => list.length && resolve()));
      for await (const l of driver.logs('orphan', {}, AbortSignal.timeout(10000))) {
        const m = /^starting replica \\S+ \\(pid (\\d+)\\)/.exec(l.text);
        if (m) console.log(m[1]);
      }
      process.exit(0);
    `;
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], {
      cwd: path.dirname(fixturesDir),
      env: { PATH: process.env.PATH ?? '', STORE: bundles.dir, APPS: path.dirname(apps.runDir), IMAGE: await image('hello') },
      timeout: waitTimeoutMs,
    });
    const pid = Number(stdout.trim());
    assert.ok(pid > 0, `the script printed a pid (${stdout})`);
    await waitFor(() => !isAlive(pid), { what: `replica ${pid} to die with its parent`, timeoutMs: waitTimeoutMs });
  });

  it('close() stops every replica, is idempotent, and refuses new work', { timeout }, async () => {
    const driver = newDriver();
    await driver.deploy(await spec('hello', { name: 'closing', scale: { initial: 2, max: 2 } }));
    await waitFor(() => driver.endpoints('closing').current().length === 2, { what: '2 replicas', timeoutMs: waitTimeoutMs });
    const pids = (await history(driver, 'closing'))
      .map((l) => /^starting replica \S+ \(pid (\d+)\)/.exec(l.text)?.[1])
      .filter((p): p is string => p !== undefined)
      .map(Number);
    assert.equal(pids.length, 2);

    await Promise.all([driver.close(), driver.close()]);
    await driver.close();
    for (const pid of pids) assert.equal(isAlive(pid), false, `replica process ${pid} is gone`);
    assert.deepEqual(driver.endpoints('closing').current(), []);
    await expectCode(driver.deploy(await spec('hello', { name: 'late' })), 'SHUTTING_DOWN');
    await expectCode(driver.scale('closing', 1), 'SHUTTING_DOWN');
  });
});

