// `fn up --driver podman` end to end: the real platform process, the CLI binary deploying through
// the build service (no registry) and through a registry, containers answering through the
// gateway, and hostile source archives refused by the running build service.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import path from 'node:path';
import { startRegistry, tarOf, type TestRegistry } from '@kubefn/builder/testing';
import { Podman, podmanLabels } from '@kubefn/platform';
import { waitFor } from '@kubefn/platform/testing';
import { Api } from '../support/api.js';
import { fnBin, newHome, startPlatform, type RunningPlatform } from '../support/platform-process.js';
import { examplesDir, fixturesDir, podmanTestOptions } from '../support/podman.js';

const exec = promisify(execFile);
const timeout = 600_000;

describe('fn up --driver podman', () => {
  let platform: RunningPlatform;
  let api: Api;
  let env: Record<string, string>;
  let registry: TestRegistry;

  before(async () => {
    env = (await podmanTestOptions()).env;
    registry = await startRegistry();
    // The canary: a variable of the platform's environment no container may see.
    platform = await startPlatform(await newHome(), { args: ['--driver', 'podman'], env: { ...env, PLATFORM_CANARY: 'gateway-environment-value' }, timeoutMs: 120_000 });
    api = new Api(platform.url, platform.token);
  });

  after(async () => {
    await platform?.stop();
    await registry?.close();
  });

  async function fn(...args: string[]): Promise<string> {
    const { stdout } = await exec(process.execPath, [fnBin, '--gateway', platform.url, '--token', platform.token, ...args], {
      env: { ...process.env, ...env, KUBEFN_HOME: platform.home },
      timeout,
    });
    return stdout;
  }

  it('reports the podman driver and its build service in /system/info', async () => {
    const info = await api.client.info();
    assert.equal(info.kubefn?.driver, 'podman');
    assert.equal(info.kubefn?.needsImage, true);
    assert.equal(info.kubefn?.builds, true);
  });

  it('fn deploy sends the source to the build service; the container answers through the gateway', { timeout }, async () => {
    const out = JSON.parse(await fn('deploy', path.join(examplesDir, 'hello'), '--json')) as { mode: string; image: string };
    assert.equal(out.mode, 'remote');
    assert.match(out.image, /^localhost\/kubefn\/hello:[0-9a-f]{20}$/);
    const res = await fetch(`${platform.url}/function/hello?name=Podman`);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'Hello, Podman!\n');
    // The replica's container: a new one of the image (labelled with its function), or a warm one
    // from the pool (a container of the pool image, its /app the function's).
    const logs = await fn('logs', 'hello', '--tail', '50');
    assert.match(logs, /ready at http:\/\/127\.0\.0\.1:\d+/);
    const container = /starting replica hello-\d+ \(container ([\w-]+)(, a warm container from the pool)?\)/.exec(logs);
    assert.ok(container, logs);
    const podman = new Podman({ env });
    const image = (await podman.check(['ps', '--filter', `name=^${container[1]}$`, '--format', '{{.Image}}'])).trim();
    if (container[2]) {
      assert.match(image, /^localhost\/kubefn\/warm-pool:[0-9a-f]{20}$/);
    } else {
      const running = (await podman.check(['ps', '--filter', `label=${podmanLabels.function}=hello`, '--format', '{{.Image}}'])).trim().split('\n');
      assert.ok(running.includes(out.image), `a container of ${out.image} runs (saw ${running.join(', ')})`);
    }
  });

  it('runs a CommonJS function that reads files next to itself and its assets from /app in the container', { timeout }, async () => {
    // A copy, so the build output lands outside the repository's fixtures.
    const dir = path.join(await mkdtemp(path.join(tmpdir(), 'kubefn-lambda-')), 'lambda-cjs');
    await cp(path.join(fixturesDir, 'lambda-cjs'), dir, { recursive: true });
    const out = JSON.parse(await fn('deploy', dir, '--json')) as { mode: string };
    assert.equal(out.mode, 'remote');
    const page = await fetch(`${platform.url}/function/lambda-cjs?name=Ada`);
    assert.equal(await page.text(), '<h1>Hello, Ada!</h1>\nfooter from src\ndir=src\ntally=6\n');
    const data = await fetch(`${platform.url}/function/lambda-cjs?file=words.txt`);
    assert.equal(await data.text(), 'alpha beta\n', 'data/ shipped through assets');
    await fn('delete', 'lambda-cjs');
  });

  it('a hostile function in its container reaches no token, no state and nothing of the host environment', { timeout }, async () => {
    const dir = path.join(await mkdtemp(path.join(tmpdir(), 'kubefn-hostile-')), 'hostile');
    await cp(path.join(fixturesDir, 'hostile'), dir, { recursive: true });
    await fn('deploy', dir, '--json');
    const res = await fetch(`${platform.url}/function/hostile?home=${encodeURIComponent(platform.home)}`);
    assert.equal(res.status, 200);
    const h = (await res.json()) as Record<string, unknown>;
    // The state directory is not in the container at all.
    assert.deepEqual(h.token, { error: 'ENOENT' }, 'the token');
    assert.deepEqual(h.state, { error: 'ENOENT' }, 'the saved specs');
    assert.ok((h.parentEnv as { error?: string }).error, `the parent's environment: ${JSON.stringify(h.parentEnv)}`);
    assert.deepEqual(h.canaries, [], 'no environment of the platform is readable anywhere in /proc');
    // What the image and podman set, the spec's env and the runtime's variables; nothing of fn up's own.
    const own = new Set(['PATH', 'HOME', 'HOSTNAME', 'TERM', 'container']);
    const leaked = (h.env as string[]).filter((k) => !own.has(k) && !/^(PORT|ADMIN_PORT|KUBEFN_[A-Z_]+)$/.test(k) && k in process.env);
    assert.deepEqual(leaked, [], 'variables of the host environment inside the container');
    await fn('delete', 'hostile');
  });

  it('fn deploy --registry builds and pushes here; the driver pulls the image by digest', { timeout }, async () => {
    const out = JSON.parse(
      await fn('deploy', path.join(examplesDir, 'ts-greeter'), '--registry', registry.host, '--base', 'host', '--json'),
    ) as { mode: string; image: string; bytes: number };
    assert.equal(out.mode, 'image');
    assert.match(out.image, new RegExp(`^${registry.host}/ts-greeter@sha256:[0-9a-f]{64}$`));
    assert.ok(out.bytes > 0);
    const res = await fetch(`${platform.url}/function/ts-greeter?lang=fr&name=Ada`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { language: 'fr', text: 'Bonjour, Ada!' });
    // Unchanged source: nothing pushed, same image.
    const again = JSON.parse(await fn('deploy', path.join(examplesDir, 'ts-greeter'), '--registry', registry.host, '--base', 'host', '--json')) as {
      image: string;
      bytes: number;
    };
    assert.equal(again.image, out.image);
    assert.equal(again.bytes, 0);
  });

  it('the build service refuses a hostile archive with a 4xx and builds nothing', { timeout }, async () => {
    const archive = await tarOf([
      { name: 'handler.js', body: 'export default () => "x"' },
      { name: '../../escape.js', body: 'boom' },
    ]);
    const res = await api.call('POST', '/system/builds?name=evil&handler=handler.js', undefined, archive);
    assert.equal(res.status, 400);
    const body = (await res.json()) as { code: string; message: string };
    assert.equal(body.code, 'BAD_REQUEST');
    assert.match(body.message, /escape\.js/);
    await waitFor(async () => (await api.call('GET', '/system/function/evil')).status === 404, { what: 'no function "evil"' });
  });
});
