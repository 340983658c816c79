// Builds the gateway: fastify with the invoke, admin and metrics plugins over one driver.

import { createServer } from 'node:http';
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import { defaultPipelining, KubefnError, type ActivationStall, type PokeBody } from '@kubefn/platform';
import { adminPlugin } from './admin.js';
import { FunctionCatalog } from './catalog.js';
import { kubefnErrorHandler, kubefnFrameworkErrors, kubefnNotFound } from './error-handler.js';
import { callerInvoke } from './events/call.js';
import { EventTriggers } from './events/events.js';
import { publishRoute } from './events/publish-route.js';
import { asyncPlugin } from './events/async.js';
import { requestLogController } from './request-log.js';
import type { GatewayContext, GatewayOptions, ScaleDefaults } from './context.js';
import { FunctionCaller } from './function-call.js';
import { invokeFast, invokePlugin, type InvokeEnv } from './invoke.js';
import { GatewayMetrics } from './metrics.js';
import { boundJsonDepth } from './bounded-json.js';
import { ColdPoker } from './poker.js';
import { RouterPool } from './router-pool.js';
import type { GatewayShare } from './router.js';
import { ConcurrencyStats } from './stats.js';
import { UnreadBodies } from './unread-bodies.js';

/** How long an idle client connection is kept, ms: past the 60 s idle timeout of common load balancers. */
const keepAliveTimeoutMs = 65_000;

/** Stalled activations kept at most (Gateway.setActivation). */
const maxActivations = 10_000;

export interface Gateway {
  app: FastifyInstance;
  stats: ConcurrencyStats;
  context: GatewayContext;
  /** Sends a cold poke (see GatewayOptions.onNoReplica); set later when the autoscaler exists. */
  onNoReplica: (name: string, body: PokeBody) => unknown;
  /** New autoscaler defaults for GET /system/function/<name>'s `scaling` (a config reloaded while running). */
  setScaleDefaults(defaults: ScaleDefaults | undefined): void;
  /**
   * The autoscaler in this process says `name`'s activation stalled (stall), or recovered
   * (undefined): shown in the function's status until cleared or the function is deleted.
   */
  setActivation(name: string, stall: ActivationStall | undefined): void;
  /**
   * This gateway is `index` of `count` gateways routing to the same replicas (a cluster): each
   * function's containerConcurrency is split across them, so together they never exceed it.
   */
  setShare(share: GatewayShare): void;
  close(): Promise<void>;
}

export function createGateway(options: GatewayOptions): Gateway {
  // Calls of functions are served before fastify routes them (invoke.ts); set once ctx exists.
  let invokeEnv: InvokeEnv | undefined;
  const app = Fastify({
    serverFactory: (handler) => {
      const forward = options.forward;
      const server = createServer((req, res) => {
        if (forward?.(req, res)) return;
        if (invokeEnv === undefined || !invokeFast(invokeEnv, req, res)) handler(req, res);
      });
      // What fastify sets on a server it makes itself.
      server.keepAliveTimeout = keepAliveTimeoutMs;
      return server;
    },
    ...(options.logger ? { loggerInstance: options.logger } : { logger: false }),
    logController: requestLogController(options.requestLog ?? false),
    // Management bodies are small JSON; invocation and bundle bodies stream past this limit.
    bodyLimit: 1024 * 1024,
    keepAliveTimeout: keepAliveTimeoutMs,
    requestIdHeader: false,
    // Answered by the hook below in kubefn's error shape instead of fastify's own body.
    return503OnClosing: false,
    ajv: { customOptions: { coerceTypes: true, removeAdditional: false } },
    // What fastify answers before any route (router and HTTP parser refusals) in kubefn's error shape too.
    ...kubefnFrameworkErrors,
  });
  boundJsonDepth(app);
  const unread = new UnreadBodies();
  unread.attach(app);
  app.addHook('onRequest', (_request, reply, done) => {
    if (!unread.closing) return done();
    reply.header('connection', 'close');
    done(new KubefnError('SHUTTING_DOWN', 'the gateway is shutting down', { hint: 'retry: another gateway, or this one once restarted, takes the call' }));
  });
  const routers: RouterPool = new RouterPool(options.driver, {
    queue: { ...(options.maxQueuePerFunction !== undefined ? { maxPerFunction: options.maxQueuePerFunction } : {}), ...options.queue },
    onNoReplica: (name) => poker.cold(name),
  });
  const stats = new ConcurrencyStats(Date.now, { queueDepths: () => routers.queueDepths(), ...(options.statsHistorySeconds ? { historySeconds: options.statsHistorySeconds } : {}) });
  // Closes the stats' per-second ring on time, so its queue levels are read near each second's end.
  const statsTimer = setInterval(() => stats.tick(), 1000).unref();
  app.addHook('onClose', async () => clearInterval(statsTimer));
  const catalog = new FunctionCatalog(options.driver);
  const metrics = new GatewayMetrics(() => routers.queueDepths(), () => stats.inFlightAll());
  const poker = new ColdPoker({
    // Read at each poke: `fn up` sets gateway.onNoReplica once the autoscaler exists.
    send: (name, body) => gateway.onNoReplica(name, body),
    state: (name) => routers.state(name),
    onSent: (name) => metrics.pokes.inc({ function: name }),
    ...options.poke,
  });
  const invocations = new Map<string, number>();
  const maxBodyBytes = options.maxBodyBytes ?? 32 * 1024 * 1024;
  const ctx: GatewayContext = {
    driver: options.driver,
    bundles: options.bundles,
    apps: options.apps,
    catalog,
    routers,
    caller: new FunctionCaller({ catalog, routers, stats, metrics, invocations, options: { maxBodyBytes, pipelining: options.pipelining ?? defaultPipelining } }),
    stats,
    metrics,
    invocations,
    events: undefined,
    activations: new Map(),
    options: {
      token: options.token,
      componentToken: options.componentToken,
      tokenHint: options.tokenHint,
      maxBodyBytes,
      maxBundleBytes: options.maxBundleBytes ?? 256 * 1024 * 1024,
      requestLog: options.requestLog ?? false,
      version: options.version ?? '0.1.0',
      systemPlugins: [
        ...(options.systemPlugins ?? []),
        async (scope) => publishRoute(scope, { connection: () => ctx.events?.connection(), maxBodyBytes: ctx.options.maxBodyBytes }),
      ],
      info: options.info ?? {},
      serveStats: options.serveStats ?? false,
      scaleDefaults: options.scaleDefaults,
    },
  };
  const gateway: Gateway = {
    app,
    stats,
    context: ctx,
    onNoReplica: options.onNoReplica ?? (() => {}),
    setScaleDefaults: (defaults) => {
      ctx.options.scaleDefaults = defaults;
    },
    setActivation: (name, stall) => {
      if (!stall) ctx.activations.delete(name);
      // One entry per function the autoscaler scales; the cap only guards against a caller
      // reporting names that were never deployed.
      else if (ctx.activations.has(name) || ctx.activations.size < maxActivations) ctx.activations.set(name, { state: 'ActivationStalled', ...stall });
    },
    setShare: (share) => routers.setShare(share),
    close: async () => {
      unread.cut();
      // Keep-alive connections that go idle while in-flight calls finish would otherwise hold
      // the close for the whole keep-alive timeout; new requests meanwhile get fastify's 503.
      const reaper = setInterval(() => app.server.closeIdleConnections(), 100);
      try {
        await app.close();
      } finally {
        clearInterval(reaper);
      }
    },
  };

  app.setErrorHandler(kubefnErrorHandler);
  kubefnNotFound(app);

  app.get('/healthz', async () => 'OK');
  app.get('/metrics', async (_request, reply) =>
    reply.type(ctx.metrics.registry.contentType).send(await ctx.metrics.registry.metrics()),
  );
  invokeEnv = { ctx, log: app.log, closing: () => unread.closing, answeredUnread: (req) => unread.answered(req) };
  const env = invokeEnv;
  app.register(async (scope) => invokePlugin(scope, env));
  app.register(async (scope) => adminPlugin(scope, ctx));
  if (options.serveAsync !== false) {
    app.register(async (scope) =>
      asyncPlugin(scope, {
        connection: () => ctx.events?.running() ?? Promise.reject(noNats('async invocation')),
        exists: async (name) => (await ctx.catalog.get(name)) !== undefined,
        maxBodyBytes: ctx.options.maxBodyBytes,
      }),
    );
  }
  app.addHook('onClose', async () => {
    await ctx.caller.close();
    await routers.close();
  });
  if (options.nats) {
    const triggers = new EventTriggers({
      nats: options.nats,
      invoke: callerInvoke(ctx.caller, { log: app.log, requestLog: options.requestLog ?? false }),
      functions: () => options.driver.list(),
      maxBodyBytes: ctx.options.maxBodyBytes,
      registry: ctx.metrics.registry,
      onPending: (name, messages) => ctx.stats.setPending(name, messages),
      onWarning: (msg, fields) => app.log.warn(fields ?? {}, msg),
    });
    ctx.events = triggers;
    // Functions deployed through another gateway (a cluster) or restored at start appear here
    // within one resync; those deployed through this one at once (admin.ts).
    const resync = setInterval(() => void triggers.sync().catch((err: unknown) => app.log.warn({ err }, 'syncing event triggers failed')), options.triggerResyncMs ?? 2000);
    resync.unref();
    app.addHook('onReady', async () => triggers.sync());
    // Stop taking messages before the routers close under them.
    app.addHook('preClose', async () => {
      clearInterval(resync);
      await triggers.close();
    });
  }
  return gateway;
}

function noNats(what: string): KubefnError {
  return new KubefnError('NOT_SUPPORTED', `${what} needs NATS with JetStream, and this gateway has none`, {
    hint: 'install nats-server (apt-get install nats-server) so `fn up` starts one, or pass --nats nats://host:4222',
  });
}
