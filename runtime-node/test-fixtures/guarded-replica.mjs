// replica.mjs behind the load guard, as a bundle runs it: a crash after ready is still a crash.
import '../dist/load-guard.js';
import './replica.mjs';
