// The entry of a gateway worker of `fn up --workers N`: node:cluster runs this file in each one.

import { runWorker } from './worker-gateway.js';

runWorker().catch((err: unknown) => {
  process.stderr.write(`gateway worker: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
