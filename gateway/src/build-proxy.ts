// POST /system/builds on a gateway in a cluster, passed through to a builder replica: `fn deploy`
// talks to the gateway only, and the build runs where the registry credentials are.

import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { FastifyPluginAsync } from 'fastify';
import { KubefnError, presentedToken, type Credential, type Peer } from '@kubefn/platform';

/**
 * /system/builds on the gateway, passed through to a builder replica: the request body (the source
 * archive) and the NDJSON answer stream both ways unbuffered. Registered behind the gateway's token.
 */
export interface BuildProxyOptions {
  /** The builder replicas now; called on every build. */
  builders: () => Peer[];
  /** The token the builders check (a cluster's component token). */
  token: string | Credential;
  /** The builders' Service, for the error when none is ready (e.g. "kubefn-builder"). */
  service: string;
}

export function buildProxyPlugin({ builders, token, service }: BuildProxyOptions): FastifyPluginAsync {
  return async (app) => {
    app.removeAllContentTypeParsers();
    app.addContentTypeParser('*', (_request, payload, done) => done(null, payload));
    app.post('/system/builds', async (request, reply) => {
      const peer = builders()[0];
      if (!peer) {
        throw new KubefnError('UNAVAILABLE', `no ready builder: the ${service} Service has no ready pod`, {
          hint: `check it: kubectl -n <namespace> get pods -l app.kubernetes.io/name=${service}`,
        });
      }
      const abort = new AbortController();
      reply.raw.on('close', () => abort.abort());
      const q = request.url.indexOf('?');
      const query = q >= 0 ? request.url.slice(q) : '';
      const headers: Record<string, string> = { authorization: `Bearer ${presentedToken(token)}` };
      for (const h of ['content-type', 'content-length'] as const) {
        const v = request.headers[h];
        if (typeof v === 'string') headers[h] = v;
      }
      let res: Response;
      try {
        res = await fetch(`${peer.url}/system/builds${query}`, {
          method: 'POST',
          headers,
          body: Readable.toWeb(request.body as Readable) as ReadableStream<Uint8Array>,
          duplex: 'half',
          signal: abort.signal,
        } as RequestInit);
      } catch (err) {
        throw new KubefnError('UNAVAILABLE', `builder ${peer.id} did not answer: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      }
      const type = res.headers.get('content-type');
      reply.hijack();
      reply.raw.writeHead(res.status, type ? { 'content-type': type } : {});
      if (res.body) {
        await pipeline(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>), reply.raw).catch(() => reply.raw.destroy());
      } else {
        reply.raw.end();
      }
    });
  };
}
