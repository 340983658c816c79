import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isKubefnError } from '../errors.js';
import { parseFunctionSpec } from '../spec.js';
import { checkPlacement, placementAllowlist, placementErrors } from './placement.js';

describe('placement allowlist', () => {
  const spec = parseFunctionSpec({
    name: 'gpu-job',
    image: 'x',
    placement: { nodeSelector: { pool: 'gpu', zone: 'a' }, tolerations: [{ key: 'gpu', operator: 'Exists' }, { operator: 'Exists' }] },
  });

  it('allows anything when unset or empty', () => {
    assert.deepEqual(placementAllowlist(undefined, ' , '), {});
    assert.deepEqual(placementErrors(spec, placementAllowlist('', undefined)), []);
  });

  it('names every node label and taint outside the list, and a toleration of every taint', () => {
    const allow = placementAllowlist('pool, kubernetes.io/arch', 'gpu');
    assert.deepEqual(
      placementErrors(spec, allow).map((f) => f.field),
      ['placement.nodeSelector.zone', 'placement.tolerations.1'],
    );
    assert.throws(
      () => checkPlacement(spec, allow),
      (err: unknown) => isKubefnError(err, 'INVALID_SPEC') && /does not allow: placement\.nodeSelector\.zone is not a node label/.test((err as Error).message),
    );
    checkPlacement(parseFunctionSpec({ name: 'ok', image: 'x', placement: { nodeSelector: { pool: 'gpu' } } }), allow);
  });
});
