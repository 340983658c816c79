import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { collectTestFiles, tierOf, workspaceDirs } from './test-tiers.js';

describe('test tiers', () => {
  let root: string;

  /** Writes each file (relative to root) with a line of content, making its folders. */
  async function files(...rels: string[]): Promise<void> {
    for (const rel of rels) {
      await mkdir(path.dirname(path.join(root, rel)), { recursive: true });
      await writeFile(path.join(root, rel), '// test\n');
    }
  }

  before(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'kubefn-tiers-'));
    await writeFile(path.join(root, 'package.json'), JSON.stringify({ workspaces: ['platform', 'server', 'examples/*', 'tests'] }));
    await files(
      'platform/package.json', 'examples/hello/package.json', 'examples/hello/handler.js', 'examples/notes/README.md', 'tests/package.json',
      'platform/src/crd.test.ts', 'platform/dist/crd.test.js', 'platform/dist/crd.js',
      'platform/src/kubernetes/peers.test.ts', 'platform/dist/kubernetes/peers.test.js',
      'platform/src/registry.integration.test.ts', 'platform/dist/registry.integration.test.js',
      // compiled from a source renamed since: left out
      'platform/dist/old-name.test.js',
      'server/package.json', 'server/src/main.test.ts', 'server/dist/main.test.js',
      'tests/src/test-tiers.test.ts', 'tests/dist/test-tiers.test.js',
      'tests/src/integration/cli.test.ts', 'tests/dist/integration/cli.test.js',
      'tests/src/cluster/cluster.test.ts', 'tests/dist/cluster/cluster.test.js',
      'tests/src/cluster/crd.cases.ts', 'tests/dist/cluster/crd.cases.js',
      'tests/dist/cluster/cluster-crd.test.js',
    );
  });

  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('reads the workspaces of package.json, expanding dir/* to the folders with a package.json', async () => {
    assert.deepEqual(await workspaceDirs(root), ['examples/hello', 'platform', 'server', 'tests']);
  });

  it('refuses a workspace pattern it does not understand instead of skipping a package', async () => {
    const other = await mkdtemp(path.join(tmpdir(), 'kubefn-tiers-'));
    try {
      await writeFile(path.join(other, 'package.json'), JSON.stringify({ workspaces: ['packages/**'] }));
      await assert.rejects(workspaceDirs(other), /"packages\/\*\*" is not "dir" or "dir\/\*"/);
    } finally {
      await rm(other, { recursive: true, force: true });
    }
  });

  it('sorts compiled tests into unit, integration and cluster, from every workspace', async () => {
    const { files: found, stale } = await collectTestFiles(root);
    const rel = (list: string[]) => list.map((f) => path.relative(root, f).split(path.sep).join('/'));
    assert.deepEqual(rel(found.unit), ['platform/dist/crd.test.js', 'platform/dist/kubernetes/peers.test.js', 'server/dist/main.test.js', 'tests/dist/test-tiers.test.js']);
    assert.deepEqual(rel(found.integration), ['platform/dist/registry.integration.test.js', 'tests/dist/integration/cli.test.js']);
    assert.deepEqual(rel(found.cluster), ['tests/dist/cluster/cluster.test.js']);
    assert.deepEqual(stale, ['platform/dist/old-name.test.js', 'tests/dist/cluster/cluster-crd.test.js']);
  });

  it('keeps the integration and cluster folders a matter of the tests workspace', () => {
    assert.equal(tierOf('cli', 'cluster/components.test.js'), 'unit');
    assert.equal(tierOf('tests', 'cluster/cluster.test.js'), 'cluster');
    assert.equal(tierOf('builder', 'registry/client.integration.test.js'), 'integration');
    assert.equal(tierOf('tests', 'cluster/registry.integration.test.js'), 'cluster');
  });
});
