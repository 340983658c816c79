// Runs one tier of the test suite, or all of them: `node tests/dist/run-tests.js
// unit|integration|cluster|all [node --test options]`. Node 20's `node --test` takes files and
// folders but cannot leave files out, so this collects each tier's files (test-tiers.ts) and hands
// them to `node --test`, one run per tier, whose exit codes it passes on (the first failing one;
// `all` runs every tier even after one failed). Unit tests share nothing and run two files at
// a time; the integration and cluster tests share podman, the registry and the one kubelet of
// the machine and run one file at a time. Options after the tier go to `node --test` as they
// are (e.g. --test-name-pattern, --test-reporter).

import { spawn, type ChildProcess } from 'node:child_process';
import { availableParallelism, constants } from 'node:os';
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
  // `node --test` with no files would search the working directory for tests of its own choosing.
  if (!chosen.some((t) => files[t].length)) {
    process.stderr.write(`no compiled ${chosen.join(', ')} tests under ${root}: build first (npx tsc -b)\n`);
    return 1;
  }
  // Ctrl-C reaches the child through the terminal's process group: wait while it cleans up
  // (the cluster tests stop what they started). SIGTERM is for this process alone: pass it on.
  let current: ChildProcess | undefined;
  let terminated = false;
  process.on('SIGINT', () => {});
  process.on('SIGTERM', () => {
    terminated = true;
    current?.kill('SIGTERM');
  });
  let result = 0;
  for (const tier of chosen) {
    if (!files[tier].length || terminated) continue;
    const started = Date.now();
    process.stderr.write(`# ${tier}: ${files[tier].length} files\n`);
    // On a fresh machine the Kubernetes binaries take many minutes to build: build them before the
    // tier, with no test's timeout running, instead of inside its first test.
    if (tier === 'cluster') await prebuildKubernetes();
    const concurrency = tier === 'unit' ? Math.max(2, availableParallelism()) : 1;
    const child = (current = spawn(
      process.execPath,
      ['--test', `--test-concurrency=${concurrency}`, ...args, ...files[tier].map((f) => path.relative(process.cwd(), f))],
      { stdio: 'inherit' },
    ));
    const code = await new Promise<number>((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', (c, signal) => resolve(c ?? 128 + (signal ? constants.signals[signal] : 0)));
    });
    process.stderr.write(`# ${tier}: ${code === 0 ? 'passed' : `failed (exit ${code})`} in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
    if (code !== 0 && result === 0) result = code;
  }
  return result;
}

/** Builds the cluster tests' Kubernetes binaries when missing; a failure is left to the tests to report. */
async function prebuildKubernetes(): Promise<void> {
  const { ensureBinaries } = await import('./support/control-plane.js');
  await ensureBinaries((line) => process.stderr.write(`# ${line}\n`)).then(
    () => undefined,
    (err: unknown) => process.stderr.write(`# building the Kubernetes binaries failed: ${err instanceof Error ? err.message : String(err)}\n`),
  );
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
