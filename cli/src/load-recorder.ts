// Records every module a process loads, one file URL or path a line, for the test that keeps `fn`'s
// start light: `node --import <this file> ...` with KUBEFN_LOAD_LOG=<file>. ES modules are seen by a
// load hook (module.register runs it in the hooks thread); CommonJS ones that only require() reaches
// are read from the require cache when the process exits.

import { appendFileSync } from 'node:fs';
import { createRequire, register } from 'node:module';
import { isMainThread } from 'node:worker_threads';

type NextLoad = (url: string, context: unknown) => Promise<unknown>;

let logFile: string | undefined;

if (isMainThread) {
  logFile = process.env.KUBEFN_LOAD_LOG;
  if (!logFile) throw new Error('load-recorder: set KUBEFN_LOAD_LOG to the file to record loaded modules in');
  register(import.meta.url, { data: { logFile } });
  const cache = createRequire(import.meta.url).cache;
  process.on('exit', () => appendFileSync(logFile!, Object.keys(cache).map((file) => `${file}\n`).join('')));
}

/** The hooks thread's start: where to write. */
export function initialize(data: { logFile: string }): void {
  logFile = data.logFile;
}

export async function load(url: string, context: unknown, nextLoad: NextLoad): Promise<unknown> {
  appendFileSync(logFile!, `${url}\n`);
  return nextLoad(url, context);
}
