// Token auth for /system/*: `Authorization: Bearer <token>`, or Basic with the token as the
// password (what OpenFaaS clients send).

import type { FastifyRequest } from 'fastify';
import { acceptedBy, KubefnError, type Credential } from '@kubefn/platform';

/** Throws UNAUTHORIZED unless the request carries a token one of `accepted` takes. */
export function checkToken(request: FastifyRequest, accepted: string | Credential | readonly (string | Credential)[], where = '`fn up` writes it to ~/.kubefn/token'): void {
  const header = request.headers.authorization ?? '';
  let presented: string | undefined;
  if (header.startsWith('Bearer ')) presented = header.slice(7).trim();
  else if (header.startsWith('Basic ')) {
    const decoded = Buffer.from(header.slice(6), 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    presented = colon >= 0 ? decoded.slice(colon + 1) : undefined;
  }
  const all = Array.isArray(accepted) ? (accepted as readonly (string | Credential)[]) : [accepted as string | Credential];
  if (presented === undefined || !acceptedBy(all, presented)) {
    throw new KubefnError('UNAUTHORIZED', 'missing or wrong token for the kubefn management API', {
      hint: `pass --token or set KUBEFN_TOKEN (${where})`,
    });
  }
}
