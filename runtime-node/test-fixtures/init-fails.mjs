// A replica whose init() throws: it must exit non-zero without ever reporting ready.
import { run } from '../dist/index.js';

run({
  default: () => 'never served',
  async init() {
    throw new Error('init boom: database unreachable');
  },
});
