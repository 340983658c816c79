// One gateway worker of `fn up --workers N` (worker-pool.ts has the design): serves function
// calls on the shared port with its share of each function's containerConcurrency, passes every
// other request on to the primary's gateway, pokes the primary's autoscaler on a cold call, and
// answers the primary's scrape of its stats on a loopback port of its own.

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { FastifyBaseLogger } from 'fastify';
import { pokeAutoscaler } from '@kubefn/autoscaler';
import { createGateway } from '@kubefn/gateway';
import { isKubefnError, KubefnError, statsPath, type ErrorBody } from '@kubefn/platform';
import { Forwarder } from './forward.js';
import { createLogger } from './logger.js';
import { PrimaryDriver } from './primary-driver.js';
import { isMessage, type ToPrimary, type ToWorker, type WorkerConfig } from './worker-protocol.js';

/** How often a worker reports its invocation counts to the primary, ms (`fn list` shows their sum). */
const invocationsReportMs = 1000;

/** Longest a worker waits on stop for management calls it passed on (a followed log never ends), ms. */
const forwardGraceMs = 5000;

/** What a worker serves itself; everything else is the primary gateway's. */
export function servedByWorker(url: string | undefined): boolean {
  const u = url ?? '';
  return u.startsWith('/function/') || u === '/healthz' || u.startsWith('/healthz?');
}

/** Runs this process as a gateway worker until the primary says stop or goes away. */
export async function runWorker(): Promise<void> {
  const channel = process.send?.bind(process);
  if (!channel) throw new Error('a gateway worker runs under `fn up --workers`, with an IPC channel to the primary');
  const send = (message: ToPrimary): Promise<void> =>
    new Promise((resolve) => {
      if (!process.connected) return resolve();
      channel(message, undefined, {}, () => resolve());
    });
  // Ctrl-C reaches every process of the terminal's group: the primary decides when workers stop.
  process.on('SIGINT', () => {});
  const config = await new Promise<WorkerConfig>((resolve) => {
    const onMessage = (m: unknown) => {
      if (!isMessage<ToWorker>(m, ['config'])) return;
      process.off('message', onMessage);
      resolve((m as Extract<ToWorker, { kind: 'config' }>).config);
    };
    process.on('message', onMessage);
    void send({ kind: 'hello' });
  });
  try {
    await serve(config, send);
  } catch (err) {
    await send({ kind: 'failed', error: errorBody(err) });
    process.exit(1);
  }
}

async function serve(config: WorkerConfig, send: (message: ToPrimary) => Promise<void>): Promise<void> {
  const log = createLogger({ json: config.json }).child({ component: 'gateway', worker: config.index, pid: process.pid });
  const driver = new PrimaryDriver({ kind: config.driverKind, internal: config.primaryInternal, token: config.internalToken, send: (m) => void send(m) });
  const forwarder = new Forwarder({ target: config.primaryGateway, onWarning: (message, fields) => log.warn(message, fields) });
  const primary = { id: 'primary', url: config.primaryInternal };
  const gateway = createGateway({
    driver,
    // The users' token is the primary gateway's to check: nothing behind it is served here. This
    // one opens the worker's stats to the primary's autoscaler.
    token: config.internalToken,
    serveStats: true,
    serveAsync: false,
    forward: (req, res) => {
      if (servedByWorker(req.url)) return false;
      forwarder.forward(req, res);
      return true;
    },
    ...(config.maxBodyBytes !== undefined ? { maxBodyBytes: config.maxBodyBytes } : {}),
    ...(config.pipelining !== undefined ? { pipelining: config.pipelining } : {}),
    logger: log.pino.child({}, { level: config.requestLog ? 'info' : 'warn' }) as FastifyBaseLogger,
    requestLog: config.requestLog,
    // As a cluster gateway pokes the autoscaler's Service; the gateway keeps one poke in flight
    // per function (gateway/src/poker.ts): the promise is it.
    onNoReplica: (name, body) =>
      pokeAutoscaler({ peers: () => [primary], token: config.internalToken, what: 'the primary' }, name, body).catch((err: unknown) =>
        log.warn('scale from zero: poking the primary failed', { function: name, err }),
      ),
  });
  gateway.setShare({ index: config.index, count: config.shareCount });
  // The primary reads this worker's stats here: the shared port would hand the scrape to any worker.
  const stats = createServer((req, res) => {
    if ((req.url ?? '').startsWith(statsPath)) return gateway.app.routing(req, res);
    res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ code: 'NOT_FOUND', message: 'only /system/stats is served here' }));
  });
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      // Calls in flight finish (the gateway's close waits for them); passed-on calls get a grace.
      await Promise.all([gateway.close(), forwarder.close(forwardGraceMs)]);
      await new Promise((resolve) => stats.close(resolve));
      await driver.close();
      process.exit(0);
    })());
  process.on('message', (m: unknown) => {
    if (!isMessage<ToWorker>(m, ['endpoints', 'changed', 'stop'])) return;
    if (m.kind === 'endpoints') driver.pushed(m.name, m.endpoints);
    else if (m.kind === 'changed') gateway.context.catalog.invalidate(m.name);
    else void stop();
  });
  await gateway.app.ready();
  const statsUrl = await listenLoopback(stats);
  let url: string;
  try {
    url = await gateway.app.listen({ port: config.port, host: config.host });
  } catch (err) {
    stats.close();
    if ((err as { code?: string }).code === 'EADDRINUSE') {
      throw new KubefnError('START_FAILED', `port ${config.port} on ${config.host} is in use`, { hint: 'is another `fn up` running? stop it, or pass --port', cause: err });
    }
    throw err;
  }
  reportInvocations(gateway.context.invocations, send);
  // SIGTERM for this worker alone (the primary starts another), or for the whole group (the primary stops too).
  process.once('SIGTERM', () => void stop());
  await send({ kind: 'ready', url, statsUrl });
}

/** Sends the worker's invocation counts each interval in which they changed. */
function reportInvocations(invocations: ReadonlyMap<string, number>, send: (message: ToPrimary) => Promise<void>): void {
  let last = '';
  setInterval(() => {
    const totals = [...invocations];
    const now = JSON.stringify(totals);
    if (now === last) return;
    last = now;
    void send({ kind: 'invocations', totals });
  }, invocationsReportMs).unref();
}

function listenLoopback(server: Server): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    // exclusive: a port of this worker's own, not one shared through the primary as cluster workers' are.
    server.listen({ port: 0, host: '127.0.0.1', exclusive: true }, () => {
      server.off('error', reject);
      resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    });
  });
}

function errorBody(err: unknown): ErrorBody {
  if (isKubefnError(err)) return (err as KubefnError).toJSON();
  return { code: 'START_FAILED', message: `a gateway worker could not start: ${err instanceof Error ? err.message : String(err)}` };
}
