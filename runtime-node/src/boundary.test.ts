import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

// runtime-node is PID 1 of every replica: it must start fast and stay small, so it imports only
// Node built-ins, prom-client and the dependency-free runtime contract, never the gateway,
// fastify, typebox or the Kubernetes client.
const allowed = [/^node:/, /^prom-client$/, /^@kubefn\/platform\/runtime-contract$/, /^\.\.?\//];

function specifiers(source: string): string[] {
  const found: string[] = [];
  for (const match of source.matchAll(/(?:^|[\s;])(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]/g)) found.push(match[1]!);
  for (const match of source.matchAll(/(?:^|[\s;])import\s*['"]([^'"]+)['"]/g)) found.push(match[1]!);
  for (const match of source.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g)) found.push(match[1]!);
  return found;
}

describe('package boundary', () => {
  it('the runtime imports only node:*, prom-client and the runtime contract', async () => {
    const dist = path.dirname(fileURLToPath(import.meta.url));
    const files = (await readdir(dist)).filter((f) => f.endsWith('.js') && !f.endsWith('.test.js') && f !== 'testkit.js');
    assert.ok(files.includes('index.js'));
    const seen = new Set<string>();
    for (const file of files) {
      for (const specifier of specifiers(await readFile(path.join(dist, file), 'utf8'))) {
        seen.add(specifier);
        assert.ok(allowed.some((re) => re.test(specifier)), `${file} imports ${specifier}`);
      }
    }
    // Guards the scan itself: it must see the imports that are certainly there.
    for (const expected of ['prom-client', 'node:http', '@kubefn/platform/runtime-contract', './run.js']) {
      assert.ok(seen.has(expected), `scan found ${expected}`);
    }
  });

  it('the runtime contract itself imports nothing', async () => {
    const contract = fileURLToPath(import.meta.resolve('@kubefn/platform/runtime-contract'));
    assert.deepEqual(specifiers(await readFile(contract, 'utf8')), []);
  });
});
