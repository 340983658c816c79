// The node agent's pod logs: read straight from podman for the tests (NodeAgent.logs), and served
// on the one kubelet endpoint the agent has, GET /containerLogs/<ns>/<pod>/<container> on the port
// the Node reports, which the apiserver proxies `kubectl logs` and client-node's Log to. Both are
// `podman logs` of the pod's newest container, stdout and stderr merged.

import { execFile, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import type { Podman } from '@kubefn/platform';
import { containerPrefix, nodeAgentLabel } from './node-agent-common.js';

export interface LogEndpoint {
  port: number;
  close(): Promise<void>;
}

export class ContainerLogs {
  constructor(
    private readonly podman: Podman,
    private readonly nodeName: string,
  ) {}

  /**
   * Serves /containerLogs on `host` over HTTPS with a self-signed certificate (the API server
   * does not verify a kubelet's certificate unless told to).
   */
  async serve(host: string): Promise<LogEndpoint> {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'kubefn-node-tls-'));
    let tls: { key: Buffer; cert: Buffer };
    try {
      const [key, cert] = [path.join(dir, 'key.pem'), path.join(dir, 'cert.pem')];
      await promisify(execFile)('openssl', [
        'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-keyout', key, '-out', cert,
        '-subj', `/CN=${this.nodeName}`, '-addext', `subjectAltName=IP:${host}`,
      ]);
      tls = { key: await readFile(key), cert: await readFile(cert) };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    const server = createHttpsServer(tls, (req, res) => void this.#serve(req.url ?? '', res));
    await new Promise<void>((resolve) => server.listen(0, host, resolve));
    return {
      port: (server.address() as { port: number }).port,
      close: async () => {
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
      },
    };
  }

  async #serve(url: string, res: ServerResponse): Promise<void> {
    const u = new URL(url, 'https://node');
    const m = /^\/containerLogs\/([^/]+)\/([^/]+)\/([^/]+)$/.exec(u.pathname);
    if (!m) return void res.writeHead(404).end('only /containerLogs is served by the kubefn node agent\n');
    const [, namespace, pod] = m.map(decodeURIComponent) as [string, string, string];
    const container = await this.#containerOf(namespace, pod);
    if (!container) return void res.writeHead(404).end(`no container of pod ${namespace}/${pod} on this node\n`);
    const q = u.searchParams;
    const args: string[] = [];
    if (q.get('follow') === 'true') args.push('--follow');
    if (q.get('timestamps') === 'true') args.push('--timestamps');
    if (q.get('tailLines')) args.push('--tail', String(Number(q.get('tailLines'))));
    if (q.get('sinceTime')) args.push('--since', q.get('sinceTime')!);
    else if (q.get('sinceSeconds')) args.push('--since', `${Number(q.get('sinceSeconds'))}s`);
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
    const child = this.#podmanLogs(container, args, res);
    res.on('close', () => {
      if (child.exitCode === null) child.kill('SIGTERM');
    });
  }

  /** The pod's container output (stdout and stderr, lines), as `podman logs`; `follow` keeps reading. */
  async *read(namespace: string, pod: string, options: { follow?: boolean; signal?: AbortSignal } = {}): AsyncIterable<string> {
    const container = await this.#containerOf(namespace, pod);
    if (!container) throw new Error(`no container of pod ${namespace}/${pod} on node ${this.nodeName}`);
    const merged = new PassThrough();
    const child = this.#podmanLogs(container, options.follow ? ['--follow'] : [], merged);
    const abort = () => child.kill('SIGTERM');
    options.signal?.addEventListener('abort', abort, { once: true });
    try {
      yield* createInterface({ input: merged, crlfDelay: Infinity });
    } finally {
      options.signal?.removeEventListener('abort', abort);
      if (child.exitCode === null) child.kill('SIGTERM');
    }
  }

  /** The (newest) container of a pod on this node, if any. */
  async #containerOf(namespace: string, pod: string): Promise<string | undefined> {
    const names = await this.podman.check(['ps', '--all', '--format', '{{.Names}}', '--filter', `label=${nodeAgentLabel}=${this.nodeName}`]);
    return names.split('\n').find((n) => n.startsWith(containerPrefix(namespace, pod)));
  }

  /** `podman logs <args> <container>`, stdout and stderr merged into `into`, which ends when both do. */
  #podmanLogs(container: string, args: string[], into: NodeJS.WritableStream): ChildProcess {
    const child = this.podman.spawn(['logs', ...args, container], {});
    let open = 2;
    for (const s of [child.stdout!, child.stderr!]) {
      s.pipe(into, { end: false });
      s.on('end', () => --open === 0 && into.end());
    }
    return child;
  }
}
