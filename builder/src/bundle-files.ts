// Where bundled modules think they live, and which files next to them a function reads: gives
// every module its own __dirname, __filename, require.resolve and import.meta.url under the app
// root, and lists the files a module names by a literal path beside itself, to ship with it.

import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import type * as esbuild from 'esbuild';
import { KubefnError } from '@kubefn/platform';
import { isInside } from './source-paths.js';

/** A file shipped next to the bundle: `path` posix, relative to the app root; `source` absolute on this machine. */
export interface BundleFile {
  path: string;
  source: string;
}

/** Most files and bytes shipped next to one bundle, assets and found files together. */
export const maxFiles = 10_000;
export const maxFileBytes = 256 * 1024 * 1024;

/**
 * Text files import as a string, as `import page from './page.html'` means everywhere else;
 * JavaScript, TypeScript and JSON keep esbuild's own loaders; `.node` addons are refused (or
 * handled) at resolve time. Anything else a function imports arrives as bytes (a Uint8Array),
 * `.wasm` included, ready for `WebAssembly.instantiate`.
 */
export const textLoaders: Record<string, esbuild.Loader> = Object.fromEntries(
  ['.html', '.htm', '.txt', '.md', '.csv', '.tsv', '.sql', '.graphql', '.gql', '.css', '.svg', '.xml', '.yaml', '.yml'].map((e) => [e, 'text']),
);
const codeExtensions = new Set(['.js', '.mjs', '.cjs', '.jsx', '.ts', '.mts', '.cts', '.tsx', '.json', '.node']);

/** Loads every imported file esbuild has no loader for as bytes, instead of failing the build. */
export const binaryFallbackPlugin: esbuild.Plugin = {
  name: 'kubefn-binary-fallback',
  setup(build) {
    build.onLoad({ filter: /.*/, namespace: 'file' }, async (args) => {
      const ext = path.extname(args.path).toLowerCase();
      if (codeExtensions.has(ext) || ext in textLoaders) return undefined;
      return { contents: await readFile(args.path), loader: 'binary' };
    });
  },
};

/**
 * Banner helpers the per-module prelude calls. `__kubefn_root` is where the bundle sits at run
 * time (/app in an image, the unpacked app directory under the process driver).
 */
export function locationBanner(format: 'cjs' | 'esm'): string {
  const root =
    format === 'cjs'
      ? 'var __kubefn_root = __dirname;'
      : [
          "import { createRequire as __kubefnCreateRequire } from 'node:module';",
          'const require = __kubefnCreateRequire(import.meta.url);',
          "var __kubefn_root = require('node:path').dirname(require('node:url').fileURLToPath(import.meta.url));",
        ].join('\n');
  return [
    root,
    'var __kubefn_module = (rel) => {',
    "  const file = require('node:path').join(__kubefn_root, rel);",
    "  return { file, dir: require('node:path').dirname(file), url: require('node:url').pathToFileURL(file).href, require: require('node:module').createRequire(file) };",
    '};',
  ].join('\n');
}

export interface LocationOptions {
  /** The function's directory. */
  dir: string;
  /** A module's path under the app root ("src/h.js", "node_modules/pkg/x.js", "kubefn/..."). */
  stable(abs: string): string;
  /** Collects files modules name beside themselves, and warnings for those not found. */
  found: FoundFiles;
}

const jsLike = /\.(?:[cm]?[jt]sx?)$/;
const usesLocation = /__dirname|__filename|require\.resolve|import\.meta/;

/**
 * Gives each module that asks where it is the answer it would get unbundled, relative to the
 * app root: a one-line prelude on its first line (after a hashbang and a "use strict", so line
 * numbers and strictness stay as written) declares __dirname and __filename, and
 * `require.resolve` and `import.meta.url|dirname|filename` are pointed at the module's own path.
 */
export function locationPlugin(options: LocationOptions): esbuild.Plugin {
  return {
    name: 'kubefn-module-location',
    setup(build) {
      build.onLoad({ filter: jsLike, namespace: 'file' }, async (args) => {
        const source = await readFile(args.path, 'utf8');
        if (!usesLocation.test(source)) return undefined;
        const rel = options.stable(args.path);
        if (!rel.startsWith('kubefn/')) await options.found.scan(args.path, rel, source);
        return { contents: withLocation(source, rel), loader: loaderFor(args.path), resolveDir: path.dirname(args.path) };
      });
    },
  };
}

/** `source` with the location prelude and rewrites for the module at `rel` under the app root. */
export function withLocation(source: string, rel: string): string {
  const declared = (name: string) => new RegExp(`\\b(?:var|let|const|function|class)\\s+${name}\\b`).test(source);
  const decls = [`__kubefn_m = __kubefn_module(${JSON.stringify(rel)})`];
  if (/\b__dirname\b/.test(source) && !declared('__dirname')) decls.push('__dirname = __kubefn_m.dir');
  if (/\b__filename\b/.test(source) && !declared('__filename')) decls.push('__filename = __kubefn_m.file');
  const body = source
    .replace(/\brequire\.resolve\b/g, '__kubefn_m.require.resolve')
    .replace(/\bimport\.meta\.url\b/g, '__kubefn_m.url')
    .replace(/\bimport\.meta\.dirname\b/g, '__kubefn_m.dir')
    .replace(/\bimport\.meta\.filename\b/g, '__kubefn_m.file');
  const prologue = /^(?:#![^\n]*\n)?(?:\s|\/\/[^\n]*\n|\/\*[\s\S]*?\*\/)*(?:(['"])use strict\1\s*;?)?/.exec(body)![0];
  return `${prologue}var ${decls.join(', ')};${body.slice(prologue.length)}`;
}

function loaderFor(file: string): esbuild.Loader {
  const ext = path.extname(file);
  if (ext === '.tsx') return 'tsx';
  if (ext === '.jsx') return 'jsx';
  return ext.includes('t') && ext !== '.js' ? 'ts' : 'js';
}

/** Paths a module names beside itself by a literal: the module's directory joined with these parts. */
export function namedPaths(source: string): string[][] {
  const out: string[][] = [];
  const literal = String.raw`(['"\`])([^'"\`$\n]*)\1`;
  const literals = (list: string) => [...list.matchAll(new RegExp(literal, 'g'))].map((m) => m[2]!);
  // path.join(__dirname, 'a', 'b') and path.resolve(__dirname, '../t'), with or without `path.`
  const inList = String.raw`(['"\`])[^'"\`$\n]*\2`;
  for (const m of source.matchAll(new RegExp(String.raw`\b(?:join|resolve)\(\s*__dirname\s*((?:,\s*${inList}\s*)+)\)`, 'g'))) out.push(literals(m[1]!));
  // __dirname + '/x' and `${__dirname}/x`
  for (const m of source.matchAll(new RegExp(String.raw`\b__dirname\s*\+\s*${literal}`, 'g'))) out.push([m[2]!]);
  for (const m of source.matchAll(/`\$\{__dirname\}([^`$]*)`/g)) out.push([m[1]!]);
  // new URL('./x', import.meta.url)
  for (const m of source.matchAll(new RegExp(String.raw`\bnew URL\(\s*${literal}\s*,\s*import\.meta\.url\s*\)`, 'g'))) out.push([m[2]!]);
  // require.resolve('./x')
  for (const m of source.matchAll(/\brequire\.resolve\(\s*(['"])(\.{1,2}\/[^'"\n]*)\1\s*[,)]/g)) out.push([m[2]!]);
  return out.filter((parts) => parts.join('') !== '');
}

/** The files shipped with one bundle: declared assets, then what modules name beside themselves. */
export class FoundFiles {
  readonly files = new Map<string, string>();
  readonly warnings: string[] = [];
  #bytes = 0;

  /** `confinedTo`: the real path of the function directory when nothing outside it may ship (an uploaded source). */
  constructor(
    readonly dir: string,
    readonly stable: (abs: string) => string,
    readonly confinedTo?: string,
  ) {}

  /** Adds what `source` (module `file`, at `rel` under the app root) names beside itself. */
  async scan(file: string, rel: string, source: string): Promise<void> {
    const moduleDir = path.dirname(file);
    for (const parts of namedPaths(source)) {
      const target = path.resolve(moduleDir, ...parts.map((p) => p.replace(/^\/+/, '')));
      const named = JSON.stringify(parts.join(''));
      // The module's own directory or one above it is a package root, not a file it reads.
      if (!path.relative(target, moduleDir).startsWith('..')) continue;
      const where = this.stable(target);
      // A confined build does not even look at a path outside the function directory.
      const outside = this.confinedTo !== undefined && !isInside(this.confinedTo, target);
      const info = outside ? undefined : await stat(target).catch(() => undefined);
      if (outside || !info || where.startsWith('../') || where.startsWith('kubefn/')) {
        this.warnings.push(
          `${rel} reads ${named} next to itself, which ${outside || info ? 'is outside the function directory' : 'was not found'}: ` +
            'list the file in `assets` in fn.yaml (copied into the function directory) if the function needs it at run time',
        );
        continue;
      }
      await this.add(target, where, `${rel} reads ${named}`);
    }
  }

  /** The files `assets` in fn.yaml names, relative to the function directory; directories are walked. */
  async addAssets(assets: readonly string[]): Promise<void> {
    const root = await realpath(this.dir);
    for (const [i, a] of assets.entries()) {
      const rel = a.replace(/\/+$/, '');
      const real = await realpath(path.join(root, rel)).catch(() => undefined);
      if (!real) throw new KubefnError('BUILD_FAILED', `asset "${rel}" (assets.${i}) does not exist`, { hint: 'fix `assets` in fn.yaml' });
      const inside = path.relative(root, real);
      if (inside.startsWith('..') || path.isAbsolute(inside)) {
        throw new KubefnError('BUILD_FAILED', `asset "${rel}" (assets.${i}) leads outside the function directory`, { hint: 'copy the file into the function directory' });
      }
      await this.add(path.join(root, rel), rel.split(path.sep).join('/'), `assets.${i}`, root);
    }
  }

  /** Adds a file, or a directory's files (symlinks followed only while they stay inside `within`). */
  async add(abs: string, at: string, why: string, within?: string): Promise<void> {
    const real = await realpath(abs).catch(() => undefined);
    if (!real) throw new KubefnError('BUILD_FAILED', `"${at}" (${why}) does not exist`, { hint: 'fix `assets` in fn.yaml' });
    for (const root of [within, this.confinedTo]) {
      if (root === undefined) continue;
      const inside = path.relative(root, real);
      if (inside.startsWith('..') || path.isAbsolute(inside)) {
        throw new KubefnError('BUILD_FAILED', `"${at}" (${why}) leads outside the function directory`, { hint: 'copy the file into the function directory' });
      }
    }
    const info = await stat(real);
    if (info.isDirectory()) {
      for (const entry of (await readdir(real)).sort()) {
        if (entry === '.kubefn' || (entry === 'node_modules' && within === undefined)) continue;
        await this.add(path.join(abs, entry), `${at}/${entry}`, why, within);
      }
      return;
    }
    if (!info.isFile()) throw new KubefnError('BUILD_FAILED', `"${at}" (${why}) is not a regular file`);
    if (this.files.has(at)) return;
    this.#bytes += info.size;
    if (this.#bytes > maxFileBytes || this.files.size >= maxFiles) {
      throw new KubefnError('BUILD_FAILED', `the files shipped with the bundle are over ${maxFileBytes / 1024 / 1024} MiB or ${maxFiles} files (at ${at}, ${why})`, {
        hint: 'ship large data from object storage instead',
      });
    }
    if (at === 'fn.cjs' || at === 'fn.mjs' || at === 'fn.runtime.cjs') {
      throw new KubefnError('BUILD_FAILED', `a file named "${at}" (${why}) would replace ${at === 'fn.runtime.cjs' ? "kubefn's runtime" : 'the bundle'}`, { hint: 'rename it' });
    }
    this.files.set(at, real);
  }

  /** The list for `Bundle.files`, sorted by path so builds are reproducible. */
  list(): BundleFile[] {
    return [...this.files].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([p, source]) => ({ path: p, source }));
  }
}
