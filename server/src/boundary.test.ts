// The boundaries between the workspaces: the CLI starts servers and never holds server code;
// nothing but the tests imports the CLI; the gateway and the autoscaler meet only through
// platform's contract.

import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

async function dependencies(workspace: string): Promise<string[]> {
  const pkg = JSON.parse(await readFile(path.join(root, workspace, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
  return Object.keys(pkg.dependencies ?? {});
}

/** Every module specifier the compiled sources (not tests) of `workspace` import. */
async function imports(workspace: string): Promise<Set<string>> {
  const dist = path.join(root, workspace, 'dist');
  const found = new Set<string>();
  for (const entry of await readdir(dist, { recursive: true })) {
    const file = String(entry);
    if (!file.endsWith('.js') || file.endsWith('.test.js')) continue;
    const source = await readFile(path.join(dist, file), 'utf8');
    for (const m of source.matchAll(/(?:^|[\s;])(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]\s*\)/g)) {
      found.add((m[1] ?? m[2])!);
    }
  }
  return found;
}

describe('workspace boundaries', () => {
  it('no workspace but the tests depends on the CLI', async () => {
    const workspaces = ['platform', 'runtime-node', 'builder', 'autoscaler', 'gateway', 'server'];
    for (const w of workspaces) assert.ok(!(await dependencies(w)).includes('@kubefn/cli'), `${w} depends on @kubefn/cli`);
  });

  it('the CLI starts the server package and holds no server code', async () => {
    const cli = await imports('cli');
    assert.ok(cli.has('@kubefn/server'), 'cli imports @kubefn/server');
    for (const serverOnly of ['fastify', '@kubefn/gateway', 'pino']) assert.ok(!cli.has(serverOnly), `cli imports ${serverOnly}`);
  });

  it('the gateway and the autoscaler meet only through platform', async () => {
    assert.ok(!(await imports('gateway')).has('@kubefn/autoscaler'));
    assert.ok(!(await imports('autoscaler')).has('@kubefn/gateway'));
    assert.ok(!(await dependencies('gateway')).includes('@kubefn/autoscaler'));
  });
});
