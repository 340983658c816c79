// Runs one benchmark as a child process, the way its npm script does, with its results written
// to a temporary directory: what the benchmark smoke tests use.

import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { repoRoot } from '../support/platform-process.js';

const exec = promisify(execFile);

export interface BenchRun {
  /** Where the benchmark wrote its results (BENCH_OUT), a temporary directory; remove it when done. */
  out: string;
  stdout: string;
  stderr: string;
}

/**
 * Runs `script` (relative to the repository root) with `args` (or the args for an output
 * directory, for a program that takes it as a flag) and `env`; rejects, with the benchmark's
 * output in the message, when it does not exit 0 within `timeoutMs`.
 */
export async function runBench(
  script: string,
  args: string[] | ((out: string) => string[]),
  options: { env?: Record<string, string>; timeoutMs: number },
): Promise<BenchRun> {
  const out = await mkdtemp(path.join(tmpdir(), 'kubefn-bench-out-'));
  if (typeof args === 'function') args = args(out);
  try {
    const { stdout, stderr } = await exec(process.execPath, [path.join(repoRoot, script), ...args], {
      cwd: repoRoot,
      env: { ...process.env, ...options.env, BENCH_OUT: out },
      timeout: options.timeoutMs,
      killSignal: 'SIGTERM',
      // The benchmarks print their tables, JSON and progress: well under this.
      maxBuffer: 64 * 1024 * 1024,
    });
    return { out, stdout, stderr };
  } catch (err) {
    await rm(out, { recursive: true, force: true });
    const e = err as Error & { code?: number | string; signal?: string; stdout?: string; stderr?: string };
    const tail = (s: string | undefined) => (s ?? '').split('\n').slice(-40).join('\n');
    throw new Error(`${script} ${args.join(' ')} failed (exit ${e.code ?? '?'}${e.signal ? `, ${e.signal}` : ''}):\n${tail(e.stderr)}\n${tail(e.stdout)}`, { cause: err });
  }
}

/** The JSON a benchmark wrote as `<name>.json` under its BENCH_OUT. */
export async function benchJson(run: BenchRun, name: string): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(path.join(run.out, `${name}.json`), 'utf8')) as Record<string, unknown>;
}
