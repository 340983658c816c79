import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

// runtime-node is PID 1 of every replica: it must start fast and stay small, so it imports only
// Node built-ins, prom-client and the dependency-free runtime contract, never the gateway,
// fastify, typebox or the Kubernetes client. The one exception: a cluster pool pod's warm.js
// loads the claim module (node:* and tar-stream) on demand, never at start.
const allowed = [/^node:/, /^prom-client$/, /^@kubefn\/platform\/runtime-contract$/, /^\.\.?\//];
const loadedOnDemand = new Map([['warm.js', '@kubefn/platform/warm-claim']]);

function staticSpecifiers(source: string): string[] {
  const found: string[] = [];
  for (const match of source.matchAll(/(?:^|[\s;])(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]/g)) found.push(match[1]!);
  for (const match of source.matchAll(/(?:^|[\s;])import\s*['"]([^'"]+)['"]/g)) found.push(match[1]!);
  return found;
}

function dynamicSpecifiers(source: string): string[] {
  return [...source.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g)].map((match) => match[1]!);
}

function specifiers(source: string): string[] {
  return [...staticSpecifiers(source), ...dynamicSpecifiers(source)];
}

describe('package boundary', () => {
  it('the runtime imports only node:*, prom-client and the runtime contract', async () => {
    const dist = path.dirname(fileURLToPath(import.meta.url));
    const files = (await readdir(dist)).filter((f) => f.endsWith('.js') && !f.endsWith('.test.js') && f !== 'testkit.js');
    assert.ok(files.includes('index.js'));
    const seen = new Set<string>();
    for (const file of files) {
      const source = await readFile(path.join(dist, file), 'utf8');
      for (const specifier of staticSpecifiers(source)) {
        seen.add(specifier);
        assert.ok(allowed.some((re) => re.test(specifier)), `${file} imports ${specifier}`);
      }
      for (const specifier of dynamicSpecifiers(source)) {
        seen.add(specifier);
        assert.ok(allowed.some((re) => re.test(specifier)) || loadedOnDemand.get(file) === specifier, `${file} imports ${specifier}`);
      }
    }
    // Guards the scan itself: it must see the imports that are certainly there.
    for (const expected of ['prom-client', 'node:http', '@kubefn/platform/runtime-contract', './run.js', '@kubefn/platform/warm-claim']) {
      assert.ok(seen.has(expected), `scan found ${expected}`);
    }
  });

  it('the claim module a pool pod loads imports only node:*, tar-stream and the runtime contract', async () => {
    const claims = fileURLToPath(import.meta.resolve('@kubefn/platform/warm-claim'));
    const found = specifiers(await readFile(claims, 'utf8'));
    assert.ok(found.includes('tar-stream'));
    for (const specifier of found) assert.ok(/^node:/.test(specifier) || specifier === 'tar-stream' || specifier === './runtime-contract.js', `warm-claim.js imports ${specifier}`);
  });

  it('the runtime contract itself imports nothing', async () => {
    const contract = fileURLToPath(import.meta.resolve('@kubefn/platform/runtime-contract'));
    assert.deepEqual(specifiers(await readFile(contract, 'utf8')), []);
  });
});
