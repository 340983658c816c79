// Command line: `node @kubefn/runtime-node/main <handler-file>` serves an unbundled handler module as a replica.

import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { HandlerModule } from './handler.js';
import { exitWithLoadFailure, loadFailureOf } from './load-failure.js';
import { fatal, run } from './run.js';

export async function main(argv: string[]): Promise<void> {
  const file = argv[0];
  if (file === undefined) fatal('usage: node @kubefn/runtime-node/main <handler-file>');
  let mod: HandlerModule;
  try {
    mod = (await import(pathToFileURL(path.resolve(file)).href)) as HandlerModule;
  } catch (err) {
    process.stderr.write(`cannot load the handler module ${file}\n`);
    exitWithLoadFailure(loadFailureOf('import', err, path.dirname(path.resolve(file))));
  }
  run(mod);
}

void main(process.argv.slice(2));
