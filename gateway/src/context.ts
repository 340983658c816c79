// What the gateway's plugins share.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyBaseLogger, FastifyPluginAsync } from 'fastify';
import type { Credential, Driver, FunctionActivation, PokeBody } from '@kubefn/platform';
import type { FunctionCatalog } from './catalog.js';
import type { EventTriggers, NatsSource } from './events/events.js';
import type { FunctionCaller } from './function-call.js';
import type { GatewayMetrics } from './metrics.js';
import type { QueueSettings } from './queue-budget.js';
import type { RouterPool } from './router-pool.js';
import type { ConcurrencyStats } from './stats.js';

/** Where uploaded bundles and apps go (the process driver's stores). */
export interface BundleSink {
  has(digest: string): Promise<boolean>;
  put(digest: string, source: AsyncIterable<Uint8Array>, options: { maxBytes: number }): Promise<void>;
}

/** The autoscaler's values for the scale knobs a spec may leave out (e.g. target: 100). */
export interface ScaleDefaults {
  values: Record<string, string | number>;
  from: 'config' | 'default';
}

export interface GatewayOptions {
  driver: Driver;
  /** Enables /system/bundles; without it, deploys must name images the driver can run. */
  bundles?: BundleSink;
  /** Enables /system/apps: a bundle and its files as one tar (`image: app:sha256:...`). */
  apps?: BundleSink;
  /** Protects /system/*; without it the management API is open (only for tests). */
  token?: string | Credential;
  /**
   * The components' own token (a cluster): accepted, besides `token`, on the routes components
   * call (the autoscaler's /system/stats), and nowhere else.
   */
  componentToken?: string | Credential;
  /** Where the caller finds the token, for the hint of a 401 (default: fn up's ~/.kubefn/token). */
  tokenHint?: string;
  /**
   * Requests waiting per function before 503 "queue full", a fixed cap (tests); same as
   * queue.maxPerFunction. Default: the depth follows the traffic (see `queue`).
   */
  maxQueuePerFunction?: number;
  /**
   * The queue of requests waiting for a replica: per-function depth sized in seconds of traffic,
   * and gateway-wide budgets of requests and body bytes (queue-budget.ts has the defaults).
   */
  queue?: Partial<QueueSettings>;
  /** The cold poke (poker.ts): queue growth for another poke (default 2) and least ms between pokes (default 1000). */
  poke?: { growth?: number; minIntervalMs?: number };
  /** Largest invocation body the gateway passes on, bytes. Default 32 MiB. */
  maxBodyBytes?: number;
  /**
   * Most GET and HEAD calls to one path, of one turn of the event loop, sent together on one
   * connection to a steady replica, pipelined (replica-client.ts); 1 sends each on a connection of
   * its own. Default defaultPipelining (16).
   */
  pipelining?: number;
  /** Largest bundle or app upload, bytes. Default 256 MiB. */
  maxBundleBytes?: number;
  /**
   * Sends the autoscaler's poke for a function with no ready replica, with the gateway's queue for
   * it; at most one in flight per function (what it returns is awaited as the poke in flight).
   */
  onNoReplica?: (name: string, body: PokeBody) => unknown;
  /**
   * Where the gateway logs (a pino logger: fastify's own); default: nothing. Unhandled errors are
   * logged at error with their cause, refusals of ours at warn.
   */
  logger?: FastifyBaseLogger;
  /** One info line per request (method, url, status, ms, call id) to `logger`. Default off. */
  requestLog?: boolean;
  version?: string;
  /** More /system routes behind the same token (the build service in `fn up`). */
  systemPlugins?: FastifyPluginAsync[];
  /** Facts about this platform for clients, under `kubefn` in GET /system/info (how to deploy to it). */
  info?: Record<string, unknown>;
  /** Serve GET /system/stats for an autoscaler in another process (a cluster). Default off. */
  serveStats?: boolean;
  /** Seconds of per-second stats the gateway keeps for a late reader's backfill (the stable window). Default 60. */
  statsHistorySeconds?: number;
  /**
   * What the autoscaler uses for a scale knob a spec leaves out, and where that comes from (its
   * config file, or the built-in defaults): GET /system/function/<name> then reports the values
   * in effect under \`scaling\`. Without it, the gateway does not know them and leaves that out.
   */
  scaleDefaults?: ScaleDefaults;
  /**
   * A NATS connection, or how to make one the first time a deployed function needs it: the
   * gateway then serves nats, jetstream and cron triggers and output subjects (events/).
   */
  nats?: NatsSource;
  /**
   * Serve POST /async-function/<name> (stored in JetStream, run by the event triggers' worker).
   * Default true; off for a caller that serves it itself.
   */
  serveAsync?: boolean;
  /** How often the triggers are checked against the deployed functions, ms (default 2000). */
  triggerResyncMs?: number;
  /**
   * Requests this gateway does not serve itself: called first for each request on its port, and
   * when it answers true it has taken the request (a worker of `fn up --workers` passes the
   * management API on to the primary's gateway). Default: every request is this gateway's.
   */
  forward?: (req: IncomingMessage, res: ServerResponse) => boolean;
}

export interface GatewayContext {
  driver: Driver;
  bundles: BundleSink | undefined;
  apps: BundleSink | undefined;
  catalog: FunctionCatalog;
  routers: RouterPool;
  /** Calls functions: the invoke route and the event triggers. */
  caller: FunctionCaller;
  stats: ConcurrencyStats;
  metrics: GatewayMetrics;
  /** Invocations per function since the gateway started. */
  invocations: Map<string, number>;
  /** The event triggers, when the gateway has NATS. */
  events: EventTriggers | undefined;
  /**
   * Stalled activations the autoscaler in this process reported (fn up), merged into the
   * statuses the management API returns; a driver's own (Kubernetes) is used when none is here.
   */
  activations: Map<string, FunctionActivation>;
  options: {
    token: string | Credential | undefined;
    componentToken: string | Credential | undefined;
    tokenHint: string | undefined;
    maxBodyBytes: number;
    maxBundleBytes: number;
    /** A log line per invocation (the invoke path writes its own: its answers bypass fastify's). */
    requestLog: boolean;
    version: string;
    systemPlugins: FastifyPluginAsync[];
    info: Record<string, unknown>;
    serveStats: boolean;
    scaleDefaults: ScaleDefaults | undefined;
  };
}
