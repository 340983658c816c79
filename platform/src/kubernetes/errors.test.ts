import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { dependencyErrorCode, errorFromBody } from '../errors.js';
import { kubeError } from './errors.js';

/** What client-node throws for an API answer: an ApiException with the status as `code`. */
function apiException(code: number, message: string) {
  return Object.assign(new Error(`HTTP-Code: ${code}`), { code, body: JSON.stringify({ kind: 'Status', message }) });
}

describe('errors from dependencies', () => {
  it('a 403 is FORBIDDEN with the verb and resource the API server refused, not a wrong token', () => {
    const e = kubeError(
      apiException(403, 'deployments.apps "hello" is forbidden: User "system:serviceaccount:kubefn:kubefn" cannot patch resource "deployments/scale" in API group "apps" in the namespace "fns"'),
      'scaling function "hello"',
    );
    assert.equal(e.code, 'FORBIDDEN');
    assert.equal(e.status, 403);
    assert.match(e.message, /^scaling function "hello": .*cannot patch resource "deployments\/scale"/);
    assert.match(e.hint ?? '', /RBAC/);
    assert.equal(kubeError(apiException(401, 'Unauthorized'), 'listing').code, 'UNAUTHORIZED');
  });

  it('429 and 5xx are UNAVAILABLE (retryable), as is an API server that cannot be reached', () => {
    for (const status of [429, 500, 503, 504]) {
      const e = kubeError(apiException(status, 'etcd timeout'), 'applying');
      assert.equal(e.code, 'UNAVAILABLE', String(status));
      assert.equal(e.status, 503);
    }
    assert.equal(kubeError(Object.assign(new Error('connect ECONNREFUSED 10.0.0.1:6443'), { code: 'ECONNREFUSED' }), 'listing').code, 'UNAVAILABLE');
  });

  it('the other codes keep their meaning', () => {
    assert.equal(kubeError(apiException(404, 'not found'), 'reading').code, 'NOT_FOUND');
    assert.equal(kubeError(apiException(409, 'conflict'), 'applying').code, 'ALREADY_EXISTS');
    assert.equal(kubeError(apiException(422, 'invalid'), 'applying').code, 'BAD_REQUEST');
    assert.deepEqual([400, 401, 403, 404, 409, 429, 502].map(dependencyErrorCode), ['BAD_REQUEST', 'UNAUTHORIZED', 'FORBIDDEN', 'NOT_FOUND', 'ALREADY_EXISTS', 'UNAVAILABLE', 'UNAVAILABLE']);
  });

  it('an HTTP error body without a kubefn code maps by status', () => {
    assert.equal(errorFromBody(403, 'nope').code, 'FORBIDDEN');
    assert.equal(errorFromBody(503, 'busy').code, 'UNAVAILABLE');
    assert.equal(errorFromBody(500, 'boom').code, 'INTERNAL');
  });
});
