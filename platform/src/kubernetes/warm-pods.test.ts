import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseFunctionSpec } from '../spec.js';
import { imageFit, specUnfit, type ImageFacts } from './warm-pods.js';

const layer = (n: number, mediaType = 'application/vnd.oci.image.layer.v1.tar+gzip') => ({ digest: `sha256:${String(n).repeat(64).slice(0, 64)}`, size: n, mediaType });
const pool: ImageFacts = { layers: [layer(1), layer(2), layer(3)], command: ['node', '/kubefn/warm.cjs'], user: '65534' };
const fn = (over: Partial<ImageFacts> = {}): ImageFacts => ({ layers: [layer(1), layer(2), layer(4)], command: ['node', '--enable-source-maps', '/app/fn.cjs'], user: '65534', ...over });

describe('which functions the cluster pool takes', () => {
  it('an image that is the pool base plus its own gzip layer, started as node [--enable-source-maps] /app/fn.(c|m)js as the same user', () => {
    assert.deepEqual(imageFit(pool, fn(), 'pool@sha256:x'), { fits: true, layer: layer(4), bundle: 'fn.cjs', poolImage: 'pool@sha256:x' });
    assert.equal((imageFit(pool, fn({ command: ['node', '/app/fn.mjs'] }), 'p') as { bundle: string }).bundle, 'fn.mjs');
    const no = (facts: ImageFacts) => (imageFit(pool, facts, 'p') as { reason: string }).reason;
    assert.match(no(fn({ layers: [layer(1), layer(5), layer(4)] })), /not the warm pool's base plus/);
    assert.match(no(fn({ layers: [layer(1), layer(2), layer(3), layer(4)] })), /not the warm pool's base plus/);
    assert.match(no(fn({ command: ['node', '--max-old-space-size=64', '/app/fn.cjs'] })), /does not start a bundle/);
    assert.match(no(fn({ command: ['node', '/srv/fn.cjs'] })), /does not start a bundle/);
    assert.match(no(fn({ command: ['bun', '/app/fn.cjs'] })), /does not start a bundle/);
    assert.match(no(fn({ layers: [layer(1), layer(2), layer(4, 'application/vnd.oci.image.layer.v1.tar+zstd')] })), /not a gzip tar/);
    assert.match(no(fn({ user: 'root' })), /runs as "root", the warm pool as "65534"/);
  });

  it('a spec a pool pod cannot honour takes a pod start, with the reason', () => {
    const spec = (over: Record<string, unknown>) => parseFunctionSpec({ name: 'f', image: 'r/f@sha256:' + 'a'.repeat(64), ...over });
    const shape = { memoryBytes: 512 * 1024 * 1024, cpu: 1 };
    assert.equal(specUnfit(spec({}), shape), undefined);
    assert.equal(specUnfit(spec({ resources: { memory: '256Mi', cpu: '500m' } }), shape), undefined);
    assert.match(specUnfit(spec({ resources: { memory: '1Gi' } }), shape)!, /memory \(1Gi\) is more than a pool pod's/);
    assert.match(specUnfit(spec({ resources: { memory: '64Mi' } }), { memoryBytes: undefined, cpu: undefined })!, /memory/);
    assert.match(specUnfit(spec({ resources: { cpu: '2' } }), shape)!, /cpu \(2\)/);
    assert.match(specUnfit(spec({ resources: { gpu: 1 } }), shape)!, /GPU/);
    assert.match(specUnfit(spec({ placement: { nodeSelector: { disk: 'ssd' } } }), shape)!, /node placement/);
    assert.match(specUnfit(spec({ serviceAccount: 'reader' }), shape)!, /own ServiceAccount/);
    assert.match(specUnfit(spec({ env: { NODE_NO_WARNINGS: '1' } }), shape)!, /NODE_NO_WARNINGS is read only when node starts/);
  });
});
