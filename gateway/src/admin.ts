// The management API under /system, shaped like the OpenFaaS gateway's where the concepts match.

import { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { Type, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { isKubefnError, KubefnError, parseFunctionSpec, statsPath, statsHistoryParam, validateName, type Driver, type FunctionSpec, type FunctionStatus, type LogLine, type WarmPoolStats } from '@kubefn/platform';
import { checkToken } from './auth.js';
import type { GatewayContext, ScaleDefaults } from './context.js';
import { KeyedLock } from './keyed-lock.js';
import { checkNamespace, namespace, specInputFromBody, statusBody } from './openfaas.js';
import { secretRoutes } from './secrets.js';

const NameParams = Type.Object({ name: Type.String({ maxLength: 253 }) });
const NamespaceQuery = Type.Object({ namespace: Type.Optional(Type.String({ maxLength: 253 })) });
const DigestParams = Type.Object({ digest: Type.String({ pattern: '^sha256:[a-f0-9]{64}$' }) });
const LogsQuery = Type.Object({
  name: Type.String({ maxLength: 253 }),
  namespace: Type.Optional(Type.String({ maxLength: 253 })),
  instance: Type.Optional(Type.String({ maxLength: 253 })),
  tail: Type.Optional(Type.Integer({ minimum: -1, maximum: 100_000 })),
  follow: Type.Optional(Type.Boolean()),
  since: Type.Optional(Type.String({ format: 'date-time' })),
});

export async function adminPlugin(base: FastifyInstance, ctx: GatewayContext): Promise<void> {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();
  const token = ctx.options.token;
  const hint = ctx.options.tokenHint;
  const component = ctx.options.componentToken;
  // The components' token opens the routes components call, and only those.
  const componentRoutes = new Set([statsPath]);
  if (token) {
    app.addHook('onRequest', async (request) =>
      checkToken(request, component && componentRoutes.has(request.routeOptions.url ?? '') ? [token, component] : token, hint),
    );
  }

  app.get('/system/info', async () => {
    const version = { release: ctx.options.version, sha: 'unknown' };
    return {
      provider: { provider: 'kubefn', orchestration: ctx.driver.kind, version },
      version,
      arch: process.arch,
      kubefn: { driver: ctx.driver.kind, bundles: ctx.bundles !== undefined, apps: ctx.apps !== undefined, ...ctx.options.info, ...poolOf(ctx.driver) },
    };
  });

  for (const plugin of ctx.options.systemPlugins) await app.register(plugin);

  // The autoscaler's scrape in a cluster: this gateway's cumulative counters (a StatsReply;
  // readers take differences, so any number of them may scrape), with the ring of recent seconds
  // when asked (?history=1, a reader's first scrape). Off in `fn up`, where the autoscaler reads
  // the stats in-process.
  if (ctx.options.serveStats) {
    app.get(statsPath, async (request) => {
      const history = (request.query as Record<string, unknown> | undefined)?.[statsHistoryParam];
      return ctx.stats.reply(Date.now(), history === '1' || history === 'true');
    });
  }

  app.get('/system/namespaces', async () => [namespace]);

  await secretRoutes(app, ctx.driver);

  app.get('/system/functions', { schema: { querystring: NamespaceQuery } }, async (request) => {
    checkNamespace(request.query.namespace);
    const all = await ctx.driver.list();
    return all.map((s) => statusBody(withActivation(ctx, s), ctx.invocations.get(s.spec.name) ?? 0));
  });

  app.get('/system/function/:name', { schema: { params: NameParams, querystring: NamespaceQuery } }, async (request) => {
    checkNamespace(request.query.namespace);
    validateName(request.params.name);
    const s = await ctx.driver.get(request.params.name);
    const body: Record<string, unknown> = { ...statusBody(withActivation(ctx, s), ctx.invocations.get(s.spec.name) ?? 0) };
    if (ctx.options.scaleDefaults) body.scaling = scalingInEffect(s.spec.scale, ctx.options.scaleDefaults);
    if (ctx.events) body.events = ctx.events.state(s.spec.name);
    return body;
  });

  // Create, update and delete of one function, one at a time (in this gateway).
  const changes = new KeyedLock();
  const deploy = async (body: unknown, mode: 'create' | 'update'): Promise<FunctionStatus> => {
    const spec = parseFunctionSpec(specInputFromBody(body));
    if (!spec.image) {
      throw new KubefnError('INVALID_SPEC', `function "${spec.name}" has no image to run`, {
        fields: [{ field: 'image', message: 'is required' }],
        hint: '`fn deploy` builds and uploads one for you',
      });
    }
    if (!ctx.events) {
      const i = spec.triggers.findIndex((t) => t.type !== 'http' || t.output !== undefined);
      if (i >= 0) {
        const t = spec.triggers[i]!;
        const field = t.type === 'http' ? `triggers.${i}.output` : `triggers.${i}.type`;
        throw new KubefnError('NOT_SUPPORTED', `function "${spec.name}" has ${t.type === 'http' ? 'an output subject' : `a ${t.type} trigger`}, and this gateway has no NATS server`, {
          fields: [{ field, message: 'needs a NATS server' }],
          hint: 'install nats-server (apt-get install nats-server) so `fn up` starts one, or pass --nats nats://host:4222',
        });
      }
    } else {
      await ctx.events.check(spec);
    }
    return changes.run(spec.name, async () => {
      // The driver's word, not the invoke path's cache: a function deleted a moment ago is gone.
      const exists = ctx.driver.exists
        ? await ctx.driver.exists(spec.name)
        : await ctx.driver.get(spec.name).then(
            () => true,
            (err: unknown) => (isKubefnError(err, 'NOT_FOUND') ? false : Promise.reject(err)),
          );
      if (mode === 'update' && !exists) throw new KubefnError('NOT_FOUND', `no function named "${spec.name}" to update`, { hint: 'create it with POST' });
      if (mode === 'create' && exists) throw new KubefnError('ALREADY_EXISTS', `function "${spec.name}" already exists`, { hint: 'update it with PUT' });
      const status = await ctx.driver.deploy(spec);
      ctx.catalog.set(spec.name, status.spec);
      ctx.routers.get(status.spec);
      await ctx.events?.sync();
      return status;
    });
  };
  // Stored but not reconciled yet (no controller running): 202 with the reason, not success.
  app.post('/system/functions', async (request, reply) => {
    const status = await deploy(request.body, 'create');
    return status.notReconciled ? reply.code(202).send({ message: status.notReconciled }) : reply.code(202).send();
  });
  app.put('/system/functions', async (request, reply) => {
    const status = await deploy(request.body, 'update');
    return status.notReconciled ? reply.code(202).send({ message: status.notReconciled }) : reply.code(200).send();
  });

  app.delete(
    '/system/functions',
    { schema: { body: Type.Object({ functionName: Type.String({ maxLength: 253 }), namespace: Type.Optional(Type.String()) }), querystring: NamespaceQuery } },
    async (request, reply) => {
      checkNamespace(request.body.namespace ?? request.query.namespace);
      const name = request.body.functionName;
      validateName(name);
      await changes.run(name, async () => {
        const removed = ctx.events ? await ctx.driver.get(name).catch(() => undefined) : undefined;
        await ctx.driver.remove(name);
        ctx.catalog.set(name, undefined);
        ctx.routers.remove(name);
        ctx.invocations.delete(name);
        ctx.activations.delete(name);
        ctx.stats.forget(name);
        await ctx.events?.sync();
        if (removed) await ctx.events?.forget(removed.spec);
      });
      return reply.code(200).send();
    },
  );

  app.post(
    '/system/scale-function/:name',
    {
      schema: {
        params: NameParams,
        querystring: NamespaceQuery,
        body: Type.Object({
          serviceName: Type.Optional(Type.String()),
          namespace: Type.Optional(Type.String()),
          replicas: Type.Integer({ minimum: 0, maximum: 1000 }),
        }),
      },
    },
    async (request, reply) => {
      checkNamespace(request.body.namespace ?? request.query.namespace);
      validateName(request.params.name);
      await ctx.driver.scale(request.params.name, request.body.replicas);
      return reply.code(202).send();
    },
  );

  app.get('/system/logs', { schema: { querystring: LogsQuery } }, async (request, reply) => {
    const q = request.query;
    checkNamespace(q.namespace);
    validateName(q.name);
    await ctx.driver.get(q.name); // 404 before the stream starts
    const aborter = new AbortController();
    reply.raw.once('close', () => aborter.abort());
    const options: { follow: boolean; tail?: number; since?: Date } = { follow: q.follow ?? false };
    if (q.tail !== undefined && q.tail >= 0) options.tail = q.tail; // faas-cli sends -1 for all lines
    if (q.since) options.since = new Date(q.since);
    const lines = ctx.driver.logs(q.name, options, aborter.signal);
    const ndjson = async function* () {
      for await (const line of lines as AsyncIterable<LogLine>) {
        if (q.instance && line.instance !== q.instance) continue;
        yield JSON.stringify({ name: line.name, namespace, instance: line.instance, timestamp: line.timestamp, text: line.text, stream: line.stream }) + '\n';
      }
    };
    reply.header('content-type', 'application/x-ndjson').header('cache-control', 'no-cache');
    return reply.send(Readable.from(ndjson(), { objectMode: false }));
  });

  // Bundles and apps: content-addressed uploads the process driver runs (`image: bundle:sha256:...`
  // for one module alone, `app:sha256:...` for a tar of the bundle and its files). The stores'
  // has() checks the stored bytes against the digest: a corrupted blob is moved aside and
  // answered 404 here, so the client that asks before uploading (`fn deploy`) sends it again.
  app.register(async (raw) => {
    raw.removeAllContentTypeParsers();
    raw.addContentTypeParser('*', (_req, payload, done) => done(null, payload));
    const typed = raw.withTypeProvider<TypeBoxTypeProvider>();
    for (const [kind, what] of [['bundle', 'bundles'], ['app', 'apps']] as const) {
      typed.head(`/system/${what}/:digest`, { schema: { params: DigestParams } }, async (request, reply) => {
        const store = requireStore(ctx, what);
        return reply.code((await store.has(request.params.digest)) ? 200 : 404).send();
      });
      typed.put(`/system/${what}/:digest`, { schema: { params: DigestParams } }, async (request, reply) => {
        const store = requireStore(ctx, what);
        const { digest } = request.params;
        const length = Number(request.headers['content-length'] ?? 0);
        if (length > ctx.options.maxBundleBytes) {
          throw new KubefnError('BODY_TOO_LARGE', `${kind} of ${length} bytes is over the ${ctx.options.maxBundleBytes} byte limit`);
        }
        // A refusal mid-body (over the limit, a full disk) must not destroy the request: the
        // client then reads the answer instead of a connection reset while it is still sending.
        const body = request.raw.iterator({ destroyOnReturn: false });
        if (!(await store.has(digest))) await store.put(digest, body, { maxBytes: ctx.options.maxBundleBytes });
        return reply.code(201).send({ image: `${kind}:${digest}` });
      });
    }
  });
}

function requireStore(ctx: GatewayContext, what: 'bundles' | 'apps') {
  const store = ctx[what];
  if (!store) {
    throw new KubefnError('NOT_SUPPORTED', `the ${ctx.driver.kind} driver does not take ${what === 'apps' ? 'app' : 'bundle'} uploads`, {
      hint: 'deploy an OCI image instead',
    });
  }
  return store;
}

/** `s` with the stalled activation the autoscaler in this process reported, if any (else the driver's own). */
function withActivation(ctx: GatewayContext, s: FunctionStatus): FunctionStatus {
  const activation = ctx.activations.get(s.spec.name);
  return activation ? { ...s, activation } : s;
}

/** Each knob the autoscaler has a default for: the spec's value, or the default and where it comes from. */
export function scalingInEffect(scale: FunctionSpec['scale'], defaults: ScaleDefaults): Record<string, { value: string | number; from: 'spec' | 'config' | 'default' }> {
  const out: Record<string, { value: string | number; from: 'spec' | 'config' | 'default' }> = {};
  for (const [knob, fallback] of Object.entries(defaults.values)) {
    const own = (scale as Record<string, unknown>)[knob];
    out[knob] = typeof own === 'string' || typeof own === 'number' ? { value: own, from: 'spec' } : { value: fallback, from: defaults.from };
  }
  return out;
}

/** The driver's warm pool for /system/info, when it keeps one. */
function poolOf(driver: Driver): { pool?: WarmPoolStats } {
  const pool = driver.poolStats?.();
  return pool ? { pool } : {};
}
