// A replica entry laid out as a bundle's: the load guard first, then a handler module that throws
// while it is imported. It must exit with the load-failed code and say where the error is.
import '../dist/load-guard.js';
import * as handlerModule from './throws-on-import.mjs';
import { run } from '../dist/index.js';

run(handlerModule);
