// Secrets end to end through `fn up` with the process driver: `fn secret create`, a function
// that lists the secret reads it as a file (KUBEFN_SECRETS_DIR) and as env (secretEnv), and the
// clear errors around it: a deploy naming a missing secret, a second create.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { fnBin, newHome, startPlatform, type RunningPlatform } from '../support/platform-process.js';

const exec = promisify(execFile);
/** `fn up` as root runs each function as a user of its own, with its secret files in its private directory. */
const isolated = process.getuid?.() === 0;

const handler = `import { readFile } from 'node:fs/promises';
import path from 'node:path';
// Where OpenFaaS functions find secrets; the process driver says where it put them instead.
const dir = process.env.KUBEFN_SECRETS_DIR ?? '/var/openfaas/secrets';
export default async function () {
  const file = await readFile(path.join(dir, 'db-password'), 'utf8');
  return { file, env: process.env.DB_PASSWORD ?? null, dir };
}
`;

describe('secrets through fn up (process driver)', () => {
  let platform: RunningPlatform;
  let home: string;
  let env: NodeJS.ProcessEnv;
  let fnDir: string;

  before(async () => {
    home = await newHome();
    platform = await startPlatform(home);
    env = { ...process.env, KUBEFN_HOME: home, KUBEFN_GATEWAY: platform.url };
    fnDir = await mkdtemp(path.join(tmpdir(), 'kubefn-secret-fn-'));
    await writeFile(path.join(fnDir, 'handler.js'), handler);
    await writeFile(path.join(fnDir, 'fn.yaml'), 'name: reads-secret\nhandler: handler.js\nsecrets: [db-password]\nsecretEnv:\n  DB_PASSWORD: db-password\n');
  });
  after(async () => {
    await platform?.stop();
  });

  const fn = async (args: string[], input?: string) => {
    const run = exec(process.execPath, [fnBin, ...args], { env, cwd: fnDir, timeout: 120_000 });
    if (input !== undefined) run.child.stdin!.end(input);
    try {
      const r = await run;
      return { code: 0, stdout: r.stdout, stderr: r.stderr };
    } catch (err) {
      const e = err as { code: number; stdout: string; stderr: string };
      return { code: e.code, stdout: e.stdout, stderr: e.stderr };
    }
  };

  it('refuses to deploy a function naming a secret that does not exist', async () => {
    const r = await fn(['deploy', fnDir]);
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stderr, /function "reads-secret" needs secret "db-password", which does not exist/);
    assert.match(r.stderr, /fn secret create db-password/);
  });

  it('creates a secret the function reads as a file and as env; the value is encrypted at rest', async () => {
    const created = await fn(['secret', 'create', 'db-password', '-'], 'hunter2-from-stdin');
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stdout, /created secret "db-password" \(18 bytes\)/);
    const again = await fn(['secret', 'create', 'db-password', 'other']);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /secret "db-password" already exists/);
    const listed = await fn(['secret', 'list']);
    assert.match(listed.stdout, /^NAME\s*\ndb-password\s*$/m);
    assert.doesNotMatch(listed.stdout, /hunter2/);

    // On disk under the home: encrypted, 0600.
    const stored = await readFile(path.join(home, 'secrets', 'db-password.secret'));
    assert.equal(stored.includes(Buffer.from('hunter2')), false);
    assert.equal((await stat(path.join(home, 'secrets', 'db-password.secret'))).mode & 0o777, 0o600);

    const deployed = await fn(['deploy', fnDir]);
    assert.equal(deployed.code, 0, deployed.stderr);
    const invoked = await fn(['invoke', 'reads-secret']);
    assert.equal(invoked.code, 0, invoked.stderr);
    const answer = JSON.parse(invoked.stdout) as { file: string; env: string; dir: string };
    assert.equal(answer.file, 'hunter2-from-stdin');
    assert.equal(answer.env, 'hunter2-from-stdin');
    // The decrypted copy is the function's own, in a private directory: as root, the function's
    // private directory (its user's alone); otherwise under the home.
    const filesRoot = isolated ? path.dirname(path.dirname(answer.dir)) : path.join(home, 'secret-files');
    assert.equal(answer.dir, isolated ? path.join(filesRoot, 'reads-secret', 'secrets') : path.join(filesRoot, 'reads-secret'));
    assert.equal((await stat(answer.dir)).mode & 0o777, 0o700);
    assert.equal((await stat(path.join(answer.dir, 'db-password'))).mode & 0o777, 0o600);
    if (isolated) {
      assert.notEqual((await stat(path.join(answer.dir, 'db-password'))).uid, 0, "the file is the function user's");
      assert.equal((await stat(path.dirname(answer.dir))).mode & 0o777, 0o700);
    } else {
      assert.equal((await stat(filesRoot)).mode & 0o777, 0o700);
    }

    // An update reaches replicas started after it.
    const updated = await fn(['secret', 'create', 'db-password', 'rotated', '--update']);
    assert.equal(updated.code, 0, updated.stderr);
    assert.match(updated.stdout, /updated secret "db-password"/);
    await writeFile(path.join(fnDir, 'fn.yaml'), 'name: reads-secret\nhandler: handler.js\nsecrets: [db-password]\nsecretEnv:\n  DB_PASSWORD: db-password\ntimeout: 20s\n');
    assert.equal((await fn(['deploy', fnDir])).code, 0);
    const rotated = JSON.parse((await fn(['invoke', 'reads-secret'])).stdout) as { file: string; env: string };
    assert.deepEqual([rotated.file, rotated.env], ['rotated', 'rotated']);

    // Deleting the function removes its decrypted files.
    assert.equal((await fn(['delete', 'reads-secret'])).code, 0);
    await assert.rejects(stat(answer.dir), { code: 'ENOENT' });

    const deleted = await fn(['secret', 'delete', 'db-password']);
    assert.equal(deleted.code, 0, deleted.stderr);
    const gone = await fn(['secret', 'delete', 'db-password']);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /no secret named "db-password"/);
    assert.match((await fn(['secret', 'list'])).stderr, /no secrets/);
  });
});
