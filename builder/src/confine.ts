// Keeps a build of uploaded source inside its directory: esbuild resolves and loads only files
// under the function directory (its node_modules included) and kubefn's own runtime, follows no
// symlink or tsconfig `extends` out of it, and no message shows the text of a file it did not own.

import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import { isBuiltin } from 'node:module';
import path from 'node:path';
import type * as esbuild from 'esbuild';
import { parse as parseJsonc } from 'jsonc-parser';
import { KubefnError } from '@kubefn/platform';
import { isInside, quote } from './source-paths.js';

/** What a confined build may read. */
export interface Confinement {
  /** The function directory as given, and its real path. */
  dir: string;
  root: string;
}

/** Most directory entries looked at for symlinks leading out. */
export const maxConfinedEntries = 200_000;
/** Most tsconfig files in one `extends` chain. */
const maxExtendsDepth = 32;

export const confineHint =
  'the build service reads only the uploaded files: copy what the function imports into its directory (packages into its node_modules) before deploying, and list files it reads at run time in `assets`';

/**
 * Checks `dir` for symlinks that lead out of it, and its tsconfig.json and jsconfig.json files
 * (those esbuild reads: outside node_modules) for an `extends` that does. Throws BUILD_FAILED
 * naming the link or config.
 *
 * esbuild itself still looks for package.json, tsconfig.json and jsconfig.json in every
 * directory above the function, and cannot be told not to: the nearest one applies, so the build
 * service puts empty ones right above the upload, and a message about one shows only its name.
 */
export async function confine(dir: string): Promise<Confinement> {
  const root = await realpath(dir);
  for (const config of await walkTree(root)) await checkExtends(config, root, [config]);
  return { dir, root };
}

/** Whether `abs` (absolute) is inside the function directory, by its text. */
export function within(c: Confinement, abs: string): boolean {
  return isInside(c.root, abs) || isInside(path.resolve(c.dir), abs);
}

/** Refuses symlinks leading out of `root`; returns the tsconfig.json and jsconfig.json files esbuild may read. */
async function walkTree(root: string): Promise<string[]> {
  const configs: string[] = [];
  let entries = 0;
  const walk = async (rel: string): Promise<void> => {
    for (const d of await readdir(path.join(root, rel), { withFileTypes: true })) {
      if (++entries > maxConfinedEntries) {
        throw new KubefnError('BUILD_FAILED', `the function directory holds more than ${maxConfinedEntries} files and directories`, {
          hint: 'leave build output and unused packages out of the upload (.kubefnignore)',
        });
      }
      const child = rel ? `${rel}/${d.name}` : d.name;
      if (d.isSymbolicLink()) {
        // A link that resolves nowhere cannot be read; one that resolves outside is refused.
        const real = await realpath(path.join(root, child)).catch(() => undefined);
        if (real !== undefined && !isInside(root, real)) {
          throw new KubefnError('BUILD_FAILED', `${quote(child)} is a symlink that leads outside the function directory`, {
            hint: 'replace the link with a copy of what it points at',
          });
        }
      } else if (d.isDirectory()) {
        await walk(child);
      } else if (d.isFile() && (d.name === 'tsconfig.json' || d.name === 'jsconfig.json') && !rel.split('/').includes('node_modules')) {
        // esbuild ignores the tsconfig files of packages.
        configs.push(path.join(root, child));
      }
    }
  };
  await walk('');
  return configs;
}

/** Every config `file` extends, recursively, must be a file inside `root`. */
async function checkExtends(file: string, root: string, chain: string[]): Promise<void> {
  const rel = path.relative(root, file).split(path.sep).join('/');
  // A config that does not parse is esbuild's to report: it is the function's own file.
  const config = parseJsonc(await readFile(file, 'utf8'), [], { allowTrailingComma: true }) as unknown;
  const value = config && typeof config === 'object' ? (config as { extends?: unknown }).extends : undefined;
  const list = typeof value === 'string' ? [value] : Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
  for (const spec of list) {
    const found = await resolveExtends(spec, path.dirname(file), root);
    if (typeof found !== 'string') {
      throw new KubefnError('BUILD_FAILED', `${rel} extends ${quote(spec)}, which ${found.why}`, { hint: confineHint });
    }
    if (chain.includes(found)) continue;
    if (chain.length >= maxExtendsDepth) throw new KubefnError('BUILD_FAILED', `${rel}: the tsconfig "extends" chain is longer than ${maxExtendsDepth}`);
    await checkExtends(found, root, [...chain, found]);
  }
}

/**
 * Where `extends` leads, as TypeScript and esbuild look: a path (with ".json" added, or a
 * directory's tsconfig.json), or a package in the nearest node_modules. A path is judged by its
 * text before anything is looked at; a package is looked for only up to `root`, where esbuild
 * would go on looking above it. `{ why }` when it does not stay inside.
 */
async function resolveExtends(spec: string, fromDir: string, root: string): Promise<string | { why: string }> {
  const isPath = path.isAbsolute(spec) || spec === '.' || spec === '..' || spec.startsWith('./') || spec.startsWith('../');
  const candidates: string[] = [];
  if (isPath) {
    const base = path.resolve(fromDir, spec);
    if (!isInside(root, base)) return { why: 'is outside the function directory' };
    candidates.push(base, `${base}.json`, path.join(base, 'tsconfig.json'));
  } else {
    for (let dir = fromDir; isInside(root, dir); dir = path.dirname(dir)) {
      if (path.basename(dir) === 'node_modules') continue;
      const base = path.join(dir, 'node_modules', spec);
      candidates.push(base, `${base}.json`, path.join(base, 'tsconfig.json'));
    }
  }
  for (const candidate of candidates) {
    if (!(await stat(candidate).catch(() => null))?.isFile()) continue;
    const real = await realpath(candidate);
    return isInside(root, real) ? real : { why: 'leads outside the function directory' };
  }
  // A missing path is esbuild's to warn about; a package it would look for above the root.
  return isPath ? path.resolve(fromDir, spec) : { why: "is not installed in the function's node_modules" };
}

/** Marks the plugin's own look-ups, so it does not judge them twice. */
const probe = 'kubefnConfineProbe';
export const confinePluginName = 'kubefn-confine';

/**
 * Refuses, with an error at the import, every import from the function's code that resolves
 * outside the function directory (real paths; an absolute or `../` path is judged by its text
 * before the file system is asked), and any load of such a file. Node built-ins, externals and
 * kubefn's own runtime (`trusted`, and what it imports in turn) pass.
 */
export function confinePlugin(c: Confinement, trusted: readonly string[]): esbuild.Plugin {
  return {
    name: confinePluginName,
    setup(build) {
      const kubefn = new Set(trusted);
      const refuse = (args: esbuild.OnResolveArgs, why: string): esbuild.OnResolveResult => {
        const importer = path.relative(c.dir, args.importer).split(path.sep).join('/');
        return { errors: [{ text: `${importer} imports ${quote(args.path)}, which ${why}: refused, the build reads only the function's own files` }] };
      };
      build.onResolve({ filter: /.*/ }, async (args) => {
        const data = args.pluginData as Record<string, unknown> | undefined;
        if (data?.[probe]) return undefined;
        const trustedImporter = kubefn.has(args.importer) || args.path.startsWith('kubefn:');
        const spec = args.path;
        if (!trustedImporter && !isBuiltin(spec) && (path.isAbsolute(spec) || /^\.\.?(?:\/|$)/.test(spec))) {
          if (!within(c, path.resolve(args.resolveDir, spec))) return refuse(args, 'is outside the function directory');
        }
        const r = await build.resolve(spec, {
          kind: args.kind,
          resolveDir: args.resolveDir,
          importer: args.importer,
          namespace: args.namespace,
          with: args.with,
          pluginData: { ...data, [probe]: true },
        });
        if (r.errors.length) return { errors: confineMessages(r.errors, c) };
        // Allowed: esbuild resolves it again itself, so the file keeps what only its own
        // resolution records (the module type from the enclosing package.json).
        if (r.external) return undefined;
        if (trustedImporter) {
          kubefn.add(r.path);
          return undefined;
        }
        // Only the file namespace reads files (the other is esbuild's own for data: URLs).
        if (r.namespace !== 'file') return undefined;
        const real = await realpath(r.path).catch(() => r.path);
        if (!isInside(c.root, real)) {
          return refuse(args, isBare(spec) ? "is not installed in the function's node_modules" : 'resolves outside the function directory');
        }
        return undefined;
      });
      build.onLoad({ filter: /.*/, namespace: 'file' }, async (args) => {
        if (kubefn.has(args.path)) return undefined;
        const real = await realpath(args.path).catch(() => args.path);
        if (isInside(c.root, real)) return undefined;
        // Reached without a resolve esbuild asks plugins about: a pattern import (`../${name}.txt`)
        // that matches files above the function. Which file is not said.
        return { errors: [{ text: "this import reads a file outside the function directory: refused, the build reads only the function's own files" }] };
      });
    },
  };
}

function isBare(spec: string): boolean {
  return !path.isAbsolute(spec) && !spec.startsWith('.');
}

/**
 * esbuild's messages with nothing of a file outside the function directory in them: one located
 * in such a file (a package.json above the directory that does not parse, say) keeps only the
 * file's name, never its line or the text esbuild made of it; notes located there are dropped.
 * This plugin's own refusals keep their text (it quotes only the function's code) but no line
 * outside. Repeats are dropped: one broken file above fails every import esbuild resolves.
 */
export function confineMessages(messages: readonly esbuild.Message[], c: Confinement): esbuild.Message[] {
  const foreign = (loc: esbuild.Location | null) => !!loc?.file && (loc.namespace === '' || loc.namespace === 'file') && !within(c, path.resolve(c.dir, loc.file));
  const out = new Map<string, esbuild.Message>();
  for (const m of messages) {
    const notes = m.notes.filter((n) => !foreign(n.location));
    let kept: esbuild.Message = { ...m, notes };
    // Where the problem surfaced (the import that made esbuild read the file) is no help either.
    if ((foreign(m.location) && m.pluginName === confinePluginName) || isForeignProblem(m)) kept = { ...kept, location: null };
    else if (foreign(m.location)) {
      kept = { ...kept, text: foreignProblem(path.basename(m.location!.file)), location: null, detail: undefined };
    }
    const key = JSON.stringify([kept.text, kept.location?.file, kept.location?.line, kept.location?.column]);
    if (!out.has(key)) out.set(key, kept);
  }
  return [...out.values()];
}

const foreignProblemStart = 'a problem in a file outside the function directory';

function foreignProblem(name: string): string {
  return `${foreignProblemStart}, ${quote(name)} (its text is not shown; a package.json or tsconfig.json above the build's directory is the server's, for its operator to fix)`;
}

/** A message that only says a file outside had a problem, not that the function's code was refused. */
export function isForeignProblem(m: esbuild.Message): boolean {
  return m.text.startsWith(foreignProblemStart);
}
