// A replica for the process tests: counts init() runs, holds /slow calls until SIGTERM, crashes on request.
import { run } from '../dist/index.js';

let inits = 0;
let terminated;
const sigterm = new Promise((resolve) => (terminated = resolve));
process.on('SIGTERM', () => terminated());

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
      // Finish only after the drain began, so the call is certainly in flight at SIGTERM.
      await sigterm;
      await new Promise((resolve) => setTimeout(resolve, 50));
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
