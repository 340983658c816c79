// Which compiled test files make up each tier of the suite, found the same way in every workspace
// of the root package.json, so a new package's tests join without a list to keep up to date:
//
//   unit         every workspace's dist/**/*.test.js: no servers, seconds
//   integration  tests/dist/integration/**/*.test.js and any workspace's *.integration.test.js:
//                real podman, registry, nats-server, processes
//   cluster      tests/dist/cluster/**/*.test.js: a real control plane and node (root)
//
// A compiled test whose source is gone (renamed or deleted: `tsc -b` never removes its output) is
// left out, so a stale copy cannot run twice or under an old name.

import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';

export const tiers = ['unit', 'integration', 'cluster'] as const;
export type Tier = (typeof tiers)[number];

/** The workspace whose dist/integration and dist/cluster folders are tiers of their own. */
const suiteWorkspace = 'tests';

export interface TestFiles {
  /** Absolute paths, sorted, per tier. */
  files: Record<Tier, string[]>;
  /** Compiled tests left out because their source is gone, relative to the root. */
  stale: string[];
}

/**
 * The workspace folders of the root package.json, relative to `root`. npm's patterns are globs;
 * the two forms used here, "dir" and "dir/*", are all this understands, and anything else is an
 * error rather than a silently skipped package.
 */
export async function workspaceDirs(root: string): Promise<string[]> {
  const manifest = JSON.parse(await readFile(path.join(root, 'package.json'), 'utf8')) as { workspaces?: unknown };
  const patterns = Array.isArray(manifest.workspaces) ? manifest.workspaces : [];
  const dirs: string[] = [];
  for (const pattern of patterns) {
    if (typeof pattern !== 'string' || !/^[\w.-]+(\/[\w.-]+)*(\/\*)?$/.test(pattern)) {
      throw new Error(`package.json workspaces: ${JSON.stringify(pattern)} is not "dir" or "dir/*", the forms the test runner reads`);
    }
    if (!pattern.endsWith('/*')) {
      dirs.push(pattern);
      continue;
    }
    const parent = pattern.slice(0, -2);
    const entries = await readdir(path.join(root, parent), { withFileTypes: true }).catch(() => []);
    for (const e of entries) if (e.isDirectory() && existsSync(path.join(root, parent, e.name, 'package.json'))) dirs.push(`${parent}/${e.name}`);
  }
  return [...new Set(dirs)].sort();
}

/** The tier of a compiled test file, `rel` relative to its workspace's dist folder (forward slashes). */
export function tierOf(workspace: string, rel: string): Tier {
  if (workspace === suiteWorkspace && rel.startsWith('cluster/')) return 'cluster';
  if (workspace === suiteWorkspace && rel.startsWith('integration/')) return 'integration';
  return rel.endsWith('.integration.test.js') ? 'integration' : 'unit';
}

/** Every workspace's compiled tests (dist/ beside src/), sorted into tiers. */
export async function collectTestFiles(root: string): Promise<TestFiles> {
  const files: Record<Tier, string[]> = { unit: [], integration: [], cluster: [] };
  const stale: string[] = [];
  for (const workspace of await workspaceDirs(root)) {
    const dist = path.join(root, workspace, 'dist');
    const entries = await readdir(dist, { recursive: true }).catch(() => [] as string[]);
    for (const entry of entries) {
      const rel = entry.split(path.sep).join('/');
      if (!rel.endsWith('.test.js')) continue;
      const source = path.join(root, workspace, 'src', rel.replace(/\.js$/, ''));
      if (!['.ts', '.mts', '.tsx', '.js'].some((ext) => existsSync(source + ext))) {
        stale.push(path.posix.join(workspace, 'dist', rel));
        continue;
      }
      files[tierOf(workspace, rel)].push(path.join(dist, rel));
    }
  }
  for (const tier of tiers) files[tier].sort();
  return { files, stale: stale.sort() };
}
