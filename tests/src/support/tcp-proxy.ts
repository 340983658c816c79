// A TCP proxy on loopback that a test can turn into a blackhole: while cut, it accepts
// connections and reads nothing from them, and stops forwarding on the ones it had, the way a
// dropped route or a DROP rule behaves (no refusal, no reset: the peer waits). restore() resets
// what it held and forwards again.

import net from 'node:net';

export interface TcpProxy {
  port: number;
  cut(): void;
  restore(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  let cut = false;
  const held = new Set<net.Socket>();
  const server = net.createServer((client) => {
    held.add(client);
    client.on('close', () => held.delete(client));
    client.on('error', () => {});
    if (cut) {
      client.pause();
      return;
    }
    const upstream = net.connect(target);
    held.add(upstream);
    upstream.on('close', () => held.delete(upstream));
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    cut() {
      cut = true;
      for (const s of held) {
        s.unpipe();
        s.pause();
      }
    },
    restore() {
      cut = false;
      for (const s of [...held]) s.resetAndDestroy();
    },
    async close() {
      for (const s of [...held]) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
