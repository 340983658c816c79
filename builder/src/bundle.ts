// Bundles a function's handler together with runtime-node into one ES module with an inline
// source map: the artifact every driver runs. Packages with native code stay out of the module
// and ship beside it as files (native-modules.ts).

import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { isBuiltin } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { KubefnError } from '@kubefn/platform';
import { writeAtomic } from './atomic-write.js';
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
  /** Where the function runs, for its native packages; default this machine (the process driver). */
  target?: NativeTarget;
}

export interface Bundle {
  /** Absolute path of the bundled module. */
  file: string;
  /** sha256 of the bundle's bytes: "sha256:<hex>". */
  digest: string;
  bytes: number;
  warnings: string[];
  /**
   * Files shipped with the bundle: `path` posix, relative to the app root (where the bundle sits;
   * /app in images), `source` absolute on this machine. Native packages land under node_modules/.
   */
  files: ShippedFile[];
  /** The native packages (and the function's own .node files) shipped, with the platform the target loads. */
  natives: NativeModule[];
}

const runtimeSpecifier = 'kubefn:runtime';
/** runtime-node's entry module, bundled into every function. */
export const runtimeEntry = fileURLToPath(import.meta.resolve('@kubefn/runtime-node'));

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
  const found = await stat(handlerPath).catch(() => null);
  if (!found?.isFile()) {
    throw new KubefnError('BUILD_FAILED', `handler file not found: ${handlerPath}`, {
      hint: 'check `handler` in fn.yaml, or run `fn init` to scaffold one',
    });
  }
  const outDir = path.resolve(options.outDir ?? path.join(dir, '.kubefn', 'build'));
  const outFile = path.join(outDir, 'fn.mjs');
  const entry = [
    `import * as handlerModule from ${JSON.stringify('./' + rel.split(path.sep).join('/'))};`,
    `import { run } from ${JSON.stringify(runtimeSpecifier)};`,
    'run(handlerModule);',
  ].join('\n');

  const natives = new NativeModules();
  let result: esbuild.BuildResult<{ write: false; metafile: true }>;
  try {
    result = await esbuild.build({
      stdin: { contents: entry, resolveDir: dir, sourcefile: 'kubefn-entry.js', loader: 'js' },
      absWorkingDir: dir,
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      // External here, inlined below once its paths no longer depend on where things live on disk.
      sourcemap: 'external',
      sourcesContent: false,
      minify: options.minify ?? false,
      keepNames: true,
      legalComments: 'none',
      banner: { js: esmRequireBanner },
      write: false,
      metafile: true,
      logLevel: 'silent',
      outfile: outFile,
      plugins: [runtimePlugin, nativeModulesPlugin(natives), nativeAddonPlugin(natives, dir)],
    });
  } catch (err) {
    const failure = err as esbuild.BuildFailure;
    if (Array.isArray(failure.errors)) {
      throw new KubefnError('BUILD_FAILED', `build failed:\n${formatMessages(failure.errors, dir)}`, {
        cause: err,
        hint: 'fix the errors above; paths are file:line:column relative to the function directory',
      });
    }
    throw err;
  }
  const shipped = await natives.ship(options.target ?? hostTarget(), dir);
  const output = result.outputFiles?.find((f) => f.path === outFile);
  const map = result.outputFiles?.find((f) => f.path === `${outFile}.map`);
  if (!output || !map) throw new KubefnError('INTERNAL', 'esbuild produced no output');
  const contents = Buffer.from(stableOutput(output.text, map.text, dir, outDir, Object.keys(result.metafile.inputs)));
  // Skip the write when unchanged so file watchers and mtimes stay quiet. Atomic, since two
  // builds of one function may bundle into the same place at once and read the file back.
  const previous = await readFile(outFile).catch(() => null);
  if (!previous?.equals(contents)) await writeAtomic(outFile, contents);
  return {
    file: outFile,
    digest: `sha256:${createHash('sha256').update(contents).digest('hex')}`,
    bytes: contents.byteLength,
    warnings: [...(result.warnings.length ? formatMessages(result.warnings, dir).split('\n') : []), ...shipped.warnings],
    files: shipped.files,
    natives: shipped.natives,
  };
}

/** Where kubefn's own packages sit (runtime-node, platform): their files are named `kubefn/...` in every bundle. */
const kubefnRoot = path.resolve(path.dirname(runtimeEntry), '..', '..');

/**
 * The bundle with every path in it independent of where the function, kubefn and node_modules
 * sit on disk, so the same source gives the same bytes on every machine and in the build
 * service's scratch directories: esbuild's `// <path>` module comments, its CommonJS module
 * keys and the source map's `sources` name files relative to the function directory, packages
 * from `node_modules/<pkg>` and kubefn's own as `kubefn/<pkg>`. The source map is then inlined.
 */
function stableOutput(js: string, mapText: string, dir: string, outDir: string, inputs: string[]): string {
  const stable = (fromDir: string): string => {
    const rel = path.relative(dir, fromDir);
    const posix = rel.split(path.sep).join('/');
    if (!posix.startsWith('../')) return posix;
    const modules = posix.lastIndexOf('node_modules/');
    if (modules >= 0) return posix.slice(modules);
    const inKubefn = path.relative(kubefnRoot, fromDir);
    if (!inKubefn.startsWith('..') && !path.isAbsolute(inKubefn)) return `kubefn/${inKubefn.split(path.sep).join('/')}`;
    return posix;
  };
  const known = new Set(inputs);
  const body = js
    .replace(/^\/\/ (.+)$/gm, (line, p: string) => (known.has(p) ? `// ${stable(path.resolve(dir, p))}` : line))
    .replace(/"(\.\.\/[^"\n]*)"/g, (quoted, p: string) => (known.has(p) ? JSON.stringify(stable(path.resolve(dir, p))) : quoted))
    .replace(/\n\/\/# sourceMappingURL=[^\n]*\n?$/, '\n');
  const map = JSON.parse(mapText) as { sources: string[] };
  map.sources = map.sources.map((s) => stable(path.resolve(outDir, s)));
  return `${body}//# sourceMappingURL=data:application/json;base64,${Buffer.from(JSON.stringify(map)).toString('base64')}\n`;
}

const runtimePlugin: esbuild.Plugin = {
  name: 'kubefn-runtime',
  setup(build) {
    build.onResolve({ filter: /^kubefn:runtime$/ }, () => ({ path: runtimeEntry }));
  },
};

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
