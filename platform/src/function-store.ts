// Saved function specs on disk (`<stateDir>/functions/<name>.json`), so a driver comes back after a restart.

import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import { validateName } from './names.js';
import { parseFunctionSpec, type FunctionSpec } from './spec.js';

export interface SavedFunction {
  spec: FunctionSpec;
  createdAt: string;
  updatedAt: string;
}

export interface LoadResult {
  functions: SavedFunction[];
  /** Files that could not be read or no longer validate; they are left in place for a person to look at. */
  failed: { file: string; error: Error }[];
}

export class FunctionStore {
  readonly dir: string;

  constructor(stateDir: string) {
    this.dir = path.join(path.resolve(stateDir), 'functions');
  }

  /** Writes to a temp file and renames it, so a crash leaves the old record or the new one. */
  async save(record: SavedFunction): Promise<void> {
    validateName(record.spec.name);
    await mkdir(this.dir, { recursive: true });
    const target = path.join(this.dir, `${record.spec.name}.json`);
    const temp = path.join(this.dir, `.tmp-${randomBytes(8).toString('hex')}`);
    try {
      const file = await open(temp, 'wx', 0o600);
      try {
        await file.writeFile(`${JSON.stringify({ version: 1, ...record }, null, 2)}\n`);
        await file.sync();
      } finally {
        await file.close();
      }
      await rename(temp, target);
    } catch (err) {
      await unlink(temp).catch(() => {});
      throw err;
    }
  }

  async remove(name: string): Promise<void> {
    validateName(name);
    await unlink(path.join(this.dir, `${name}.json`)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
  }

  async loadAll(): Promise<LoadResult> {
    const entries = await readdir(this.dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return [] as string[];
      throw err;
    });
    const result: LoadResult = { functions: [], failed: [] };
    for (const entry of entries.sort()) {
      const file = path.join(this.dir, entry);
      if (entry.startsWith('.tmp-')) {
        // Left by a crash mid-save; the record it was replacing is still there.
        await unlink(file).catch(() => {});
        continue;
      }
      if (!entry.endsWith('.json')) continue;
      try {
        const raw = JSON.parse(await readFile(file, 'utf8')) as Partial<SavedFunction>;
        const spec = parseFunctionSpec(raw.spec);
        if (`${spec.name}.json` !== entry) throw new Error(`file name does not match function name "${spec.name}"`);
        const now = new Date().toISOString();
        result.functions.push({
          spec,
          createdAt: typeof raw.createdAt === 'string' ? raw.createdAt : now,
          updatedAt: typeof raw.updatedAt === 'string' ? raw.updatedAt : now,
        });
      } catch (err) {
        result.failed.push({ file, error: err as Error });
      }
    }
    return result;
  }
}
