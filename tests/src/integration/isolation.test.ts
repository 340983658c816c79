// A hostile function under `fn up` (process driver, run as root) tries to take over the
// platform: read the token, the saved state, the gateway's environment through
// /proc/<ppid>/environ, and another function's environment and files. Each function runs as a
// user of its own in a private directory, from a clean environment, so every attempt fails.
// Run as another user, `fn up` says that it does not isolate functions.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { fnBin, newHome, startPlatform, type RunningPlatform } from '../support/platform-process.js';
import { fixturesDir } from '../support/podman.js';

const exec = promisify(execFile);
const timeout = 180_000;
const isRoot = process.getuid?.() === 0;

const victim = `import { readFileSync } from 'node:fs';
import path from 'node:path';
export default () => ({ uid: process.getuid(), canary: process.env.VICTIM_CANARY, template: readFileSync(path.join(__dirname, 'template.txt'), 'utf8') });
`;

describe('functions under fn up as root cannot reach the platform or each other', { skip: isRoot ? false : 'needs root: only root can run functions as users of their own' }, () => {
  let platform: RunningPlatform;
  let env: NodeJS.ProcessEnv;
  let home: string;
  let root: string;

  before(async () => {
    home = await newHome();
    platform = await startPlatform(home, { env: { PLATFORM_CANARY: 'gateway-environment-value' } });
    env = { ...process.env, KUBEFN_HOME: home, KUBEFN_GATEWAY: platform.url };
    root = await mkdtemp(path.join(tmpdir(), 'kubefn-isolation-'));
  });
  after(async () => {
    await platform?.stop();
  });

  const deploy = async (dir: string) => exec(process.execPath, [fnBin, 'deploy', dir, '--timeout', '60s'], { env, timeout: 120_000 });
  const write = async (name: string, files: Record<string, string>, yaml: string[]) => {
    const dir = path.join(root, name);
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'fn.yaml'), [`name: ${name}`, 'handler: handler.js', ...yaml, ''].join('\n'));
    for (const [file, text] of Object.entries(files)) await writeFile(path.join(dir, file), text);
    return dir;
  };
  const call = async (name: string, query = '') => {
    const res = await fetch(`${platform.url}/function/${name}${query}`, { signal: AbortSignal.timeout(60_000) });
    assert.equal(res.status, 200, await res.clone().text());
    return (await res.json()) as Record<string, unknown>;
  };

  it('a hostile function reads neither the token, the state, the gateway environment nor another function', { timeout }, async () => {
    assert.ok(platform.output.some((l) => /"isolation":"users"/.test(l)), `fn up said it isolates functions: ${platform.output.join('\n')}`);
    await deploy(await write('victim', { 'handler.js': victim, 'template.txt': 'hello from a file next to the handler' }, ['env:', '  VICTIM_CANARY: victim-environment-value', 'scale:', '  min: 1']));
    const hostile = path.join(root, 'hostile');
    await cp(path.join(fixturesDir, 'hostile'), hostile, { recursive: true });
    await deploy(hostile);

    const v = await call('victim');
    // The victim itself works as before: its env, and files read next to its code.
    assert.equal(v.canary, 'victim-environment-value');
    assert.equal(v.template, 'hello from a file next to the handler');

    const h = await call('hostile', `?home=${encodeURIComponent(home)}`);
    assert.notEqual(h.uid, 0, 'the function does not run as root');
    assert.notEqual(h.uid, v.uid, 'each function has a user of its own');
    assert.deepEqual(h.token, { error: 'EACCES' }, 'the token');
    assert.deepEqual(h.state, { error: 'EACCES' }, 'the saved specs');
    assert.deepEqual(h.parentEnv, { error: 'EACCES' }, "fn up's environment through /proc/<ppid>/environ");
    assert.deepEqual(h.victimFiles, { error: 'EACCES' }, "the other function's private directory");
    assert.deepEqual(h.canaries, [], 'no environment of the platform or the other function is readable anywhere in /proc');
    // A clean environment: its spec's env and the runtime's variables, nothing of fn up's.
    const allowed = /^(PATH|HOME|TMPDIR|PORT|ADMIN_PORT|KUBEFN_[A-Z_]+)$/;
    assert.deepEqual((h.env as string[]).filter((k) => !allowed.test(k)), [], 'environment variables from outside the spec');
    assert.ok(!(h.env as string[]).includes('PLATFORM_CANARY'));

    // With no token, the management API stays shut.
    const list = await fetch(`${platform.url}/system/functions`);
    assert.equal(list.status, 401);
  });
});

describe('fn up as another user', () => {
  it('says at start that the process driver does not isolate functions, and names --driver podman', { timeout }, async () => {
    const home = await newHome();
    // --no-isolation stands in for a user who is not root: the warning is the same.
    const platform = await startPlatform(home, { args: isRoot ? ['--no-isolation'] : [] });
    try {
      const warning = platform.output.find((l) => /does not isolate functions/.test(l));
      assert.ok(warning, `no isolation warning in: ${platform.output.join('\n')}`);
      assert.match(warning, /--driver podman/);
    } finally {
      await platform.stop();
    }
  });
});
