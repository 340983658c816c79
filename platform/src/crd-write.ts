// Writes deploy/crd/function.yaml from FunctionSpecSchema (`npm run crd`); crd.test.ts fails if it drifts.

import { mkdir, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { functionCrdYaml } from './crd.js';

/** platform/dist/crd-write.js -> <repo>/deploy/crd/function.yaml */
const target = new URL('../../deploy/crd/function.yaml', import.meta.url);

async function main(): Promise<void> {
  await mkdir(new URL('.', target), { recursive: true });
  await writeFile(target, functionCrdYaml());
  console.log(`wrote ${fileURLToPath(target)}`);
}

await main();
