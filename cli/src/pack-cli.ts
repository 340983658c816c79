// `npm run pack:cli [dir]`: packs `fn` as one self-contained npm tarball, which installs with
// `npm install -g kubefn-cli-<version>.tgz` and fetches nothing: kubefn's own packages
// (@kubefn/platform, builder, server, ...) are not published, so they travel inside it, and so does
// every third-party package they and the CLI need, exactly as the checkout's package-lock.json
// resolved them (with its overrides). It is for the OS and CPU it was packed on: esbuild's binary
// is one of those packages.
//
// Why everything: npm pack cannot bundle workspace packages from a checkout (they are symlinks),
// and a global install of a package that bundles only some of its dependencies leaves the others
// as empty directories (npm treats its whole node_modules as bundled). So the package is staged in
// a temporary directory — the CLI's bin/ and dist/, and under node_modules/ every package of its
// production dependency tree, laid out as in the checkout, kubefn's with only package.json and
// dist/ (tests left out) — and packed from there with bundleDependencies: true.

import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, realpath, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const exec = promisify(execFile);

interface Manifest {
  name: string;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  bundleDependencies?: unknown;
  devDependencies?: unknown;
  scripts?: unknown;
}

const cliDir = fileURLToPath(new URL('../', import.meta.url));
/** The checkout's root: node_modules/ there holds the dependencies and links every workspace package. */
const rootDir = path.resolve(cliDir, '..');
const rootModules = path.join(rootDir, 'node_modules');

/** Compiled tests, their maps and declarations, and build state: not part of an installed `fn`. */
const shipped = (file: string) => !/\.test\.(js|d\.ts)(\.map)?$/.test(file) && !file.endsWith('.tsbuildinfo');

const exists = (p: string) => stat(p).then(() => true, () => false);

async function readManifest(dir: string): Promise<Manifest> {
  return JSON.parse(await readFile(path.join(dir, 'package.json'), 'utf8')) as Manifest;
}

/** Where `name` is found from a package in `dir`, as Node resolves it: the nearest node_modules up the tree. */
async function findPackage(dir: string, name: string): Promise<string | undefined> {
  for (let at = dir; ; at = path.dirname(at)) {
    const candidate = path.join(at, 'node_modules', name);
    if (await exists(path.join(candidate, 'package.json'))) return candidate;
    if (at === rootDir || path.dirname(at) === at) return undefined;
  }
}

/**
 * Every package of the CLI's production dependency tree: its directory in the checkout (where Node
 * finds it; a workspace package by its link) and whether it is kubefn's own (a workspace).
 * A missing optional dependency (another platform's esbuild binary) is skipped; any other is an error.
 */
async function dependencyTree(): Promise<Map<string, { dir: string; workspace: boolean }>> {
  const found = new Map<string, { dir: string; workspace: boolean }>();
  const visit = async (fromDir: string, manifest: Manifest) => {
    const wanted: [string, boolean][] = [
      ...Object.keys(manifest.dependencies ?? {}).map((n): [string, boolean] => [n, true]),
      ...Object.keys(manifest.optionalDependencies ?? {}).map((n): [string, boolean] => [n, false]),
      ...Object.keys(manifest.peerDependencies ?? {}).map((n): [string, boolean] => [n, false]),
    ];
    for (const [name, required] of wanted) {
      const linked = await findPackage(fromDir, name);
      if (!linked) {
        if (required) throw new Error(`${manifest.name} needs ${name}, which is not installed: run npm ci first`);
        continue;
      }
      if (found.has(linked)) continue;
      const dir = await realpath(linked);
      const workspace = !dir.startsWith(rootModules + path.sep);
      found.set(linked, { dir, workspace });
      await visit(dir, await readManifest(dir));
    }
  };
  await visit(cliDir, await readManifest(cliDir));
  return found;
}

/** Stages and packs the CLI; resolves with the tarball's path. */
export async function packCli(destination: string): Promise<string> {
  const tree = await dependencyTree();
  const stage = await mkdtemp(path.join(tmpdir(), 'kubefn-cli-pack-'));
  try {
    const manifest = await readManifest(cliDir);
    delete manifest.devDependencies;
    delete manifest.scripts;
    manifest.bundleDependencies = true;
    await mkdir(stage, { recursive: true });
    await writeFile(path.join(stage, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
    for (const dir of ['bin', 'dist']) await cp(path.join(cliDir, dir), path.join(stage, dir), { recursive: true, filter: shipped });

    // A package's place in the stage mirrors its place in the checkout: node_modules/<name> for a
    // hoisted one, <its parent's place>/node_modules/<name> for a nested one; a workspace package is
    // placed where its link is, and what is nested inside its folder goes under that.
    const workspaceOf = new Map([...tree.values()].filter((p) => p.workspace).map((p) => [p.dir, p]));
    const stagePath = (checkoutDir: string): string => {
      for (const [wsDir] of workspaceOf) {
        if (checkoutDir.startsWith(wsDir + path.sep)) {
          const link = [...tree.entries()].find(([, p]) => p.dir === wsDir)![0];
          return path.join(stagePath(link), path.relative(wsDir, checkoutDir));
        }
      }
      return path.join(stage, path.relative(rootDir, checkoutDir));
    };
    for (const [linked, { dir, workspace }] of tree) {
      const to = stagePath(linked);
      await mkdir(to, { recursive: true });
      if (workspace) {
        await writeFile(path.join(to, 'package.json'), await readFile(path.join(dir, 'package.json')));
        await cp(path.join(dir, 'dist'), path.join(to, 'dist'), { recursive: true, filter: shipped });
      } else {
        // Its nested node_modules are packages of the tree too, copied in their own turn.
        await cp(dir, to, { recursive: true, filter: (f) => !path.relative(dir, f).split(path.sep).includes('node_modules') });
      }
    }
    await mkdir(destination, { recursive: true });
    const { stdout } = await exec('npm', ['pack', '--json', '--pack-destination', destination], { cwd: stage, maxBuffer: 64 * 1024 * 1024 });
    const [report] = JSON.parse(stdout) as { filename: string }[];
    return path.join(destination, report!.filename);
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}

if (process.argv[1] && (await realpath(process.argv[1])) === fileURLToPath(import.meta.url)) {
  console.log(await packCli(path.resolve(process.argv[2] ?? '.')));
}
