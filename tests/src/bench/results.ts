// Where every benchmark leaves its numbers: bench-results/<name>.json at the repository root, or
// in the directory BENCH_OUT names (the smoke tests write to a temporary one).

import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { repoRoot } from '../support/platform-process.js';

/** The directory the results go to: BENCH_OUT, else bench-results/ at the repository root. */
export function benchResultsDir(): string {
  return process.env.BENCH_OUT ? path.resolve(process.env.BENCH_OUT) : path.join(repoRoot, 'bench-results');
}

export async function writeBenchResults(name: string, results: unknown): Promise<string> {
  const out = benchResultsDir();
  await mkdir(out, { recursive: true });
  const file = path.join(out, `${name}.json`);
  await writeFile(file, JSON.stringify(results, null, 2) + '\n');
  return file;
}
