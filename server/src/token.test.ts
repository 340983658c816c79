// The management token's floor: short tokens are refused wherever they come from, and a missing
// one is made in the state directory with mode 0600.

import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadOrCreateToken, strongToken } from './token.js';

describe('management token', () => {
  let home: string;
  before(async () => (home = await mkdtemp(path.join(tmpdir(), 'kubefn-token-'))));
  after(() => rm(home, { recursive: true, force: true }));

  it('refuses a token under 16 bytes, naming where it came from', () => {
    assert.throws(() => strongToken('x', '--token'), /the token from --token has 1 byte; at least 16 are needed/);
    assert.throws(() => strongToken('ünïcødé', 'KUBEFN_TOKEN'), /has 11 bytes/, 'bytes, not characters');
    assert.equal(strongToken('sixteen-bytes!!!', '--token'), 'sixteen-bytes!!!');
  });

  it('makes a token when there is none, keeps it, and refuses a short one in the file', async () => {
    const made = await loadOrCreateToken(home);
    assert.ok(Buffer.byteLength(made) >= 16);
    assert.equal((await stat(path.join(home, 'token'))).mode & 0o777, 0o600);
    assert.equal(await loadOrCreateToken(home), made, 'read back, not made again');
    await writeFile(path.join(home, 'token'), 'short\n');
    await assert.rejects(loadOrCreateToken(home), (err: Error) => err.message.includes(path.join(home, 'token')) && /5 bytes/.test(err.message));
    assert.equal(await readFile(path.join(home, 'token'), 'utf8'), 'short\n', 'a short token is not replaced behind the user\'s back');
  });
});
