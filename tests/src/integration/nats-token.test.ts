// The NATS of deploy/ reads its token from the environment into its config, where nats-server
// parses it as a config value: the tokens `fn install` generates must parse as plain strings, or
// the server does not start (a token starting with "-" did, one install in 64).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import YAML from 'yaml';
import { generatedToken } from '@kubefn/cli';
import { repoRoot } from '../support/platform-process.js';

const exec = promisify(execFile);

/** Whether nats-server accepts deploy/'s nats.conf with `token` in KUBEFN_NATS_TOKEN (nats-server -t). */
async function accepts(conf: string, token: string): Promise<{ ok: boolean; output: string }> {
  try {
    const { stdout, stderr } = await exec('nats-server', ['-c', conf, '-t'], { env: { PATH: process.env.PATH, KUBEFN_NATS_TOKEN: token } });
    return { ok: true, output: stdout + stderr };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    return { ok: false, output: (e.stdout ?? '') + (e.stderr ?? '') };
  }
}

describe("the NATS token in deploy/'s nats.conf", () => {
  let dir: string;
  let conf: string;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'kubefn-nats-token-'));
    const docs = YAML.parseAllDocuments(await readFile(path.join(repoRoot, 'deploy', 'nats.yaml'), 'utf8')).map((d) => d.toJS() as { kind?: string; data?: Record<string, string> });
    const text = docs.find((d) => d.kind === 'ConfigMap')?.data?.['nats.conf'];
    assert.ok(text, 'deploy/nats.yaml has a ConfigMap with nats.conf');
    conf = path.join(dir, 'nats.conf');
    // The store in a directory of the test's own, as the pod's volume would be.
    await writeFile(conf, text.replace('store_dir: "/data"', `store_dir: ${JSON.stringify(path.join(dir, 'store'))}`));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('is refused by nats-server when it starts with "-" or reads as a number: what generated tokens must avoid', async () => {
    for (const token of ['-abcdefghijklmnop', '1e5abcdefghijklmn', '12345678901234567890']) {
      const { ok, output } = await accepts(conf, token);
      assert.equal(ok, false, `${token} accepted: ${output}`);
    }
  });

  it('parses as a string for every token fn install generates', async () => {
    for (let i = 0; i < 64; i++) {
      const token = generatedToken();
      const { ok, output } = await accepts(conf, token);
      assert.ok(ok, `nats-server refused ${token}: ${output}`);
    }
  });
});
