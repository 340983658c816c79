// Collection of the bundles and apps that no function uses any more (the process driver's stores
// under `fn up`): what is referenced comes from the saved specs and the running functions.

import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import type { AppStore } from './app-store.js';
import type { BundleStore, CollectOptions } from './bundle-store.js';

/** Saved spec files larger than this are not read for digests, in bytes (a spec is a few KiB). */
const maxSpecFileBytes = 4 * 1024 * 1024;
const digestInText = /sha256:[0-9a-f]{64}/g;

/**
 * Every digest a function may still need: those named in the images of `running` specs and
 * every `sha256:<hex>` in the files of `<stateDir>/functions/` (saved specs, also ones that no
 * longer parse, which a person may still fix, and ones being written). Reads only: unlike
 * FunctionStore.loadAll it removes nothing, so it can run beside a deploy.
 */
export async function referencedDigests(stateDir: string, running: Iterable<string | undefined>): Promise<Set<string>> {
  const found = new Set<string>();
  const add = (text: string | undefined) => {
    for (const m of text?.match(digestInText) ?? []) found.add(m);
  };
  for (const image of running) add(image);
  const dir = path.join(stateDir, 'functions');
  const entries = await readdir(dir).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? [] : Promise.reject(err)));
  for (const entry of entries) {
    const file = path.join(dir, entry);
    const info = await stat(file).catch(() => undefined);
    if (!info?.isFile()) continue;
    if (info.size > maxSpecFileBytes) {
      // Unreadable as a spec, but it may name anything: collect nothing this time.
      throw new Error(`saved function file ${file} is ${info.size} bytes, over ${maxSpecFileBytes}: not collecting unreferenced bundles`);
    }
    add(await readFile(file, 'utf8').catch(() => undefined));
  }
  return found;
}

export interface CollectedBlobs {
  bundles: string[];
  apps: string[];
}

/** Removes from both stores what `referenced` does not name and the grace period does not protect. */
export async function collectStores(stores: { bundles?: BundleStore | undefined; apps?: AppStore | undefined }, referenced: ReadonlySet<string>, options: CollectOptions): Promise<CollectedBlobs> {
  return {
    bundles: stores.bundles ? await stores.bundles.collect(referenced, options) : [],
    apps: stores.apps ? await stores.apps.collect(referenced, options) : [],
  };
}
