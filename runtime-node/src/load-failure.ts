// A handler that cannot load (its module throws on import, it has no usable default export, its
// init() throws) is reported apart from a crash: one structured stderr line, the termination log
// when there is one, and a distinct exit code, so the platform can fail a deploy at once with the
// reason and where in the source it is.

import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  formatLoadFailure,
  loadFailedExitCode,
  loadFailureMessageMax,
  terminationLogPath,
  type LoadFailure,
} from '@kubefn/platform/runtime-contract';

/** Frames of the runtime itself and of node, skipped when looking for the user's line. */
const runtimeFrame = /^node:|^internal\/|kubefn-entry\.js$|[/\\]kubefn[/\\](runtime-node|platform)[/\\]|[/\\]runtime-node[/\\](dist|src)[/\\]/;

/**
 * The LoadFailure for `err`. `baseDir` is the bundle's directory: source-mapped frames name the
 * function's files relative to it, so "handler.js:3:9" is what the author sees in their editor.
 */
export function loadFailureOf(stage: LoadFailure['stage'], err: unknown, baseDir: string | undefined): LoadFailure {
  const message = errorMessage(err).slice(0, loadFailureMessageMax);
  const failure: LoadFailure = { stage, message };
  // A missing export is found by the runtime, not thrown by the user's code: no line to point at.
  const location = stage === 'export' ? undefined : userLocation(err, baseDir);
  if (location) failure.location = location;
  return failure;
}

/** The first stack frame outside the runtime and node, as file:line:column. */
export function userLocation(err: unknown, baseDir: string | undefined): string | undefined {
  const stack = typeof (err as { stack?: unknown })?.stack === 'string' ? (err as { stack: string }).stack : '';
  for (const line of stack.split('\n')) {
    const m = /^\s*at (?:.*? \()?(.+?):(\d+):(\d+)\)?\s*$/.exec(line);
    if (!m) continue;
    let file = m[1]!;
    if (file.startsWith('file://')) {
      try {
        file = fileURLToPath(file);
      } catch {
        continue;
      }
    }
    if (runtimeFrame.test(file)) continue;
    if (baseDir && path.isAbsolute(file)) {
      const rel = path.relative(baseDir, file);
      if (!rel.startsWith('..') && !path.isAbsolute(rel)) file = rel.split(path.sep).join('/');
    }
    return `${file}:${m[2]}:${m[3]}`;
  }
  return undefined;
}

/**
 * Writes the load-failed line to stderr (a pipe: written before exit) and to the termination log
 * when the file exists (a Kubernetes container), then exits with loadFailedExitCode.
 */
export function exitWithLoadFailure(failure: LoadFailure): never {
  const line = formatLoadFailure(failure);
  process.stderr.write(`${line}\n`);
  try {
    if (existsSync(terminationLogPath)) writeFileSync(terminationLogPath, `${line}\n`);
  } catch {
    // Not writable here (read-only root, no such mount): the stderr line still says it.
  }
  process.exit(loadFailedExitCode);
}

/** Where load-guard leaves its listener for endLoadGuard (a global: the guard is its own module, imported only by bundles). */
export const loadGuardKey = Symbol.for('kubefn.loadGuard');

/** Called by run(): the handler module loaded, so later errors are crashes, not load failures. */
export function endLoadGuard(): void {
  const g = globalThis as Record<symbol, unknown>;
  const listener = g[loadGuardKey];
  if (typeof listener === 'function') process.off('uncaughtException', listener as (err: Error) => void);
  delete g[loadGuardKey];
}

/** The directory of the module node was asked to run: the bundle's, for a replica. */
export function entryDir(): string | undefined {
  const entry = process.argv[1];
  return entry ? path.dirname(path.resolve(entry)) : undefined;
}

function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message || err.name;
  return `a non-Error value was thrown: ${String(err)}`;
}
