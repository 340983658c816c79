// Bundles a function's handler into one module with an inline source map (CommonJS `fn.cjs`, or
// ES module `fn.mjs` when the code needs top-level await), and lists the files shipped next to
// it: the artifact every driver runs. runtime-node ships beside it as `fn.runtime.cjs`, the same
// for every function, loaded only when the bundle starts its own runtime: a warm runtime (a pool
// process, container or pod) already runs one and never reads it. Packages with native code stay
// out of the module and ship beside it as files (native-modules.ts).

import { createHash } from 'node:crypto';
import { readFile, realpath, rm, stat } from 'node:fs/promises';
import { isBuiltin } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { decode, encode } from '@jridgewell/sourcemap-codec';
import * as esbuild from 'esbuild';
import { KubefnError } from '@kubefn/platform';
import { writeAtomic } from './atomic-write.js';
import { confine, confineHint, confineMessages, confinePlugin, confinePluginName, isForeignProblem, type Confinement } from './confine.js';
import { isInside } from './source-paths.js';
import { binaryFallbackPlugin, FoundFiles, locationBanner, locationPlugin, textLoaders, type BundleFile } from './bundle-files.js';

export type { BundleFile } from './bundle-files.js';
import { NativeModules, packageDirOf, type NativeModule, type ShippedFile } from './native-modules.js';
import { hostTarget, type NativeTarget } from './native-platform.js';

export interface BundleOptions {
  /** The function's directory (where fn.yaml lives); imports resolve from here. */
  dir: string;
  /** Handler module, relative to `dir`. */
  handler: string;
  /** Where to write the bundle; default `<dir>/.kubefn/build`. */
  outDir?: string;
  minify?: boolean;
  /** Files or directories (relative to `dir`) shipped next to the bundle: fn.yaml's `assets`. */
  assets?: readonly string[];
  /** Where the function runs, for its native packages; default this machine (the process driver). */
  target?: NativeTarget;
  /**
   * The source is an upload (the build service): read nothing outside `dir` but kubefn's own
   * runtime. Imports, tsconfig `extends`, symlinks and shipped files that lead out are refused
   * with BUILD_FAILED, and no message shows a line of a file outside it. Off for a build of the
   * user's own checkout, where a workspace package may live above the function.
   */
  confine?: boolean;
}

export interface Bundle {
  /** Absolute path of the bundled module: `<outDir>/fn.cjs`, or `fn.mjs` for an ES module. */
  file: string;
  /** CommonJS unless the code needs an ES module (top-level await). */
  format: BundleFormat;
  /** sha256 of the bundle's bytes: "sha256:<hex>". */
  digest: string;
  bytes: number;
  warnings: string[];
  /**
   * Files shipped next to the bundle, sorted by path (`path` posix, relative to the app root,
   * where the bundle sits, /app in images; `source` absolute on this machine): the declared
   * assets, the files modules name by a literal path beside themselves
   * (`path.join(__dirname, 'x.html')`), and native packages under node_modules/.
   */
  files: BundleFile[];
  /** The native packages (and the function's own .node files) shipped, with the platform the target loads. */
  natives: NativeModule[];
}

export type BundleFormat = 'cjs' | 'esm';

/** The bundle's file name in the app root, by format. */
export const bundleFileNames: Record<BundleFormat, string> = { cjs: 'fn.cjs', esm: 'fn.mjs' };
/** runtime-node, bundled on its own, next to the bundle in the app root (one of `Bundle.files`). */
export const runtimeFileName = 'fn.runtime.cjs';

/** The files a bundle ships besides kubefn's runtime (which every bundle ships): the function's own. */
export function ownFiles(bundle: Pick<Bundle, 'files'>): BundleFile[] {
  return bundle.files.filter((f) => f.path !== runtimeFileName);
}

const runtimeSpecifier = 'kubefn:runtime';
const loadGuardSpecifier = 'kubefn:runtime/load-guard';
/** runtime-node's entry module, bundled into every function. */
export const runtimeEntry = fileURLToPath(import.meta.resolve('@kubefn/runtime-node'));
/** The warm runtime a process driver's pool starts (see runtime-node's warm.ts). */
export const warmRuntimeEntry = fileURLToPath(import.meta.resolve('@kubefn/runtime-node/warm'));
/** The guard the bundle imports before the handler, so a throw while the handler loads is reported as a load failure. */
export const loadGuardEntry = fileURLToPath(import.meta.resolve('@kubefn/runtime-node/load-guard'));


/** esbuild's ESM output cannot `require()` node builtins from bundled CommonJS without this. */
export const esmRequireBanner = "import { createRequire as __kubefnCreateRequire } from 'node:module';\n" +
  'const require = __kubefnCreateRequire(import.meta.url);';

export async function bundleFunction(options: BundleOptions): Promise<Bundle> {
  const dir = path.resolve(options.dir);
  const handlerPath = path.resolve(dir, options.handler);
  const rel = path.relative(dir, handlerPath);
  if (rel.startsWith('..') || path.isAbsolute(rel)) {
    throw new KubefnError('BUILD_FAILED', `handler "${options.handler}" is outside the function directory ${dir}`, {
      hint: 'point `handler` in fn.yaml at a file inside the function directory',
    });
  }
  const handlerFile = await stat(handlerPath).catch(() => null);
  if (!handlerFile?.isFile()) {
    throw new KubefnError('BUILD_FAILED', `handler file not found: ${handlerPath}`, {
      hint: 'check `handler` in fn.yaml, or run `fn init` to scaffold one',
    });
  }
  const outDir = path.resolve(options.outDir ?? path.join(dir, '.kubefn', 'build'));
  const confined = options.confine ? await confine(dir) : undefined;
  // The load guard is imported first so it is evaluated before the handler module: an error the
  // handler throws while loading is then reported as a load failure with its source location.
  // In a warm runtime (a pool process) the runtime is loaded already and takes the handler; the
  // runtime file beside the bundle is imported only when no warm runtime took it, so a warm
  // runtime reads and compiles the handler alone.
  const entry = [
    `import ${JSON.stringify(loadGuardSpecifier)};`,
    `import * as handlerModule from ${JSON.stringify('./' + rel.split(path.sep).join('/'))};`,
    "const warmRun = globalThis[Symbol.for('kubefn.warmRun')];",
    "if (typeof warmRun === 'function') warmRun(handlerModule);",
    `else require(${JSON.stringify(runtimeSpecifier)}).run(handlerModule);`,
  ].join('\n');

  const build = async (format: BundleFormat) => {
    const found = new FoundFiles(dir, (abs) => stablePath(dir, abs), confined?.root);
    await found.addAssets(options.assets ?? []);
    const natives = new NativeModules(confined?.root);
    const outFile = path.join(outDir, bundleFileNames[format]);
    const result = await esbuild.build({
      stdin: { contents: entry, resolveDir: dir, sourcefile: 'kubefn-entry.js', loader: 'js' },
      absWorkingDir: dir,
      bundle: true,
      platform: 'node',
      // CommonJS, so sloppy-mode code stays sloppy (an ES module is strict throughout).
      format,
      target: 'node20',
      // External here, inlined below once its paths no longer depend on where things live on disk.
      sourcemap: 'external',
      sourcesContent: false,
      minify: options.minify ?? false,
      keepNames: true,
      legalComments: 'none',
      banner: { js: locationBanner(format) },
      loader: textLoaders,
      write: false,
      metafile: true,
      logLevel: 'silent',
      outfile: outFile,
      plugins: [
        ...(confined ? [confinePlugin(confined, [runtimeEntry, loadGuardEntry])] : []),
        runtimePlugin,
        nativeModulesPlugin(natives),
        nativeAddonPlugin(natives, dir),
        locationPlugin({ dir, stable: found.stable, found }),
        binaryFallbackPlugin,
      ],
    });
    return { result, found, natives, outFile, format };
  };

  let built: Awaited<ReturnType<typeof build>>;
  try {
    built = await build('cjs').catch((err: unknown) => {
      // Top-level await exists only in ES modules: such code keeps an ES module bundle.
      if ((err as esbuild.BuildFailure).errors?.some((e) => /top-level await/i.test(e.text))) return build('esm');
      throw err;
    });
  } catch (err) {
    const failure = err as esbuild.BuildFailure;
    if (Array.isArray(failure.errors)) {
      const errors = confined ? confineMessages(failure.errors, confined) : failure.errors;
      const refused = errors.some((e) => e.pluginName === confinePluginName && !isForeignProblem(e));
      // A confined build's failure keeps no cause: esbuild's own message may quote a file outside.
      throw new KubefnError('BUILD_FAILED', `build failed:\n${formatMessages(errors, dir)}`, {
        ...(confined ? {} : { cause: err }),
        hint: refused ? confineHint : 'fix the errors above; paths are file:line:column relative to the function directory',
      });
    }
    throw err;
  }
  const { result, found, natives, outFile, format } = built;
  const shipped = await natives.ship(options.target ?? hostTarget(), dir);
  const output = result.outputFiles?.find((f) => f.path === outFile);
  const map = result.outputFiles?.find((f) => f.path === `${outFile}.map`);
  if (!output || !map) throw new KubefnError('INTERNAL', 'esbuild produced no output');
  const contents = Buffer.from(stableOutput(output.text, map.text, dir, outDir, Object.keys(result.metafile.inputs)));
  // Skip the write when unchanged so file watchers and mtimes stay quiet. Atomic, since two
  // builds of one function may bundle into the same place at once and read the file back.
  const previous = await readFile(outFile).catch(() => null);
  if (!previous?.equals(contents)) await writeAtomic(outFile, contents);
  // A bundle of the other format left from an earlier build would only mislead.
  await rm(path.join(outDir, bundleFileNames[format === 'cjs' ? 'esm' : 'cjs']), { force: true });
  const own = found.list();
  const ownPaths = new Set(own.map((f) => f.path));
  const files = [...own, ...shipped.files.filter((f) => !ownPaths.has(f.path))];
  if (confined) await refuseFilesOutside(files, confined);
  // kubefn's own runtime, shipped with every function (built here, not taken from its directory).
  const runtimeFile = path.join(outDir, runtimeFileName);
  const runtime = await bundledRuntime();
  if (!(await readFile(runtimeFile).catch(() => null))?.equals(runtime)) await writeAtomic(runtimeFile, runtime);
  files.push({ path: runtimeFileName, source: runtimeFile });
  files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const notes = own.filter((f) => !(options.assets ?? []).some((a) => f.path === a.replace(/\/+$/, '') || f.path.startsWith(a.replace(/\/+$/, '') + '/')));
  return {
    file: outFile,
    format,
    digest: `sha256:${createHash('sha256').update(contents).digest('hex')}`,
    bytes: contents.byteLength,
    warnings: [
      ...(result.warnings.length ? formatMessages(confined ? confineMessages(result.warnings, confined) : result.warnings, dir).split('\n') : []),
      ...found.warnings,
      ...shipped.warnings,
      ...(notes.length ? [`shipping ${notes.length} file(s) the code reads next to itself: ${notes.map((f) => f.path).slice(0, 10).join(', ')}${notes.length > 10 ? ', ...' : ''}`] : []),
    ],
    files,
    natives: shipped.natives,
  };
}

/** Where kubefn's own packages sit (runtime-node, platform): their files are named `kubefn/...` in every bundle. */
const kubefnRoot = path.resolve(path.dirname(runtimeEntry), '..', '..');

/**
 * Where a file sits in the app root, the same on every machine: relative to the function
 * directory, packages as `node_modules/<pkg>/...` wherever node_modules is, kubefn's own files as
 * `kubefn/<pkg>/...`. Anything else keeps its `../` path.
 */
export function stablePath(dir: string, file: string): string {
  const posix = path.relative(dir, file).split(path.sep).join('/');
  if (!posix.startsWith('../')) return posix;
  const modules = posix.lastIndexOf('node_modules/');
  if (modules >= 0) return posix.slice(modules);
  const inKubefn = path.relative(kubefnRoot, file);
  if (!inKubefn.startsWith('..') && !path.isAbsolute(inKubefn)) return `kubefn/${inKubefn.split(path.sep).join('/')}`;
  return posix;
}

/**
 * The bundle with every path in it independent of where the function, kubefn and node_modules
 * sit on disk, so the same source gives the same bytes on every machine and in the build
 * service's scratch directories: esbuild's `// <path>` module comments, its CommonJS module
 * keys and the source map's `sources` name files relative to the function directory, packages
 * from `node_modules/<pkg>` and kubefn's own as `kubefn/<pkg>`. The source map is then inlined.
 */
function stableOutput(js: string, mapText: string, dir: string, outDir: string, inputs: string[], stable = (file: string) => stablePath(dir, file)): string {
  const known = new Set(inputs);
  const map = JSON.parse(mapText) as { sources: string[]; mappings: string };
  const mappings = decode(map.mappings);
  const lines = js.replace(/\n\/\/# sourceMappingURL=[^\n]*\n?$/, '').split('\n');
  const body = lines.map((line, i) => {
    if (line.startsWith('// ') && known.has(line.slice(3))) return `// ${stable(path.resolve(dir, line.slice(3)))}`;
    // A module key changes length, so the columns mapped after it on the line move with it.
    const shifts: { at: number; by: number }[] = [];
    const out = line.replace(/"(\.\.\/[^"\n]*)"/g, (quoted: string, p: string, at: number) => {
      if (!known.has(p)) return quoted;
      const key = JSON.stringify(stable(path.resolve(dir, p)));
      shifts.push({ at: at + quoted.length, by: key.length - quoted.length });
      return key;
    });
    for (const segment of shifts.length ? (mappings[i] ?? []) : []) {
      segment[0] += shifts.reduce((n, s) => (s.at <= segment[0] ? n + s.by : n), 0);
    }
    return out;
  });
  map.mappings = encode(mappings);
  map.sources = map.sources.map((s) => stable(path.resolve(outDir, s)));
  return `${body.join('\n')}\n//# sourceMappingURL=data:application/json;base64,${Buffer.from(JSON.stringify(map)).toString('base64')}\n`;
}

const runtimePlugin: esbuild.Plugin = {
  name: 'kubefn-runtime',
  setup(build) {
    build.onResolve({ filter: /^kubefn:runtime$/ }, () => ({ path: `./${runtimeFileName}`, external: true }));
    build.onResolve({ filter: /^kubefn:runtime\/load-guard$/ }, () => ({ path: loadGuardEntry }));
  },
};

let runtimeBytes: Promise<Buffer> | undefined;

/**
 * runtime-node and its packages as one CommonJS module with an inline source map, its paths
 * named as in a bundle (`kubefn/...`, `node_modules/...`): the same bytes for every function and
 * on every machine. Built once per process.
 */
function bundledRuntime(): Promise<Buffer> {
  runtimeBytes ??= (async () => {
    const outfile = path.join(kubefnRoot, runtimeFileName);
    const result = await esbuild.build({
      entryPoints: [runtimeEntry],
      absWorkingDir: kubefnRoot,
      bundle: true,
      platform: 'node',
      format: 'cjs',
      target: 'node20',
      sourcemap: 'external',
      sourcesContent: false,
      keepNames: true,
      legalComments: 'none',
      write: false,
      metafile: true,
      logLevel: 'silent',
      outfile,
    });
    const output = result.outputFiles.find((f) => f.path === outfile);
    const map = result.outputFiles.find((f) => f.path === `${outfile}.map`);
    if (!output || !map) throw new KubefnError('INTERNAL', 'esbuild produced no runtime output');
    // Named as a function's bundle names them: kubefn's own files `kubefn/...`, packages `node_modules/...`.
    const name = (file: string) => stablePath(path.join(kubefnRoot, '.runtime'), file);
    return Buffer.from(stableOutput(output.text, map.text, kubefnRoot, kubefnRoot, Object.keys(result.metafile.inputs), name));
  })();
  runtimeBytes.catch(() => (runtimeBytes = undefined));
  return runtimeBytes;
}

/** Marks the resolver's own look-ups, so the plugin does not inspect them a second time. */
const nativeProbe = 'kubefnNativeProbe';

/**
 * Leaves packages with native code external (`import "sharp"` stays an import, found at run time
 * in the node_modules shipped beside the bundle): each bare import is resolved as esbuild would,
 * and the package it lands in is inspected once.
 */
function nativeModulesPlugin(natives: NativeModules): esbuild.Plugin {
  return {
    name: 'kubefn-native-modules',
    setup(build) {
      build.onResolve({ filter: /^[^./]/ }, async (args) => {
        if ((args.pluginData as Record<string, unknown> | undefined)?.[nativeProbe] || args.path.startsWith('kubefn:') || isBuiltin(args.path)) return undefined;
        const resolved = await build.resolve(args.path, {
          kind: args.kind,
          resolveDir: args.resolveDir,
          importer: args.importer,
          pluginData: { [nativeProbe]: true },
        });
        if (resolved.errors.length || resolved.external || !resolved.path) return undefined;
        const dir = packageDirOf(resolved.path);
        const segments = args.path.split('/');
        const name = segments.slice(0, args.path.startsWith('@') ? 2 : 1).join('/');
        if (!dir || !(await natives.add(name, dir))) return undefined;
        return { path: args.path, external: true };
      });
    },
  };
}

/**
 * A `.node` file the function imports itself (`require('./build/Release/addon.node')`) stays a
 * require, relative to the bundle, and ships at the same place relative to the function.
 */
function nativeAddonPlugin(natives: NativeModules, dir: string): esbuild.Plugin {
  return {
    name: 'kubefn-native-addons',
    setup(build) {
      build.onResolve({ filter: /\.node$/ }, async (args) => {
        const file = path.resolve(args.resolveDir, args.path);
        const rel = path.relative(dir, file);
        // A missing one is esbuild's to report, or to let be inside a try block.
        if (!(await stat(file).catch(() => null))?.isFile()) return undefined;
        if (rel.startsWith('..') || path.isAbsolute(rel) || packageDirOf(file)) {
          return { errors: [{ text: `native addon "${args.path}" is outside the function's own files and no package ships it` }] };
        }
        const posix = rel.split(path.sep).join('/');
        natives.ownAddons.set(posix, file);
        return { path: `./${posix}`, external: true };
      });
    },
  };
}

/** Every file shipped next to a confined bundle must really be inside the function directory. */
async function refuseFilesOutside(files: readonly BundleFile[], c: Confinement): Promise<void> {
  for (const f of files) {
    const real = await realpath(f.source).catch(() => f.source);
    if (!isInside(c.root, real)) {
      throw new KubefnError('BUILD_FAILED', `"${f.path}" would ship a file from outside the function directory`, { hint: confineHint });
    }
  }
}

function formatMessages(messages: esbuild.Message[], dir: string): string {
  return messages
    .map((m) => {
      const loc = m.location;
      if (!loc) return `error: ${m.text}`;
      const file = path.isAbsolute(loc.file) ? path.relative(dir, loc.file) : loc.file;
      const caret = `    ${loc.lineText}\n    ${' '.repeat(loc.column)}^`;
      return `${file}:${loc.line}:${loc.column + 1}: ${m.text}\n${caret}`;
    })
    .join('\n');
}
