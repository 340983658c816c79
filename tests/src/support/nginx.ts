// Debian's nginx as a reverse proxy in front of one upstream, the way an operator would put it
// in front of a Node service: one worker, HTTP/1.1 keep-alive to the upstream, no access log.
// What the gateway benchmark measures kubefn's gateway against.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { waitFor } from '@kubefn/platform/testing';
import { freePort } from './control-plane.js';

export interface NginxProxy {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

/** The nginx binary: on PATH or in /usr/sbin, where Debian puts it. */
export const nginxBinary = '/usr/sbin/nginx';

/** Starts nginx (`workers` worker processes) proxying every path to `upstream` (http://host:port). */
export async function startNginxProxy(upstream: string, options: { workers?: number } = {}): Promise<NginxProxy> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kubefn-nginx-'));
  const port = await freePort();
  const target = new URL(upstream);
  const conf = `
${process.getuid?.() === 0 ? 'user root;' : ''}
worker_processes ${options.workers ?? 1};
daemon off;
master_process on;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_requests 1000000;
  upstream replica {
    server ${target.hostname}:${target.port};
    keepalive 128;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://replica;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`;
  await writeFile(path.join(dir, 'nginx.conf'), conf);
  const child: ChildProcess = spawn(nginxBinary, ['-p', dir, '-c', path.join(dir, 'nginx.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await waitFor(
    async () => {
      if (child.exitCode !== null) throw new Error(`nginx exited with ${child.exitCode}: ${stderr}`);
      const res = await fetch(`http://127.0.0.1:${port}/`).catch(() => undefined);
      await res?.body?.cancel();
      return res !== undefined;
    },
    { what: 'nginx listening', timeoutMs: 10_000 },
  );
  return {
    url: `http://127.0.0.1:${port}`,
    pid: child.pid!,
    async stop() {
      child.kill('SIGQUIT');
      await exited;
      await rm(dir, { recursive: true, force: true });
    },
  };
}
