// The simulator's entry point: `npm run sim -- --help`.

import { main } from './cli.js';

process.exitCode = await main(process.argv.slice(2));
