// The admin port: liveness, readiness and metrics on their own server, where no user route can shadow them.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { adminPaths } from '@kubefn/platform/runtime-contract';
import type { RuntimeMetrics } from './metrics.js';
import type { RootLogger } from './logger.js';

export type Readiness = 'starting' | 'ready' | 'draining';

export function createAdminServer(readiness: () => Readiness, metrics: RuntimeMetrics, logger: RootLogger): Server {
  return createServer((req, res) => {
    handle(req, res, readiness, metrics).catch((err: unknown) => {
      logger.error('admin request failed', { err, path: req.url });
      if (!res.headersSent) send(res, 500, 'text/plain; charset=utf-8', 'internal error');
      else res.destroy();
    });
  });
}

async function handle(
  req: IncomingMessage,
  res: ServerResponse,
  readiness: () => Readiness,
  metrics: RuntimeMetrics,
): Promise<void> {
  const path = (req.url ?? '/').split('?', 1)[0];
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' });
    res.end('method not allowed');
    return;
  }
  switch (path) {
    case adminPaths.health:
      // Alive as long as this process answers; a wedged event loop fails the probe by not answering.
      return send(res, 200, 'text/plain; charset=utf-8', 'ok');
    case adminPaths.ready: {
      const state = readiness();
      return send(res, state === 'ready' ? 200 : 503, 'text/plain; charset=utf-8', state);
    }
    case adminPaths.metrics:
      return send(res, 200, metrics.contentType, await metrics.text());
    default:
      return send(res, 404, 'text/plain; charset=utf-8', 'not found');
  }
}

function send(res: ServerResponse, status: number, contentType: string, body: string): void {
  res.writeHead(status, {
    'content-type': contentType,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  });
  res.end(body);
}
