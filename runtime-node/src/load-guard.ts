// Imported by a function bundle before its handler module (see the builder's entry): an error
// thrown while the handler module is imported is reported as a load failure, not as a crash.
// run() takes over error handling once the module has loaded (endLoadGuard).

import { entryDir, exitWithLoadFailure, loadFailureOf, loadGuardKey } from './load-failure.js';

const onLoadError = (err: unknown): void => exitWithLoadFailure(loadFailureOf('import', err, entryDir()));

// A synchronous throw while an ES module evaluates arrives as 'uncaughtException' (origin
// 'unhandledRejection'), and so does a rejected top-level await.
process.on('uncaughtException', onLoadError);
(globalThis as Record<symbol, unknown>)[loadGuardKey] = onLoadError;
