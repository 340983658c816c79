// How a spec names secrets: `secrets` for files, `secretEnv` for env variables from them, and the
// field errors for a secretEnv that names an unlisted secret or a reserved variable.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isKubefnError } from './errors.js';
import { secretEnvValues } from './secrets.js';
import { parseFunctionSpec } from './spec.js';

describe('secrets in the spec', () => {
  it('takes secrets and secretEnv naming them, and sets the env from their values', () => {
    const spec = parseFunctionSpec({ name: 'f', secrets: ['db-password', 'tls'], secretEnv: { DB_PASSWORD: 'db-password' } });
    const values = new Map([
      ['db-password', Buffer.from('hunter2')],
      ['tls', Buffer.from('key')],
    ]);
    assert.deepEqual(secretEnvValues(spec, values), { DB_PASSWORD: 'hunter2' });
  });

  it('names the field of each bad secretEnv entry', () => {
    assert.throws(
      () => parseFunctionSpec({ name: 'f', secrets: ['a'], env: { TWICE: '1' }, secretEnv: { B: 'b', KUBEFN_X: 'a', TWICE: 'a' } }),
      (e) => {
        assert.ok(isKubefnError(e, 'INVALID_SPEC'));
        assert.deepEqual(e.fields, [
          { field: 'secretEnv.B', message: 'names secret "b", which is not in `secrets`' },
          { field: 'secretEnv.KUBEFN_X', message: 'is reserved for the runtime (PORT, ADMIN_PORT, NODE_OPTIONS, KUBEFN_*)' },
          { field: 'secretEnv.TWICE', message: 'is also set in `env`; set it in one place' },
        ]);
        return true;
      },
    );
    assert.throws(() => parseFunctionSpec({ name: 'f', secrets: ['Bad_Name'] }), /secrets\.0: must be a DNS-1123 label/);
    assert.throws(() => parseFunctionSpec({ name: 'f', secrets: ['a'], secretEnv: { 'not-env': 'a' } }), /secretEnv/);
    // The platform's own Secrets (the management token's kubefn-token) are not a function's to read.
    assert.throws(() => parseFunctionSpec({ name: 'f', secrets: ['db', 'kubefn-token'] }), /secrets: "kubefn-token" is one of the platform's own Secrets/);
  });
});
