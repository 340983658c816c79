// JSON bodies of the management API, parsed by fastify's own parser (which refuses prototype
// poisoning) and then refused when nested deeper than any spec is: 100,000 nested arrays parse,
// but the schema checks after them recurse and overflow the stack (a 500 instead of a 400).

import type { FastifyInstance } from 'fastify';
import { KubefnError } from '@kubefn/platform';

/** Deeper than any FunctionSpec or OpenFaaS body; deeper is refused with a 400. */
const maxJsonDepth = 64;

/** Whether `value` nests objects or arrays deeper than `max` levels (walked without recursion). */
function nestedDeeperThan(value: unknown, max: number): boolean {
  const stack: [unknown, number][] = [[value, 1]];
  for (let next = stack.pop(); next; next = stack.pop()) {
    const [v, depth] = next;
    if (v === null || typeof v !== 'object') continue;
    if (depth > max) return true;
    for (const child of Array.isArray(v) ? v : Object.values(v)) {
      if (child !== null && typeof child === 'object') stack.push([child, depth + 1]);
    }
  }
  return false;
}

/** Replaces the app's `application/json` parser with one that also bounds the nesting. */
export function boundJsonDepth(app: FastifyInstance, max = maxJsonDepth): void {
  const parse = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    parse(request, body as string, (err, value) => {
      if (err) return done(err, undefined);
      if (nestedDeeperThan(value, max)) return done(new KubefnError('BAD_REQUEST', `JSON body nested deeper than ${max} levels`), undefined);
      done(null, value);
    });
  });
}
