// Where every benchmark leaves its numbers: bench-results/<name>.json at the repository root.

import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { repoRoot } from '../support/platform-process.js';

export async function writeBenchResults(name: string, results: unknown): Promise<void> {
  const out = path.join(repoRoot, 'bench-results');
  await mkdir(out, { recursive: true });
  await writeFile(path.join(out, `${name}.json`), JSON.stringify(results, null, 2) + '\n');
}
