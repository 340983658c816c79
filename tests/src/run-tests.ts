// Runs one tier of the test suite, or all of them: `node tests/dist/run-tests.js
// unit|integration|cluster|all [node --test options]`. Node 20's `node --test` takes files and
// folders but cannot leave files out, so this collects each tier's files (test-tiers.ts) and hands
// them to one `node --test`, whose exit code it passes on. Options after the tier go to
// `node --test` as they are (e.g. --test-name-pattern, --test-reporter).

import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { collectTestFiles, tiers, type Tier } from './test-tiers.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const usage = `usage: node tests/dist/run-tests.js ${[...tiers, 'all'].join('|')} [node --test options]`;

async function main(argv: string[]): Promise<number> {
  const [which, ...args] = argv;
  const chosen: Tier[] | undefined = which === 'all' ? [...tiers] : tiers.find((t) => t === which) ? [which as Tier] : undefined;
  if (!chosen) {
    process.stderr.write(`${which === undefined ? 'no tier given' : `unknown tier "${which}"`}\n${usage}\n`);
    return 2;
  }
  const { files, stale } = await collectTestFiles(root);
  for (const file of stale) process.stderr.write(`# left out ${file}: its source is gone (npm run clean removes it)\n`);
  const selected = chosen.flatMap((t) => files[t]);
  // `node --test` with no files would search the working directory for tests of its own choosing.
  if (!selected.length) {
    process.stderr.write(`no compiled ${chosen.join(', ')} tests under ${root}: build first (npx tsc -b)\n`);
    return 1;
  }
  process.stderr.write(`# ${chosen.map((t) => `${t}: ${files[t].length} files`).join(', ')}\n`);
  const child = spawn(process.execPath, ['--test', ...args, ...selected.map((f) => path.relative(process.cwd(), f))], { stdio: 'inherit' });
  // Ctrl-C reaches the child through the terminal's process group: wait while it cleans up
  // (the cluster tests stop what they started). SIGTERM is for this process alone: pass it on.
  process.on('SIGINT', () => {});
  process.on('SIGTERM', () => child.kill('SIGTERM'));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => resolve(code ?? 128 + (signal ? constants.signals[signal] : 0)));
  });
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
