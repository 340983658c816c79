// `fn init`: scaffolds a new function directory (fn.yaml, handler, package.json) from the templates.

import { mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Option, type Command } from 'commander';
import { validateName } from '@kubefn/platform/core';
import type { App } from './app.js';
import { checkArg, usageError } from './errors.js';

export type Lang = 'js' | 'ts';
export const langs: readonly Lang[] = ['js', 'ts'];

export interface InitOptions {
  name: string;
  lang: Lang;
  /** Target directory; default `<cwd>/<name>`. */
  dir?: string;
  cwd: string;
}

export interface InitResult {
  dir: string;
  files: string[];
}

/** Writes the scaffold. Refuses an invalid name or a non-empty target directory (usage errors). */
export async function initFunction(options: InitOptions): Promise<InitResult> {
  checkArg(() => validateName(options.name));
  const dir = path.resolve(options.cwd, options.dir ?? options.name);
  const existing = await readdir(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [];
    if (err.code === 'ENOTDIR') throw usageError(`${dir} exists and is not a directory`, 'choose another path with --dir');
    throw err;
  });
  if (existing.length > 0) {
    throw usageError(
      `${dir} is not empty (${existing.slice(0, 3).join(', ')}${existing.length > 3 ? ', ...' : ''})`,
      `choose an empty or new directory with --dir <path>, or remove the files first`,
    );
  }
  await mkdir(dir, { recursive: true });
  // The templates read the spec schemas (typebox): loaded here, not when `fn` starts.
  const { scaffold } = await import('./templates.js');
  const files = scaffold(options.name, options.lang);
  for (const [file, contents] of Object.entries(files)) {
    // `wx`: never overwrite a file that appeared since the emptiness check.
    await writeFile(path.join(dir, file), contents, { flag: 'wx' });
  }
  return { dir, files: Object.keys(files) };
}

export function registerInit(program: Command, app: App): void {
  program
    .command('init')
    .description('scaffold a new function: fn.yaml, a handler and package.json')
    .argument('<name>', 'function name (DNS-1123 label: lower-case letters, digits, "-")')
    .addOption(new Option('--lang <lang>', 'handler language').choices(langs).default('js'))
    .option('--dir <path>', 'directory to create (default: ./<name>)')
    .option('--json', 'print the created files as JSON')
    .addHelpText(
      'after',
      `
Examples:
  $ fn init hello                  # ./hello/fn.yaml + handler.js
  $ fn init greeter --lang ts      # TypeScript handler + tsconfig.json
  $ fn init api --dir ./functions/api
  $ cd hello && fn deploy`,
    )
    .action(async (name: string, opts: { lang: Lang; dir?: string; json?: boolean }) => {
      const result = await initFunction({ name, lang: opts.lang, cwd: app.io.cwd, ...(opts.dir ? { dir: opts.dir } : {}) });
      if (opts.json) return app.json(result);
      const rel = path.relative(app.io.cwd, result.dir) || '.';
      app.out(`created function "${name}" in ${rel}/`);
      for (const file of result.files) app.out(`  ${file}`);
      app.out('');
      app.out('next:');
      if (rel !== '.') app.out(`  cd ${rel}`);
      app.out('  fn deploy');
      app.out(`  fn invoke ${name}`);
    });
}
