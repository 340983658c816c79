// The `fn` program: help with examples, argument validation as usage errors (exit 2), failures as exit 1.

import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { describe, it } from 'node:test';
import { formatError } from './errors.js';
import { main, version } from './main.js';
import { memoryIo } from './testing.js';

const fn = (...args: string[]) => ['node', 'fn', ...args];

async function run(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const io = memoryIo();
  const code = await main(fn(...args), io);
  return { code, out: io.out(), err: io.err() };
}

/** A port nothing listens on: bound, then released. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('help and version', () => {
  it('prints the version and exits 0', async () => {
    const r = await run('--version');
    assert.equal(r.code, 0);
    assert.equal(r.out.trim(), version);
  });

  it('prints help with examples for the program and every command', async () => {
    const top = await run('--help');
    assert.equal(top.code, 0);
    assert.match(top.out, /Getting started:/);
    for (const command of ['init', 'build', 'deploy', 'invoke', 'publish', 'list', 'describe', 'logs', 'delete', 'scale', 'secret', 'up']) {
      const r = await run(command, '-h');
      assert.equal(r.code, 0, command);
      assert.match(r.out, /Examples:\n {2}\$ fn /, `${command} --help has examples`);
    }
  });

  it('shows help on stderr and exits 2 without a command', async () => {
    const r = await run();
    assert.equal(r.code, 2);
    assert.match(r.err, /Usage: fn/);
  });
});

describe('usage errors exit 2 and say how to fix it', () => {
  const cases: [string[], RegExp][] = [
    [['frobnicate'], /unknown command 'frobnicate'/],
    [['invoke'], /missing required argument 'name'/],
    [['list', '--bogus'], /unknown option '--bogus'/],
    [['delete', 'a', 'b'], /too many arguments/],
    [['invoke', 'Not_A_Name'], /invalid function name "Not_A_Name"[\s\S]*hint: use 1-63/],
    [['describe', '-bad-'], /unknown option|invalid function name/],
    [['scale', 'hello', 'many'], /replicas must be a whole number from 0 to 1000, got "many"/],
    [['scale', 'hello', '1.5'], /replicas must be a whole number/],
    [['scale', 'hello'], /give a replica count, --min or --max/],
    [['scale', 'hello', '--min', '5', '--max', '2'], /--min 5 is above --max 2/],
    [['scale', 'hello', '--max', '0'], /--max must be a whole number from 1 to 1000/],
    [['invoke', 'hello', '--header', 'no-colon'], /--header expects name:value, got "no-colon"/],
    [['invoke', 'hello', '-X', 'GET /'], /--method must be an HTTP method/],
    [['invoke', 'hello', '-d', '@/nonexistent/body.json'], /cannot read --data file/],
    [['deploy', '--env', 'NOEQUALS'], /--env expects KEY=VALUE/],
    [['deploy', '--min', '-1'], /--min|unknown option/],
    [['deploy', '--max', '0'], /--max must be a whole number from 1/],
    [['deploy', '--name', 'Bad Name'], /invalid function name/],
    [['deploy', '--timeout', 'forever'], /--timeout must be a duration/],
    [['logs', 'hello', '--since', 'yesterday'], /--since must be a duration/],
    [['logs', 'hello', '--tail', 'ten'], /--tail must be a whole number/],
    [['list', '--gateway', 'ftp://example.com'], /gateway URL must be http or https/],
    [['up', '--port', 'http'], /--port must be a whole number from 0 to 65535/],
    [['publish'], /missing required argument 'subject'/],
    [['publish', 'orders.>', 'x'], /takes no wildcard/],
    [['publish', 'a', '--header', 'k'], /--header expects name=value/],
    [['secret', 'create', 'DB_PASSWORD', 'v'], /invalid secret name "DB_PASSWORD"[\s\S]*hint: use 1-63/],
    [['secret', 'create', 'db'], /no value given[\s\S]*"-" to read stdin/],
    [['secret', 'create', 'db', 'v', '--from-file', 'f'], /give the value once/],
    [['secret', 'create', 'db', '--from-file', '/nonexistent/key.pem'], /cannot read --from-file \/nonexistent\/key.pem: ENOENT/],
    [['secret', 'create', 'db', ''], /the secret value is empty/],
    [['secret', 'create', 'db', 'x'.repeat(512 * 1024 + 1)], /over the 524288 byte limit/],
    [['secret', 'delete', 'Nope!'], /invalid secret name/],
  ];
  for (const [args, message] of cases) {
    it(`fn ${args.join(' ')}`, async () => {
      const r = await run(...args);
      assert.equal(r.code, 2, r.err);
      assert.match(r.err, message);
      assert.equal(r.out, '');
    });
  }
});

describe('failures exit 1', () => {
  it('explains an unreachable gateway, with global options after the command', async () => {
    const port = await closedPort();
    const r = await run('list', '--gateway', `http://127.0.0.1:${port}`);
    assert.equal(r.code, 1);
    assert.match(r.err, new RegExp(`error: cannot reach the kubefn gateway at http://127.0.0.1:${port} \\(ECONNREFUSED\\): is \`fn up\` running\\?`));
    assert.match(r.err, /hint: start a local gateway with `fn up`/);
  });

  it('uses KUBEFN_GATEWAY when no flag is given', async () => {
    const port = await closedPort();
    const io = memoryIo({ env: { KUBEFN_GATEWAY: `127.0.0.1:${port}` } });
    assert.equal(await main(fn('describe', 'hello'), io), 1);
    assert.match(io.err(), new RegExp(`at http://127.0.0.1:${port}`));
  });

  it('tells the user to run fn init when there is no fn.yaml', async () => {
    const io = memoryIo({ cwd: '/' });
    assert.equal(await main(fn('build'), io), 1);
    assert.match(io.err(), /error: no fn\.yaml in \//);
    assert.match(io.err(), /hint: run `fn init <name>`/);
  });
});

describe('formatError', () => {
  it('prints message, one line per field, then the hint, without repeating the summary', () => {
    const err = {
      message: 'invalid spec for function "x": scale.min: must be <= scale.max (5 > 2)',
      hint: 'fix fn.yaml',
      fields: [{ field: 'scale.min', message: 'must be <= scale.max (5 > 2)' }],
    };
    assert.equal(formatError(err), 'error: invalid spec for function "x"\n  scale.min: must be <= scale.max (5 > 2)\nhint: fix fn.yaml\n');
  });
});
