// The platform image's entry point (bundled to /app/kubefn-platform.mjs).

import { main } from './main.js';

main(process.argv.slice(2)).then((code) => process.exit(code));
