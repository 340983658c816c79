// `fn` starts light: --help, list and invoke load commander, the CLI's own modules and
// @kubefn/platform/core, never the builder (esbuild), the server (fastify, NATS), the Kubernetes
// client or the spec schemas. Each command loads those itself, in its action, when it runs.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const fnBin = fileURLToPath(new URL('../bin/fn.js', import.meta.url));
const recorder = fileURLToPath(new URL('./load-recorder.js', import.meta.url));

/** Modules whose loading `fn --help`, `fn list` and `fn invoke` must not pay for. */
const heavy: [string, RegExp][] = [
  ['esbuild', /\/node_modules\/esbuild\//],
  ['@kubernetes/client-node', /\/node_modules\/@kubernetes\/client-node\//],
  ['fastify', /\/node_modules\/fastify\//],
  ['nats', /\/node_modules\/@nats-io\//],
  ['typebox (the spec schemas)', /\/node_modules\/@sinclair\/typebox\//],
  ['undici (the package)', /\/node_modules\/undici\//],
  ['yaml', /\/node_modules\/yaml\//],
  ['@kubefn/builder', /\/builder\/dist\//],
  ['@kubefn/server', /\/server\/dist\//],
  ['@kubefn/gateway', /\/gateway\/dist\//],
  ['@kubefn/autoscaler', /\/autoscaler\/dist\//],
  ['the whole @kubefn/platform', /\/platform\/dist\/index\.js$/],
];

let dir: string;
let gateway: Server;
let gatewayUrl: string;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'kubefn-startup-'));
  // Just enough of a gateway for `fn list` and `fn invoke` to finish their work.
  gateway = createServer((req, res) => {
    if (req.url === '/system/functions') {
      res.setHeader('content-type', 'application/json');
      res.end('[]');
    } else if (req.url?.startsWith('/function/hello')) {
      res.end('Hello, world\n');
    } else {
      res.statusCode = 404;
      res.end();
    }
  });
  await new Promise<void>((resolve) => gateway.listen(0, '127.0.0.1', resolve));
  gatewayUrl = `http://127.0.0.1:${(gateway.address() as { port: number }).port}`;
});

after(async () => {
  await new Promise((resolve) => gateway.close(resolve));
  await rm(dir, { recursive: true, force: true });
});

/** Runs `fn args` under the load recorder; resolves with its exit code, output and the modules it loaded. */
async function loadedBy(...args: string[]): Promise<{ code: number | null; out: string; modules: string[] }> {
  const log = path.join(dir, `${args.join('-').replace(/\W+/g, '_')}.log`);
  const child = spawn(process.execPath, ['--import', recorder, fnBin, ...args], {
    env: { ...process.env, KUBEFN_LOAD_LOG: log, KUBEFN_GATEWAY: gatewayUrl, KUBEFN_TOKEN: 't', KUBEFN_HOME: dir },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (out += s));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  const modules = (await readFile(log, 'utf8')).split('\n').filter(Boolean);
  return { code, out, modules };
}

function assertLight(modules: string[]): void {
  // The recorder saw the CLI start at all (ESM through the hook, commander through the require cache).
  assert.ok(modules.some((m) => m.endsWith('/cli/dist/main.js')), 'the recorder saw cli/dist/main.js');
  assert.ok(modules.some((m) => m.includes('/node_modules/commander/')), 'the recorder saw commander');
  for (const [name, pattern] of heavy) {
    assert.deepEqual(modules.filter((m) => pattern.test(m)), [], `${name} is loaded`);
  }
}

describe('fn starts without its heavy dependencies', () => {
  it('fn --help', async () => {
    const r = await loadedBy('--help');
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /Getting started:/);
    assertLight(r.modules);
  });

  it('fn list', async () => {
    const r = await loadedBy('list');
    assert.equal(r.code, 0, r.out);
    assertLight(r.modules);
  });

  it('fn invoke', async () => {
    const r = await loadedBy('invoke', 'hello');
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /Hello, world/);
    assertLight(r.modules);
  });

  it('a command that needs the spec schemas loads them when it runs (the recorder sees lazy loads)', async () => {
    const r = await loadedBy('init', 'hello', '--dir', path.join(dir, 'hello'));
    assert.equal(r.code, 0, r.out);
    assert.ok(r.modules.some((m) => /\/node_modules\/@sinclair\/typebox\//.test(m)), 'typebox loaded by fn init');
  });
});

describe('fn with its reader gone', () => {
  it('exits quietly when stdout is closed before it writes (fn --help | head -1)', async () => {
    const child = spawn(process.execPath, [fnBin, '--help'], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.destroy();
    let err = '';
    child.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    assert.equal(err, '');
    assert.equal(code, 0);
  });
});
