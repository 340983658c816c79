// A module with neither a default function nor a fetch object: startup must fail and say what was expected.
import { run } from '../dist/index.js';

run({ handler: () => 'wrong export name' });
