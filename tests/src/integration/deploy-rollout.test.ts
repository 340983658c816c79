// `fn deploy` returns when the new version is what answers, through the real fn binary and
// `fn up` (process driver): a redeploy at zero, a rolling update under calls, and handlers that
// cannot load, which fail the deploy with their message and source line.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { waitFor } from '@kubefn/platform/testing';
import { fnBin, newHome, startPlatform, type RunningPlatform } from '../support/platform-process.js';

const exec = promisify(execFile);
const timeout = 180_000;

describe('fn deploy waits for the new version', () => {
  let platform: RunningPlatform;
  let env: NodeJS.ProcessEnv;
  let root: string;

  before(async () => {
    const home = await newHome();
    platform = await startPlatform(home);
    env = { ...process.env, KUBEFN_HOME: home, KUBEFN_GATEWAY: platform.url };
    root = await mkdtemp(path.join(tmpdir(), 'kubefn-rollout-'));
  });
  after(async () => {
    await platform?.stop();
  });

  const fn = async (...args: string[]) => {
    try {
      const r = await exec(process.execPath, [fnBin, ...args], { env, timeout: 150_000 });
      return { code: 0, stdout: r.stdout, stderr: r.stderr };
    } catch (err) {
      const e = err as { code: number; stdout: string; stderr: string };
      return { code: e.code, stdout: e.stdout, stderr: e.stderr };
    }
  };

  /** Writes a function directory: fn.yaml with `yaml` lines, and handler.js. */
  const writeFunction = async (name: string, handler: string, yaml: string[] = []) => {
    const dir = path.join(root, name);
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'fn.yaml'), [`name: ${name}`, 'handler: handler.js', ...yaml, ''].join('\n'));
    await writeFile(path.join(dir, 'handler.js'), handler);
    return dir;
  };
  const versioned = (v: string) => `export default () => 'version=${v}\\n';\n`;
  const call = async (name: string) => {
    const res = await fetch(`${platform.url}/function/${name}`, { signal: AbortSignal.timeout(60_000) });
    return { status: res.status, body: await res.text() };
  };
  const replicas = async (name: string) =>
    (JSON.parse((await fn('describe', name, '--json')).stdout) as { replicas: number; availableReplicas: number });

  it('a redeploy of a function at zero returns once applied, and the next call gets the new version', { timeout }, async () => {
    const dir = await writeFunction('atzero', versioned('v1'), ['scale:', '  min: 0', '  initial: 1']);
    const first = await fn('deploy', dir, '--timeout', '60s');
    assert.equal(first.code, 0, first.stderr);
    // No call to v1: with no traffic the autoscaler agrees with the scale to zero.
    assert.equal((await fn('scale', 'atzero', '0')).code, 0);
    await waitFor(async () => (await replicas('atzero')).availableReplicas === 0, { what: 'atzero at zero', timeoutMs: 60_000 });

    await writeFile(path.join(dir, 'handler.js'), versioned('v2'));
    // Before, this waited for a replica nobody starts and failed after --timeout.
    const again = await fn('deploy', dir, '--timeout', '60s', '--json');
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(
      [(JSON.parse(again.stdout) as { replicas: number }).replicas, (JSON.parse(again.stdout) as { availableReplicas: number }).availableReplicas],
      [0, 0],
      'returned at zero',
    );
    assert.equal((await call('atzero')).body, 'version=v2\n');
  });

  it('after a rolling update under continuous calls returns, 100 calls in a row get the new version', { timeout }, async () => {
    const dir = await writeFunction('rolling', versioned('v1'), ['scale:', '  min: 1', '  initial: 1']);
    assert.equal((await fn('deploy', dir, '--timeout', '60s')).code, 0);
    assert.equal((await call('rolling')).body, 'version=v1\n');

    let stop = false;
    const statuses = new Map<number, number>();
    const background = (async () => {
      while (!stop) {
        const r = await call('rolling').catch(() => ({ status: 0, body: '' }));
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
      }
    })();
    try {
      await writeFile(path.join(dir, 'handler.js'), versioned('v2'));
      const deployed = await fn('deploy', dir, '--timeout', '60s');
      assert.equal(deployed.code, 0, deployed.stderr);
      const bodies: string[] = [];
      for (let i = 0; i < 100; i++) bodies.push((await call('rolling')).body);
      assert.deepEqual(bodies.filter((b) => b !== 'version=v2\n'), [], 'every call after the deploy returned got v2');
    } finally {
      stop = true;
      await background;
    }
    assert.deepEqual([...statuses.keys()], [200], `the calls during the update all answered 200: ${JSON.stringify([...statuses])}`);
  });

  it('rolling updates under mixed GET/POST load on keep-alive connections lose no call', { timeout }, async () => {
    // Echoes the version and what it read, so a call answered by the wrong replica or with a lost body shows.
    const echo = (v: string) =>
      `export default async (req) => ({ version: '${v}', method: req.method, bytes: req.method === 'POST' ? (await req.text()).length : 0 });\n`;
    const dir = await writeFunction('lossless', echo('v1'), ['scale:', '  min: 2', '  initial: 2']);
    assert.equal((await fn('deploy', dir, '--timeout', '60s')).code, 0);

    const body = 'x'.repeat(16 * 1024);
    const failures: string[] = [];
    let calls = 0;
    let stop = false;
    const worker = async (i: number) => {
      for (let n = 0; !stop; n++) {
        const post = (i + n) % 2 === 0;
        calls++;
        try {
          const res = await fetch(`${platform.url}/function/lossless`, {
            method: post ? 'POST' : 'GET',
            ...(post ? { body, headers: { 'content-type': 'text/plain' } } : {}),
            signal: AbortSignal.timeout(60_000),
          });
          const text = await res.text();
          if (res.status !== 200) failures.push(`${post ? 'POST' : 'GET'} ${res.status} ${text.slice(0, 200)}`);
          else if ((JSON.parse(text) as { bytes: number }).bytes !== (post ? body.length : 0)) failures.push(`wrong body: ${text}`);
        } catch (err) {
          failures.push(`${post ? 'POST' : 'GET'} ${(err as Error).message}`);
        }
      }
    };
    const workers = Array.from({ length: 8 }, (_, i) => worker(i));
    try {
      for (const v of ['v2', 'v3', 'v4']) {
        await writeFile(path.join(dir, 'handler.js'), echo(v));
        const deployed = await fn('deploy', dir, '--timeout', '60s');
        assert.equal(deployed.code, 0, deployed.stderr);
      }
    } finally {
      stop = true;
      await Promise.all(workers);
    }
    assert.ok(calls > 100, `only ${calls} calls were made`);
    assert.deepEqual(failures, [], `${failures.length} of ${calls} calls failed during three rolling updates`);
  });

  const broken: [string, string, RegExp, RegExp][] = [
    [
      'loadthrows',
      "// reads its settings at load\nconst region = process.env.REGION;\nif (!region) throw new Error('REGION is not set');\nexport default () => 'never';\n",
      /REGION is not set/,
      /handler\.js:3:\d+/,
    ],
    ['noexport', "export function handler() { return 'wrong name'; }\n", /it has no default export/, /handler\.js/],
    [
      'initthrows',
      "export async function init() {\n  await Promise.resolve();\n  throw new Error('database unreachable');\n}\nexport default () => 'never';\n",
      /init\(\) threw: database unreachable/,
      /handler\.js:3:\d+/,
    ],
  ];
  for (const [name, source, message, location] of broken) {
    it(`a handler that cannot load (${name}) fails fn deploy with its message and line, not a timeout`, { timeout }, async () => {
      const dir = await writeFunction(name, source, ['scale:', '  initial: 1']);
      // A long --timeout: the deploy must fail on the load error, long before it.
      const deployed = await fn('deploy', dir, '--timeout', '10m');
      assert.equal(deployed.code, 1, deployed.stdout);
      assert.match(deployed.stderr, /cannot load its handler/);
      assert.match(deployed.stderr, message);
      assert.match(deployed.stderr, location);
      assert.match(deployed.stderr, new RegExp(`hint: .*fn logs ${name}`));
      assert.doesNotMatch(deployed.stderr, /not ready after/);
      const logs = await fn('logs', name, '--tail', '200');
      assert.match(logs.stdout, message, 'the reason is in fn logs too');
    });
  }
});
