// Token auth for /system/*: `Authorization: Bearer <token>`, or Basic with the token as the
// password (what OpenFaaS clients send).

import { timingSafeEqual, createHash } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { KubefnError } from '@kubefn/platform';

const digest = (s: string) => createHash('sha256').update(s).digest();

export function checkToken(request: FastifyRequest, token: string, where = '`fn up` writes it to ~/.kubefn/token'): void {
  const header = request.headers.authorization ?? '';
  let presented: string | undefined;
  if (header.startsWith('Bearer ')) presented = header.slice(7).trim();
  else if (header.startsWith('Basic ')) {
    const decoded = Buffer.from(header.slice(6), 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    presented = colon >= 0 ? decoded.slice(colon + 1) : undefined;
  }
  // Compare digests so the comparison takes the same time whatever the lengths.
  if (presented === undefined || !timingSafeEqual(digest(presented), digest(token))) {
    throw new KubefnError('UNAUTHORIZED', 'missing or wrong token for the kubefn management API', {
      hint: `pass --token or set KUBEFN_TOKEN (${where})`,
    });
  }
}
