// The `fn` binary end to end against the real embedded platform: deploy, invoke, list,
// describe, scale, logs, delete, and a bad fn.yaml.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { waitFor } from '@kubefn/platform/testing';
import { fnBin, newHome, repoRoot, startPlatform, type RunningPlatform } from '../support/platform-process.js';

const exec = promisify(execFile);

describe('fn CLI against fn up', () => {
  let platform: RunningPlatform;
  let env: NodeJS.ProcessEnv;
  let fnDir: string;

  before(async () => {
    const home = await newHome();
    platform = await startPlatform(home);
    env = { ...process.env, KUBEFN_HOME: home, KUBEFN_GATEWAY: platform.url };
    // A copy, so the build output lands outside the repository's examples.
    fnDir = path.join(await mkdtemp(path.join(tmpdir(), 'kubefn-fn-')), 'hello');
    await cp(path.join(repoRoot, 'examples', 'hello'), fnDir, { recursive: true });
  });
  after(async () => {
    await platform?.stop();
  });

  const fn = async (...args: string[]) => {
    try {
      const r = await exec(process.execPath, [fnBin, ...args], { env, cwd: fnDir, timeout: 120_000 });
      return { code: 0, stdout: r.stdout, stderr: r.stderr };
    } catch (err) {
      const e = err as { code: number; stdout: string; stderr: string };
      return { code: e.code, stdout: e.stdout, stderr: e.stderr };
    }
  };

  it('deploys, invokes, lists, describes, scales, reads logs and deletes', async () => {
    const deployed = await fn('deploy', fnDir);
    assert.equal(deployed.code, 0, deployed.stderr);
    assert.equal(deployed.stdout, `${platform.url}/function/hello\n`);

    const invoked = await fn('invoke', 'hello', '--query', 'name=Ada');
    assert.equal(invoked.code, 0, invoked.stderr);
    assert.equal(invoked.stdout, 'Hello, Ada!\n');

    const list = JSON.parse((await fn('list', '--json')).stdout) as { name: string; invocationCount: number }[];
    assert.equal(list.find((f) => f.name === 'hello')?.invocationCount, 1);

    const described = JSON.parse((await fn('describe', 'hello', '--json')).stdout) as { spec: { handler: string } };
    assert.equal(described.spec.handler, 'handler.js');
    const describedText = await fn('describe', 'hello');
    assert.match(describedText.stdout, /^Target:\s+100 \(default\) in-flight per replica at 70% \(default\) utilization/m);
    assert.match(describedText.stdout, /^Cold start:\s+from the warm pool \(no process start\)$/m);

    const scaled = await fn('scale', 'hello', '2');
    assert.equal(scaled.code, 0, scaled.stderr);
    assert.match(scaled.stdout, /autoscaler moves the count with traffic between 0 and 10: to hold 2, run `fn scale hello --min 2 --max 2`/);
    const pinned = await fn('scale', 'hello', '--min', '2', '--max', '2');
    assert.equal(pinned.code, 0, pinned.stderr);
    assert.match(pinned.stdout, /now scales between 2 and 2 replicas/);
    const scale = (JSON.parse((await fn('describe', 'hello', '--json')).stdout) as { spec: { scale: { min: number; max: number } } }).spec.scale;
    assert.deepEqual([scale.min, scale.max], [2, 2]);
    const clamped = await fn('scale', 'hello', '1000');
    assert.equal(clamped.code, 0, clamped.stderr);
    assert.match(clamped.stdout, /scaling "hello" to 2 replicas, not 1000: its scale\.max is 2/);
    const logs = await fn('logs', 'hello', '--tail', '100');
    assert.equal(logs.code, 0);
    assert.match(logs.stdout, /ready/);

    // Redeploying unchanged source uploads nothing.
    const again = await fn('deploy', fnDir, '--json');
    assert.equal(again.code, 0, again.stderr);
    assert.equal((JSON.parse(again.stdout) as { uploaded: boolean }).uploaded, false);

    assert.equal((await fn('delete', 'hello')).code, 0);
    const gone = await fn('invoke', 'hello');
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /404|no function/);
  });

  it('deploy --remote-build sends the source to the build service, which bundles it for the process driver', async () => {
    const r = await fn('deploy', fnDir, '--name', 'hello-remote', '--remote-build', '--json');
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { mode: string; image: string; digest: string };
    assert.equal(out.mode, 'remote');
    assert.equal(out.image, `app:${out.digest}`);
    const invoked = await fn('invoke', 'hello-remote', '--query', 'name=Remote');
    assert.equal(invoked.stdout, 'Hello, Remote!\n');
    // The same source deployed from here gives the same app digest: the service built what the CLI would.
    const local = JSON.parse((await fn('deploy', fnDir, '--name', 'hello-local', '--json', '--no-wait')).stdout) as { digest: string; image: string };
    assert.equal(local.digest, out.digest);
    assert.equal(local.image, out.image);
    assert.equal((await fn('delete', 'hello-local')).code, 0);
    assert.equal((await fn('delete', 'hello-remote')).code, 0);
  });

  it('deploy --remote-build of source that imports a file of the server is refused, showing none of it', async () => {
    const dir = path.join(await mkdtemp(path.join(tmpdir(), 'kubefn-escape-')), 'escape');
    await mkdir(dir);
    await writeFile(path.join(dir, 'fn.yaml'), 'name: escape\nhandler: handler.js\n');
    await writeFile(path.join(dir, 'handler.js'), "import pw from '/etc/passwd';\nexport default () => new Response(pw);\n");
    const r = await fn('deploy', dir, '--remote-build');
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stderr, /handler\.js imports "\/etc\/passwd", which is outside the function directory/);
    assert.match(r.stderr, /reads only the uploaded files/);
    for (const text of [r.stdout, r.stderr, platform.output.join('\n')]) assert.ok(!text.includes('root:x:0:0'), `the server's /etc/passwd leaked:\n${text}`);
    const list = JSON.parse((await fn('list', '--json')).stdout) as { name: string }[];
    assert.ok(!list.some((f) => f.name === 'escape'));
  });

  it('runs a CommonJS function with files next to its bundle and assets on the process driver, reporting what it ships', async () => {
    const dir = path.join(await mkdtemp(path.join(tmpdir(), 'kubefn-lambda-')), 'lambda-cjs');
    await cp(path.join(repoRoot, 'tests', 'fixtures', 'lambda-cjs'), dir, { recursive: true });
    const deployed = await fn('deploy', dir, '--json');
    assert.equal(deployed.code, 0, deployed.stderr);
    assert.match(deployed.stderr, /warning: shipping 2 file\(s\) the code reads next to itself: src\/footer\.txt, templates\/page\.html/);
    assert.match((JSON.parse(deployed.stdout) as { image: string }).image, /^app:sha256:[0-9a-f]{64}$/);
    const page = await fn('invoke', 'lambda-cjs', '--query', 'name=Ada');
    assert.equal(page.stdout, '<h1>Hello, Ada!</h1>\nfooter from src\ndir=src\ntally=6\n', page.stderr);
    const data = await fn('invoke', 'lambda-cjs', '--query', 'file=words.txt');
    assert.equal(data.stdout, 'alpha beta\n', 'data/ shipped through assets');
    assert.equal((await fn('delete', 'lambda-cjs')).code, 0);
  });

  it('prints the limits the process driver does not hold at deploy, and shows an out-of-memory kill in describe and logs', async () => {
    const dir = path.join(await mkdtemp(path.join(tmpdir(), 'kubefn-hog-')), 'hog');
    await cp(path.join(repoRoot, 'tests', 'fixtures', 'memory-hog'), dir, { recursive: true });
    await writeFile(path.join(dir, 'fn.yaml'), 'name: hog\nhandler: handler.js\nresources: { memory: 128Mi, gpu: 1 }\nscale: { initial: 1, max: 1 }\n');
    const deployed = await fn('deploy', dir);
    assert.equal(deployed.code, 0, deployed.stderr);
    assert.match(deployed.stderr, /^warning: resources\.gpu 1 is not assigned by the process driver/m);

    const leaked = await fn('invoke', 'hog', '--query', 'kind=buffer');
    assert.notEqual(leaked.code, 0, `held 1 GiB under a 128Mi limit: ${leaked.stdout}`);
    const killed = /replica hog-1 used \d+ MiB, over its 128Mi limit; killed/;
    const described = await waitFor(
      async () => {
        const text = (await fn('describe', 'hog')).stdout;
        return killed.test(text) ? text : false;
      },
      { what: 'the kill in fn describe', timeoutMs: 60_000 },
    );
    assert.match(described, /^Last error:\s+OUT_OF_MEMORY: replica hog-1 used \d+ MiB, over its 128Mi limit; killed$/m);
    assert.match(described, /^Warnings:\s+resources\.gpu 1 is not assigned/m);
    assert.match((await fn('logs', 'hog')).stdout, killed);
    assert.equal((await fn('delete', 'hog')).code, 0);
  });

  it('refuses a bad fn.yaml naming the file and the field, deploying nothing', async () => {
    const bad = await mkdtemp(path.join(tmpdir(), 'kubefn-bad-'));
    await writeFile(path.join(bad, 'fn.yaml'), 'name: bad-fn\nscale:\n  min: 5\n  max: 2\n');
    await writeFile(path.join(bad, 'handler.js'), 'export default () => "x";\n');
    const r = await fn('deploy', bad);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /fn\.yaml/);
    assert.match(r.stderr, /scale\.min/);
    const list = JSON.parse((await fn('list', '--json')).stdout) as { name: string }[];
    assert.ok(!list.some((f) => f.name === 'bad-fn'));
  });
});
