// A replica for the process tests: counts init() runs, holds /slow calls until the test says
// "release" over IPC, crashes on request.
import { run } from '../dist/index.js';

let inits = 0;
let released;
const release = new Promise((resolve) => (released = resolve));
process.on('message', (m) => m === 'release' && released());

run({
  async init() {
    await new Promise((resolve) => setImmediate(resolve));
    inits++;
    console.log(JSON.stringify({ level: 'info', msg: 'init ran', inits }));
  },
  async default(request, context) {
    const path = new URL(request.url).pathname;
    if (path === '/slow') {
      context.logger.info('started');
      // Finish only when the test releases it, so the call is certainly in flight during the drain.
      await release;
      return 'done';
    }
    if (path === '/crash-later') {
      setTimeout(() => {
        throw new Error('background boom');
      }, 0);
      return 'answered';
    }
    if (path === '/reject-later') {
      setTimeout(() => void Promise.reject(new Error('unhandled boom')), 0);
      return 'answered';
    }
    return { inits };
  },
});
