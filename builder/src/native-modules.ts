// Finds the npm packages a bundle cannot inline because they load native code (`.node` addons,
// node-gyp builds, platform packages such as @img/sharp-linux-x64), checks the target can load
// them, and lists the files that ship them: each package with its runtime dependencies and
// installed platform packages, laid out under node_modules/ the way npm would.

import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { KubefnError } from '@kubefn/platform';
import { isInside } from './source-paths.js';
import { binaryPlatform, formatPlatform, runsOn, type NativePlatform, type NativeTarget } from './native-platform.js';

/** A native package found in a bundle's imports. */
export interface NativeModule {
  name: string;
  version: string;
  /** The platform of the binary the target loads, e.g. "linux-x64-glibc". */
  platform: string;
}

/** A file shipped next to the bundle: `path` posix, relative to the app root; `source` absolute. */
export interface ShippedFile {
  path: string;
  source: string;
}

interface PackageJson {
  name?: string;
  version?: string;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  gypfile?: boolean;
  binary?: unknown;
  os?: unknown;
  cpu?: unknown;
  libc?: unknown;
}

interface Inspected {
  dir: string;
  pkg: PackageJson;
  /** Why it is native (for messages), or undefined when it is plain JavaScript. */
  reason: string | undefined;
  /** Platforms of the `.node` files in the package and its installed platform packages. */
  binaries: NativePlatform[];
}

/** Dependencies that only a package with a native addon has: loaders, build and download tools, headers. */
const nativeToolkit = ['node-gyp-build', 'node-gyp-build-optional-packages', 'prebuild-install', '@mapbox/node-pre-gyp', 'node-pre-gyp', 'bindings', 'node-addon-api', 'nan', 'cmake-js'];

/** Most files and bytes shipped for native packages in one build. */
const maxFiles = 50_000;
const maxBytes = 1024 * 1024 * 1024;

/**
 * The package directory `file` belongs to when it sits in a node_modules folder
 * (`.../node_modules/<name>` or `.../node_modules/@scope/<name>`), else undefined.
 */
export function packageDirOf(file: string): string | undefined {
  const parts = file.split(path.sep);
  const at = parts.lastIndexOf('node_modules');
  if (at < 0 || at + 1 >= parts.length - 1) return undefined;
  const scoped = parts[at + 1]!.startsWith('@');
  if (scoped && at + 2 >= parts.length - 1) return undefined;
  return parts.slice(0, at + (scoped ? 3 : 2)).join(path.sep);
}

/** Inspects packages once each and collects the native ones a bundle imports. */
export class NativeModules {
  private readonly inspected = new Map<string, Promise<Inspected>>();
  /** Native packages the bundle imports, by name: their real directory. */
  readonly roots = new Map<string, string>();
  /** `.node` files the function itself imports (not from a package), relative to the function directory. */
  readonly ownAddons = new Map<string, string>();

  /** `within`: a real path packages are looked for under and never above (a confined build's function directory). */
  constructor(private readonly within?: string) {}

  /**
   * True when the package `name` at `dir` (where node finds it) is native, and it is now shipped;
   * throws when two copies of one name are.
   */
  async add(name: string, dir: string): Promise<boolean> {
    const found = await this.inspect(await realpath(dir));
    if (!found.reason) return false;
    const other = this.roots.get(name);
    if (other && other !== found.dir) {
      throw new KubefnError('BUILD_FAILED', `two copies of the native package ${name} are imported (${other} and ${found.dir})`, {
        hint: `dedupe them (npm dedupe ${name}) so one copy sits at the top of node_modules`,
      });
    }
    this.roots.set(name, found.dir);
    return true;
  }

  /**
   * The natives the target loads and the files that ship them. Throws BUILD_FAILED naming the
   * package when the target cannot load one (built for another platform, never compiled).
   */
  async ship(target: NativeTarget, functionDir: string): Promise<{ natives: NativeModule[]; files: ShippedFile[]; warnings: string[] }> {
    const natives: NativeModule[] = [];
    const warnings: string[] = [];
    const shipped = new Map<string, string>();
    for (const [name, dir] of [...this.roots].sort(([a], [b]) => a.localeCompare(b))) {
      const found = await this.inspect(dir);
      if (!osAllows(found.pkg.os, target.os)) {
        // fsevents and its kind: code that imports them must do without them elsewhere.
        warnings.push(`native package ${name} is only for ${JSON.stringify(found.pkg.os)} and is left out: the function runs on ${formatPlatform(target)}`);
        continue;
      }
      natives.push({ name, version: found.pkg.version ?? '', platform: formatPlatform(loadable(name, found, target)) });
      shipped.set(name, dir);
    }
    const files: ShippedFile[] = [];
    for (const [rel, source] of [...this.ownAddons].sort(([a], [b]) => a.localeCompare(b))) {
      const platform = await binaryPlatform(source, await readPackageJson(functionDir).catch(() => ({})));
      const found: Inspected = { dir: functionDir, pkg: {}, reason: 'a .node addon', binaries: platform ? [platform] : [] };
      natives.push({ name: rel, version: '', platform: formatPlatform(loadable(rel, found, target)) });
      files.push({ path: rel, source });
    }
    const budget = { files: 0, bytes: 0 };
    for (const [dest, dir] of await this.layout(shipped)) {
      for (const rel of await packageFiles(dir, budget)) files.push({ path: `${dest}/${rel}`, source: path.join(dir, ...rel.split('/')) });
    }
    files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    return { natives, files, warnings };
  }

  /**
   * Where every shipped package goes, as npm would place it: at node_modules/<name> unless another
   * package of that name is there, else nested under the package that needs it. Breadth first, so
   * a package's dependencies are placed before anything nested below it looks for them.
   */
  private async layout(roots: Map<string, string>): Promise<Map<string, string>> {
    const placed = new Map<string, string>();
    let level: { dest: string; dir: string }[] = [];
    for (const [name, dir] of roots) {
      placed.set(`node_modules/${name}`, dir);
      level.push({ dest: `node_modules/${name}`, dir });
    }
    const done = new Set<string>();
    while (level.length) {
      const next: { dest: string; dir: string }[] = [];
      for (const { dest, dir } of level) {
        if (done.has(dest)) continue;
        done.add(dest);
        for (const dep of await runtimeDependencies(await this.inspect(dir), this.within)) {
          const where = visibleFrom(placed, dest, dep.name);
          if (where && placed.get(where) === dep.dir) continue;
          const slot = where ? `${dest}/node_modules/${dep.name}` : `node_modules/${dep.name}`;
          placed.set(slot, dep.dir);
          next.push({ dest: slot, dir: dep.dir });
        }
      }
      level = next;
    }
    return placed;
  }

  /** `chain`: the packages whose platform packages are being looked at, so a cycle ends. */
  private inspect(dir: string, chain: readonly string[] = []): Promise<Inspected> {
    if (chain.includes(dir)) return Promise.resolve({ dir, pkg: {}, reason: undefined, binaries: [] });
    let found = this.inspected.get(dir);
    if (!found) {
      found = inspectPackage(dir, (d) => this.inspect(d, [...chain, dir]), this.within);
      this.inspected.set(dir, found);
    }
    return found;
  }
}

/** npm's `os` field: a list of platforms, or of "!platform" exclusions; absent allows every one. */
function osAllows(os: unknown, target: string): boolean {
  const list = (Array.isArray(os) ? os : typeof os === 'string' ? [os] : []).filter((x): x is string => typeof x === 'string');
  if (list.includes(`!${target}`)) return false;
  const positive = list.filter((x) => !x.startsWith('!'));
  return positive.length === 0 || positive.includes(target);
}

/** The binary of `found` the target loads, or the error that names the package and why not. */
function loadable(name: string, found: Inspected, target: NativeTarget): NativePlatform {
  const ok = found.binaries.find((b) => runsOn(b, target));
  if (ok) return ok;
  const want = formatPlatform(target);
  if (found.binaries.length === 0) {
    throw new KubefnError('BUILD_FAILED', `native package ${name} (${found.reason}) has no compiled .node file, so ${want} cannot load it`, {
      hint: `build it where it is installed (npm rebuild ${name}; npm may have skipped its install script) and build again`,
    });
  }
  const have = [...new Set(found.binaries.map(formatPlatform))].join(', ');
  throw new KubefnError('BUILD_FAILED', `native package ${name} is built for ${have}, but the function runs on ${want}`, {
    hint:
      `install ${name} for the target, e.g. npm install --os=${target.os} --cpu=${target.arch}${target.libc ? ` --libc=${target.libc}` : ''} ${name}` +
      (target.libc === 'musl' ? ', or build on a glibc base image (a Debian-based node image, or --base host)' : ''),
  });
}

async function inspectPackage(dir: string, inspect: (dir: string) => Promise<Inspected>, within: string | undefined): Promise<Inspected> {
  const pkg = await readPackageJson(dir);
  const binaries: NativePlatform[] = [];
  for (const file of await findAddons(dir)) {
    const p = await binaryPlatform(file, pkg);
    if (p) binaries.push(p);
  }
  const reasons: string[] = [];
  if (binaries.length) reasons.push('ships .node files');
  if (pkg.gypfile === true || (await stat(path.join(dir, 'binding.gyp')).catch(() => null))) reasons.push('has binding.gyp');
  if (pkg.binary !== undefined) reasons.push('is built by node-pre-gyp');
  const deps = { ...pkg.dependencies, ...pkg.optionalDependencies };
  const tools = nativeToolkit.filter((t) => t in deps);
  if (tools.length) reasons.push(`depends on ${tools.join(', ')}`);
  // Platform packages: optional dependencies npm installed for this platform, which say which
  // os and cpu they are for and hold binaries. (An optional dependency that names only an os,
  // such as fsevents, is an extra the package does without elsewhere, not its native code.)
  for (const name of Object.keys(pkg.optionalDependencies ?? {})) {
    const dep = await resolvePackage(dir, name, within);
    if (!dep) continue;
    const sub = await inspect(dep);
    if (sub.binaries.length && sub.pkg.os !== undefined && sub.pkg.cpu !== undefined) {
      binaries.push(...sub.binaries);
      reasons.push(`loads ${name}`);
    }
  }
  return { dir, pkg, reason: reasons.length ? reasons.join(', ') : undefined, binaries };
}

/** The installed packages `found` needs at run time: dependencies, installed optional and peer dependencies. */
async function runtimeDependencies(found: Inspected, within: string | undefined): Promise<{ name: string; dir: string }[]> {
  const out: { name: string; dir: string }[] = [];
  const { dependencies = {}, optionalDependencies = {}, peerDependencies = {} } = found.pkg;
  for (const name of Object.keys({ ...dependencies, ...optionalDependencies, ...peerDependencies }).sort()) {
    const dir = await resolvePackage(found.dir, name, within);
    if (dir) out.push({ name, dir });
    else if (name in dependencies && !(name in optionalDependencies)) {
      throw new KubefnError('BUILD_FAILED', `${found.pkg.name ?? found.dir} needs ${name}, which is not installed`, { hint: 'run npm install' });
    }
  }
  return out;
}

/** Node's lookup of package `name` from `fromDir`: the nearest node_modules/<name> above it (up to `within`), real path. */
async function resolvePackage(fromDir: string, name: string, within?: string): Promise<string | undefined> {
  for (let dir = fromDir; ; dir = path.dirname(dir)) {
    if (within !== undefined && !isInside(within, dir)) return undefined;
    if (path.basename(dir) !== 'node_modules') {
      const candidate = path.join(dir, 'node_modules', ...name.split('/'));
      if ((await stat(path.join(candidate, 'package.json')).catch(() => null))?.isFile()) return realpath(candidate);
    }
    if (path.dirname(dir) === dir) return undefined;
  }
}

/** The slot node would find `name` in, resolving from the package placed at `dest`. */
function visibleFrom(placed: Map<string, string>, dest: string, name: string): string | undefined {
  const parts = dest.split('/');
  for (let i = parts.length; i > 0; i--) {
    if (parts[i - 1] === 'node_modules') continue;
    const slot = `${parts.slice(0, i).join('/')}/node_modules/${name}`;
    if (placed.has(slot)) return slot;
  }
  return placed.has(`node_modules/${name}`) ? `node_modules/${name}` : undefined;
}

async function readPackageJson(dir: string): Promise<PackageJson> {
  const text = await readFile(path.join(dir, 'package.json'), 'utf8');
  try {
    return JSON.parse(text) as PackageJson;
  } catch (err) {
    throw new KubefnError('BUILD_FAILED', `${path.join(dir, 'package.json')} is not valid JSON`, { cause: err });
  }
}

/** The `.node` files in the package at `dir` (not in its node_modules): names only, so every imported package is cheap to look at. */
async function findAddons(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (at: string): Promise<void> => {
    for (const d of await readdir(at, { withFileTypes: true })) {
      if (d.isDirectory() && d.name !== 'node_modules') await walk(path.join(at, d.name));
      else if (d.name.endsWith('.node') && !d.isDirectory()) out.push(path.join(at, d.name));
    }
  };
  await walk(dir);
  return out.sort();
}

/**
 * The files of the package at `dir`, posix paths relative to it, sorted; its own node_modules
 * (placed separately) and directory symlinks left out. Counts against `budget`.
 */
async function packageFiles(dir: string, budget: { files: number; bytes: number }): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    for (const d of (await readdir(path.join(dir, rel), { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const child = rel ? `${rel}/${d.name}` : d.name;
      if (d.name === 'node_modules' && d.isDirectory()) continue;
      const info = d.isSymbolicLink() ? await stat(path.join(dir, child)).catch(() => null) : null;
      if (d.isDirectory()) await walk(child);
      else if (d.isFile() || info?.isFile()) {
        const size = info?.size ?? (await stat(path.join(dir, child))).size;
        budget.files += 1;
        budget.bytes += size;
        if (budget.files > maxFiles || budget.bytes > maxBytes) {
          throw new KubefnError('BUILD_FAILED', `native packages are over ${maxFiles} files or ${maxBytes / 1024 / 1024} MiB`, {
            hint: 'a function ships few native packages; check node_modules for stray build output',
          });
        }
        out.push(child);
      }
    }
  };
  await walk('');
  return out;
}
