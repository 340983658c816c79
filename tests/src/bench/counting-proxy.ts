// A TCP proxy on 127.0.0.1 that counts the bytes passing each way, so every client's traffic to a
// registry (kubefn's RegistryClient, podman) is measured the same way: on the wire, headers included.

import { connect, createServer, type AddressInfo, type Socket } from 'node:net';

export interface ByteCounts {
  /** Bytes from clients to the upstream: requests, headers and bodies. */
  sent: number;
  /** Bytes from the upstream back to clients. */
  received: number;
}

export interface CountingProxy {
  /** "127.0.0.1:PORT": use it in place of the upstream's host:port. */
  host: string;
  /** Totals since the proxy started; take the difference around what you measure. */
  counts(): ByteCounts;
  /** Stops listening and cuts open connections; idempotent. */
  close(): Promise<void>;
}

/** Starts a proxy forwarding every connection to `upstream` ("host:port"). */
export async function startCountingProxy(upstream: string): Promise<CountingProxy> {
  const [upstreamHost, upstreamPort] = splitHostPort(upstream);
  const totals: ByteCounts = { sent: 0, received: 0 };
  const open = new Set<Socket>();
  const track = (s: Socket): void => {
    open.add(s);
    s.once('close', () => open.delete(s));
  };

  const server = createServer((client) => {
    const target = connect(upstreamPort, upstreamHost);
    track(client);
    track(target);
    client.on('data', (chunk: Buffer) => (totals.sent += chunk.length));
    target.on('data', (chunk: Buffer) => (totals.received += chunk.length));
    // pipe() handles back-pressure and half-close; an error on either side ends both.
    client.pipe(target);
    target.pipe(client);
    const fail = (): void => {
      client.destroy();
      target.destroy();
    };
    client.on('error', fail);
    target.on('error', fail);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  let closing: Promise<void> | undefined;
  return {
    host: `127.0.0.1:${port}`,
    counts: () => ({ ...totals }),
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of open) s.destroy();
      })),
  };
}

function splitHostPort(hostPort: string): [string, number] {
  const i = hostPort.lastIndexOf(':');
  const port = Number(hostPort.slice(i + 1));
  if (i <= 0 || !Number.isInteger(port)) throw new Error(`expected host:port, got "${hostPort}"`);
  return [hostPort.slice(0, i), port];
}
