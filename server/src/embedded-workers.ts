// `fn up --workers N`, the primary's wiring (worker-pool.ts has the design): its gateway and an
// internal server listen on loopback ports only, the workers on the platform's port.

import { randomBytes } from 'node:crypto';
import Fastify from 'fastify';
import { HttpStatsSource, type Autoscaler, type StatsSource } from '@kubefn/autoscaler';
import { checkToken, kubefnErrorHandler, kubefnFrameworkErrors, kubefnNotFound, type Gateway } from '@kubefn/gateway';
import type { Driver } from '@kubefn/platform';
import { pokePlugin } from './components.js';
import type { Logger } from './logger.js';
import { WorkerPool } from './worker-pool.js';
import { functionStatusRoute, type WorkerConfig } from './worker-protocol.js';

export interface WorkerFrontOptions {
  count: number;
  port: number;
  host: string;
  /** The primary's gateway: the management API the workers pass on, and event triggers. */
  gateway: Gateway;
  /** The one driver. */
  driver: Driver;
  /** The running autoscaler's poke (read at each poke: a test hook may replace the autoscaler). */
  poke: Autoscaler['poke'];
  internalToken: string;
  maxBodyBytes?: number;
  pipelining?: number;
  json: boolean;
  requestLog: boolean;
  logger?: Logger;
}

export interface WorkerFront {
  /** The platform's URL: where the workers listen. */
  url: string;
  pool: WorkerPool;
  close(): Promise<void>;
}

/** A random token for the primary and its workers to talk by; never leaves this run. */
export function internalToken(): string {
  return randomBytes(32).toString('base64url');
}

/**
 * Every worker's stats as the autoscaler's source: scraped over HTTP as a cluster's gateways are.
 * `pool` is read at each collection (the workers start after the autoscaler exists).
 */
export function workerStatsSource(pool: () => WorkerPool | undefined, token: string, logger: Logger | undefined): StatsSource {
  return new HttpStatsSource({
    peers: () => pool()?.statsPeers() ?? [],
    token,
    ...(logger ? { onWarning: (message, fields) => logger.warn(message, fields) } : {}),
  });
}

/**
 * `driver` for the primary's gateway, telling `changed` of every deploy and removal: the workers'
 * catalogs then drop the function's cached spec at once instead of at their cache's expiry.
 */
export function notifyingDriver(driver: Driver, changed: (name: string) => void): Driver {
  return {
    get kind() {
      return driver.kind;
    },
    get secrets() {
      return driver.secrets;
    },
    ...(driver.poolStats ? { poolStats: () => driver.poolStats!() } : {}),
    ...(driver.exists ? { exists: (name: string) => driver.exists!(name) } : {}),
    deploy: async (spec) => {
      try {
        return await driver.deploy(spec);
      } finally {
        changed(spec.name);
      }
    },
    remove: async (name) => {
      try {
        await driver.remove(name);
      } finally {
        changed(name);
      }
    },
    list: () => driver.list(),
    get: (name) => driver.get(name),
    scale: (name, replicas) => driver.scale(name, replicas),
    endpoints: (name) => driver.endpoints(name),
    logs: (name, options, signal) => driver.logs(name, options, signal),
    close: () => driver.close(),
  };
}

/** Listens the primary's gateway and internal server on loopback, then starts the workers on the platform's port. */
export async function startWorkerFront(o: WorkerFrontOptions): Promise<WorkerFront> {
  const primaryGateway = await o.gateway.app.listen({ port: 0, host: '127.0.0.1' });
  const internal = Fastify({ logger: false, ...kubefnFrameworkErrors });
  internal.setErrorHandler(kubefnErrorHandler);
  kubefnNotFound(internal);
  internal.addHook('onRequest', async (request) => checkToken(request, o.internalToken, 'the internal token the primary gave its workers'));
  internal.get<{ Params: { name: string } }>(functionStatusRoute, async (request) => o.driver.get(request.params.name));
  await internal.register(async (scope) => pokePlugin(scope, { poke: (name, body) => o.poke(name, body) }));
  const primaryInternal = await internal.listen({ port: 0, host: '127.0.0.1' });
  const config: Omit<WorkerConfig, 'index'> = {
    shareCount: o.count + 1,
    port: o.port,
    host: o.host,
    internalToken: o.internalToken,
    primaryGateway,
    primaryInternal,
    driverKind: o.driver.kind,
    ...(o.maxBodyBytes !== undefined ? { maxBodyBytes: o.maxBodyBytes } : {}),
    ...(o.pipelining !== undefined ? { pipelining: o.pipelining } : {}),
    json: o.json,
    requestLog: o.requestLog,
  };
  // The primary's gateway is the last of the gateways that split containerConcurrency.
  o.gateway.setShare({ index: o.count, count: o.count + 1 });
  let pool: WorkerPool;
  try {
    const invocations = o.gateway.context.invocations;
    pool = await WorkerPool.start({
      count: o.count,
      config,
      driver: o.driver,
      // Added to this gateway's own (event calls), which `fn list` and `fn describe` read.
      onInvocations: (name, count) => invocations.set(name, (invocations.get(name) ?? 0) + count),
      ...(o.logger ? { logger: o.logger } : {}),
    });
  } catch (err) {
    await internal.close();
    throw err;
  }
  return {
    url: pool.url,
    pool,
    close: async () => {
      await pool.close();
      await internal.close();
    },
  };
}
