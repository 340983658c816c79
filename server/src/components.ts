// kubefn's components as they run in a cluster, one per pod, configured from the environment:
//
//   gateway     the gateway over the kubernetes driver (no reconciling); pokes the autoscaler on a
//               request for a function at zero; proxies /system/builds to the builder; serves
//               /system/stats for the autoscaler; consumes event triggers from NATS (nats-link.ts).
//   autoscaler  the Function controller (reconciles Functions into Deployments and Services) and
//               the autoscaler, which scrapes every gateway replica each second.
//   builder     the build service: source tarball in, image pushed to the platform's registry.
//
// They find each other through the EndpointSlices of their Services (ServicePeers), so the
// autoscaler sees every gateway replica and nothing depends on cluster DNS.

import { createPrivateKey, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import path from 'node:path';
import { hostname, tmpdir } from 'node:os';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { KubeConfig } from '@kubernetes/client-node';
import { Autoscaler, HttpStatsSource, LiveAutoscalerConfig, parseAutoscalerConfig, parsePokeBody, pokeOrStart, type AutoscalerConfig } from '@kubefn/autoscaler';
import { buildServicePlugin, loadCredentials, parseReference, RegistryClient } from '@kubefn/builder';
import { buildProxyPlugin, checkToken, createGateway, kubefnErrorHandler, kubefnFrameworkErrors, kubefnNotFound, requestLogController } from '@kubefn/gateway';
import {
  ConfigMapWatch,
  FunctionEventRecorder,
  FunctionReconciler,
  KubefnError,
  KubefnObjects,
  KubernetesDriver,
  KubernetesSecretStore,
  LeaderElection,
  WarmPods,
  warmKeyFile,
  loadKubernetesClient,
  PendingPodProber,
  placementAllowlist,
  type PlacementAllowlist,
  pokeRoute,
  ServicePeers,
  withApiTimeout,
  apiRequestCount,
  apiRequestCounts,
  CredentialFiles,
  staticCredential,
  strongToken,
  type Credential,
} from '@kubefn/platform';
import type { Logger } from './logger.js';
import { NatsLink, type NatsServers } from './nats-link.js';
import { registryPublisher } from './publish.js';
import { settlesWithin } from './settles.js';

export type ComponentName = 'gateway' | 'autoscaler' | 'builder';
export const componentNames: readonly ComponentName[] = ['gateway', 'autoscaler', 'builder'];

/** The Services (and so EndpointSlices) the components find each other by; deploy/ names them. */
export const componentServices = {
  gateway: 'kubefn-gateway',
  autoscaler: 'kubefn-autoscaler',
  builder: 'kubefn-builder',
  /** NATS with JetStream (deploy/nats.yaml), which the gateways consume event triggers from. */
  nats: 'kubefn-nats',
} as const;
/** The name of the HTTP port of every component Service. */
export const componentPort = 'http';
/** The name of the client port of the NATS Service. */
export const natsPort = 'client';
/** The ConfigMap of cluster autoscaler defaults (Knative's config-autoscaler keys). */
export const autoscalerConfigMap = 'kubefn-autoscaler';
/** The Lease the autoscaler replicas elect their leader by. */
export const autoscalerLease = 'kubefn-autoscaler';

/** A poke on a standby: 503 with Retry-After, so the gateway tries the next replica. */
function notLeading(identity: string): KubefnError {
  return Object.assign(
    new KubefnError('UNAVAILABLE', `autoscaler ${identity} is a standby: the leader of Lease ${autoscalerLease} scales`, { hint: 'poke another replica' }),
    { retryAfterS: 1 },
  );
}

export interface ComponentEnv {
  /** KUBEFN_NAMESPACE, else the service account's namespace file: the platform's namespace. */
  namespace: string;
  /** KUBEFN_FUNCTION_NAMESPACE: where Functions and their objects live (default: `namespace`). */
  functionNamespace: string;
  /**
   * The users' token, which the gateway's management API checks: the files of KUBEFN_TOKEN_DIR
   * (`token`, `previous`: the kubefn-token Secret, re-read while running), else KUBEFN_TOKEN.
   * Only the gateway needs it.
   */
  userToken: Credential | undefined;
  /**
   * The token the components present to each other (pokes, stats, builds): the files of
   * KUBEFN_COMPONENT_TOKEN_DIR (the kubefn-component-token Secret), else KUBEFN_COMPONENT_TOKEN,
   * else the users' token.
   */
  componentToken: Credential;
  /** KUBEFN_PORT (default 8080). */
  port: number;
  /** KUBEFN_REGISTRY: where functions' images are pushed (builder) and what `fn deploy` is told. */
  registry: string | undefined;
  /** KUBEFN_BASE: base image of functions built in the cluster. */
  base: string | undefined;
  /** KUBEFN_INSECURE_REGISTRIES: comma-separated hosts spoken to over plain HTTP. */
  insecureRegistries: string[];
  /**
   * KUBEFN_NATS_URL: comma-separated NATS servers for the gateway's event triggers; empty: the
   * ready pods of the kubefn-nats Service in the namespace.
   */
  nats: string[];
  /** KUBEFN_NATS_TOKEN: the token NATS asks its clients for (the kubefn-nats-token Secret). */
  natsToken: string | undefined;
  /** KUBEFN_IMAGE_PULL_SECRETS: comma-separated pull Secrets every function's pods get. */
  imagePullSecrets: string[];
  /** KUBEFN_ALLOWED_NODE_SELECTOR_KEYS and KUBEFN_ALLOWED_TOLERATION_KEYS: what functions may ask of nodes. */
  placement: PlacementAllowlist;
  /** KUBEFN_POD_NAME, else the host name: this replica's identity in a Lease. */
  podName: string;
  /** KUBEFN_WARM_KEY_DIR: the gateway's key that signs warm pool claims (file private.pem). */
  warmKeyDir: string | undefined;
}

export interface RunningComponent {
  url: string;
  close(): Promise<void>;
}

const serviceAccountNamespace = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

/** Reads the component settings from the environment; names every missing one. */
export async function componentEnv(env: NodeJS.ProcessEnv, onWarning?: (message: string, err?: unknown) => void): Promise<ComponentEnv> {
  const namespace = env.KUBEFN_NAMESPACE || (await readFile(serviceAccountNamespace, 'utf8').then((s) => s.trim(), () => ''));
  const anyToken = env.KUBEFN_TOKEN_DIR || env.KUBEFN_TOKEN || env.KUBEFN_COMPONENT_TOKEN_DIR || env.KUBEFN_COMPONENT_TOKEN;
  const missing = [!namespace && 'KUBEFN_NAMESPACE', !anyToken && 'KUBEFN_TOKEN (or KUBEFN_TOKEN_DIR, KUBEFN_COMPONENT_TOKEN_DIR)'].filter(Boolean);
  if (missing.length) {
    throw new KubefnError('BAD_REQUEST', `missing environment: ${missing.join(', ')}`, {
      hint: 'deploy/ sets them: the namespace from the pod, the tokens from the kubefn-token and kubefn-component-token Secrets',
    });
  }
  const credential = async (dirVar: string, tokenVar: string, what: string): Promise<Credential | undefined> => {
    const dir = env[dirVar];
    if (dir) return CredentialFiles.open(dir, { what, ...(onWarning ? { onWarning } : {}), onChange: () => onWarning?.(`${what} in ${dir} changed: using the new one`) });
    const token = env[tokenVar];
    return token ? staticCredential(strongToken(token, tokenVar)) : undefined;
  };
  const userToken = await credential('KUBEFN_TOKEN_DIR', 'KUBEFN_TOKEN', 'the user token');
  const componentToken = (await credential('KUBEFN_COMPONENT_TOKEN_DIR', 'KUBEFN_COMPONENT_TOKEN', 'the component token')) ?? userToken!;
  const port = Number(env.KUBEFN_PORT ?? 8080);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new KubefnError('BAD_REQUEST', `KUBEFN_PORT "${env.KUBEFN_PORT}" is not a port`);
  return {
    namespace,
    functionNamespace: env.KUBEFN_FUNCTION_NAMESPACE || namespace,
    userToken,
    componentToken,
    port,
    registry: env.KUBEFN_REGISTRY || undefined,
    base: env.KUBEFN_BASE || undefined,
    insecureRegistries: list(env.KUBEFN_INSECURE_REGISTRIES),
    nats: list(env.KUBEFN_NATS_URL),
    natsToken: env.KUBEFN_NATS_TOKEN || undefined,
    imagePullSecrets: list(env.KUBEFN_IMAGE_PULL_SECRETS),
    placement: placementAllowlist(env.KUBEFN_ALLOWED_NODE_SELECTOR_KEYS, env.KUBEFN_ALLOWED_TOLERATION_KEYS),
    podName: env.KUBEFN_POD_NAME || hostname(),
    warmKeyDir: env.KUBEFN_WARM_KEY_DIR || undefined,
  };
}

function list(value: string | undefined): string[] {
  return (value ?? '').split(',').map((s) => s.trim()).filter(Boolean);
}

async function clusterConfig(): Promise<KubeConfig> {
  const k8s = await loadKubernetesClient();
  const kc = new k8s.KubeConfig();
  // KUBECONFIG or ~/.kube/config when set (running outside a cluster), else the pod's service account.
  kc.loadFromDefault();
  return withApiTimeout(kc);
}

function warner(log: Logger) {
  return (message: string, err?: unknown) => log.warn(message, err === undefined ? undefined : { err });
}

export async function startGateway(env: ComponentEnv, log: Logger): Promise<RunningComponent> {
  if (!env.userToken) {
    throw new KubefnError('BAD_REQUEST', 'the gateway needs the users\' token: set KUBEFN_TOKEN_DIR (the kubefn-token Secret mounted) or KUBEFN_TOKEN', {
      hint: 'deploy/gateway.yaml mounts the Secret kubefn-token; fn install creates it',
    });
  }
  const userToken = env.userToken;
  const kc = await clusterConfig();
  const onWarning = warner(log);
  // The gateway reads Functions and their endpoints and leaves reconciling to the autoscaler's
  // pod; it probes pods the kubelet has not reported ready yet, as Knative's activator does.
  const objects = await KubefnObjects.open({ kubeconfig: kc, namespace: env.functionNamespace, onWarning });
  const prober = new PendingPodProber();
  const events = new FunctionEventRecorder({ core: objects.core, namespace: env.functionNamespace, component: componentServices.gateway, onWarning });
  const secrets = new KubernetesSecretStore(objects.core, env.functionNamespace);
  const warmPods = await openWarmPods(env, objects, secrets, log);
  const driver = new KubernetesDriver(objects, { prober, events, placement: env.placement, ...(warmPods ? { warmPods } : {}) });
  const peers = (service: string) => ServicePeers.open({ kubeconfig: kc, namespace: env.namespace, service, port: componentPort, onWarning });
  const [autoscalers, builders, gatewayPeers] = await Promise.all([peers(componentServices.autoscaler), peers(componentServices.builder), peers(componentServices.gateway)]);
  // NATS: connected the first time a function needs it, never a reason not to start.
  const natsPeers = env.nats.length ? undefined : await ServicePeers.open({ kubeconfig: kc, namespace: env.namespace, service: componentServices.nats, port: natsPort, onWarning });
  const nats = new NatsLink({ servers: natsServers(env, natsPeers), log: log.child({ component: 'nats' }), ...(env.natsToken ? { token: env.natsToken } : {}) });
  const gateway = createGateway({
    driver,
    token: userToken,
    componentToken: env.componentToken,
    tokenHint: clusterTokenHint(env.namespace),
    serveStats: true,
    systemPlugins: [buildProxyPlugin({ builders: () => builders.list(), token: env.componentToken, service: componentServices.builder })],
    nats: nats.connection,
    logger: log.pino.child({ component: 'gateway' }) as FastifyBaseLogger,
    requestLog: true,
    info: { builds: true, needsImage: true, ...(env.registry ? { registry: env.registry } : {}), ...(env.base ? { base: env.base } : {}) },
  });
  // The gateway keeps one poke in flight per function (gateway/src/poker.ts): the promise is it.
  // When no autoscaler takes it, the gateway starts a function at zero itself (its role may
  // write deployments/scale), so a request does not wait for an autoscaler to come back.
  const startFromZero = async (name: string): Promise<boolean> => {
    const fn = await driver.get(name);
    if (fn.replicas > 0) return false;
    await driver.scale(name, Math.max(1, fn.spec.scale.min));
    return true;
  };
  gateway.onNoReplica = async (name, body) => {
    // A pool pod serves the function until the Deployment's own pod is ready. That pod is asked
    // for once the pool pod serves (or its claim failed, or after warmPokeDelayMs): a pod
    // starting on the node beside the claim would take the CPU the claim needs.
    const claim = warmPods?.activate(name);
    if (claim) await settlesWithin(claim, warmPokeDelayMs);
    return pokeOrStart({ peers: () => autoscalers.list(), token: env.componentToken, what: `the ${componentServices.autoscaler} Service`, start: startFromZero }, name, body).then(
      (how) => {
        if (how === 'started') log.warn('scale from zero: no autoscaler took the poke; the gateway started the function itself', { function: name });
      },
      (err: unknown) => log.warn('scale from zero: poking the autoscaler failed', { function: name, err }),
    );
  };
  // containerConcurrency is split across the ready gateways (gatewayShare): this one's place among
  // them, again on every change of the kubefn-gateway Service's endpoints.
  const share = () => {
    const next = gatewayShare(gatewayPeers.list().map((p) => p.id), env.podName);
    gateway.setShare(next);
    return next;
  };
  gatewayPeers.onChange(() => {
    const { index, count } = share();
    log.info('gateways changed: splitting containerConcurrency', { index, count });
  });
  share();
  const url = await gateway.app.listen({ port: env.port, host: '0.0.0.0' });
  log.info('gateway listening', { url, namespace: env.namespace, functions: env.functionNamespace, nats: env.nats.length ? env.nats.join(',') : `the ${componentServices.nats} Service` });
  return {
    url,
    close: async () => {
      // The triggers stop taking messages and finish their calls as the gateway closes; then the
      // connection drains.
      await gateway.close();
      await nats.close();
      await driver.close();
      prober.close();
      await warmPods?.close();
      await Promise.all([objects.stop(), autoscalers.close(), builders.close(), gatewayPeers.close(), natsPeers?.close()]);
    },
  };
}

/** The longest a claim for a pool pod holds back the poke that scales the function's Deployment. */
const warmPokeDelayMs = 1000;

/**
 * The warm pool's pods, when the gateway has the key that signs claims (KUBEFN_WARM_KEY_DIR, the
 * kubefn-warm-key Secret that `fn install` creates, mounted): images are read from their
 * registries with the builder's client. Without the key the pool is off for this gateway.
 */
async function openWarmPods(env: ComponentEnv, objects: KubefnObjects, secrets: KubernetesSecretStore, log: Logger): Promise<WarmPods | undefined> {
  if (!env.warmKeyDir) return undefined;
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(await readFile(path.join(env.warmKeyDir, warmKeyFile), 'utf8'));
  } catch (err) {
    log.warn(`warm pool off: no signing key in ${env.warmKeyDir}`, { err });
    return undefined;
  }
  const client = new RegistryClient({ insecureRegistries: env.insecureRegistries, credentials: (r) => loadCredentials(r), timeoutMs: 30_000 });
  return WarmPods.open({
    objects,
    secrets,
    privateKey,
    self: env.podName,
    onStarted: (s) =>
      log.info('warm pool: a function started in a pool pod', {
        function: s.function,
        pod: s.pod,
        fitMs: Math.round(s.fitMs),
        claimedMs: Math.round(s.claimedMs),
        sentMs: Math.round(s.sentMs),
        unpackedMs: Math.round(s.unpackedMs),
        ...(s.podUnpackMs !== undefined ? { podUnpackMs: s.podUnpackMs } : {}),
        readyMs: Math.round(s.readyMs),
      }),
    imageFacts: async (image) => {
      const { manifest, config } = await client.getImageConfig(parseReference(image));
      const c = config.config ?? {};
      return {
        layers: manifest.layers.map((l) => ({ digest: l.digest, size: l.size, mediaType: l.mediaType })),
        command: [...(c.Entrypoint ?? []), ...(c.Cmd ?? [])],
        user: c.User ?? '',
      };
    },
    layerBlob: async (image, digest) => {
      const { body } = await client.getBlobStream(parseReference(image), digest);
      return Readable.fromWeb(body as import('node:stream/web').ReadableStream<Uint8Array>);
    },
  });
}

/**
 * This gateway's place among the ready gateways `ready` (pod names): its index in their sorted
 * order. A gateway not ready yet (starting, or its readiness failing) counts itself in after
 * the others, so it never takes a slot one of them was dealt.
 */
export function gatewayShare(ready: readonly string[], self: string): { index: number; count: number } {
  const sorted = [...new Set(ready)].sort();
  const index = sorted.indexOf(self);
  return index >= 0 ? { index, count: sorted.length } : { index: sorted.length, count: sorted.length + 1 };
}

/** The servers of KUBEFN_NATS_URL, else those of the NATS Service's ready pods (host:port). */
export function natsServers(env: Pick<ComponentEnv, 'nats' | 'namespace'>, peers: Pick<ServicePeers, 'list' | 'onChange'> | undefined): NatsServers {
  if (env.nats.length || !peers) return { what: 'KUBEFN_NATS_URL', list: () => env.nats };
  return {
    what: `the ${componentServices.nats} Service in ${env.namespace}`,
    list: () => peers.list().map((p) => new URL(p.url).host),
    onChange: (listener) => peers.onChange(listener),
  };
}

/**
 * The HTTP server of the autoscaler and the builder: /healthz, and errors as kubefn's JSON bodies
 * ({code, message, hint?}), as the gateway answers them. Routes behind the token add
 * `checkToken` (the gateway's check) in their own scope.
 */
function internalServer(bodyLimit: number, log: Logger, component: string): FastifyInstance {
  const app = Fastify({ loggerInstance: log.pino.child({ component }) as FastifyBaseLogger, logController: requestLogController(true), bodyLimit, ...kubefnFrameworkErrors });
  app.setErrorHandler(kubefnErrorHandler);
  kubefnNotFound(app);
  app.get('/healthz', async () => 'OK');
  return app;
}

export async function startAutoscaler(env: ComponentEnv, log: Logger): Promise<RunningComponent> {
  const kc = await clusterConfig();
  const onWarning = warner(log);
  // The cluster defaults: the ConfigMap now (a bad one fails the start, loudly), then each change
  // to it applied while running (a bad one refused, the last good one kept; deleted: Knative's).
  const configMap = await ConfigMapWatch.open({ kubeconfig: kc, namespace: env.namespace, name: autoscalerConfigMap, onWarning });
  const configSource = `ConfigMap ${env.namespace}/${autoscalerConfigMap}`;
  let config: AutoscalerConfig | undefined;
  try {
    const data = configMap.data();
    config = data ? parseAutoscalerConfig(data, configSource) : undefined;
  } catch (err) {
    await configMap.close();
    throw err;
  }
  // Listening from here on, so a change made while the rest starts is not missed: it goes into
  // the config the autoscaler is made with, or to the autoscaler once it exists.
  let running: Autoscaler | undefined;
  const live = new LiveAutoscalerConfig({ initial: config, apply: (c) => running?.setConfig(c), logger: log });
  configMap.onChange((data) => live.offerData(data, configSource));
  // The Function controller runs, and the autoscaler scales, on the leader of the
  // kubefn-autoscaler Lease only. A standby keeps its caches warm and its autoscaler passive: it
  // collects and decides every second like the leader (so its windows are full the moment it
  // takes over, and through an API server outage that cost the leader its Lease), calls no scale,
  // and answers pokes 503 so the gateways try the leader.
  const objects = await KubefnObjects.open({ kubeconfig: kc, namespace: env.functionNamespace, onWarning, watchServices: true });
  const events = new FunctionEventRecorder({ core: objects.core, namespace: env.functionNamespace, component: componentServices.autoscaler, onWarning });
  const driver = new KubernetesDriver(objects, { events, placement: env.placement });
  const gateways = await ServicePeers.open({ kubeconfig: kc, namespace: env.namespace, service: componentServices.gateway, port: componentPort, onWarning });
  const identity = env.podName;
  let reconciler: FunctionReconciler | undefined;
  let standingDown: Promise<void> = Promise.resolve();
  const autoscaler = new Autoscaler({
    target: driver,
    sources: [new HttpStatsSource({ peers: () => gateways.list(), token: env.componentToken, onWarning: (m, f) => log.warn(m, f) })],
    logger: log,
    ...(live.current ? { config: live.current } : {}),
    active: false,
    // A stalled activation goes on the Function's status (its ActivationStalled condition).
    onActivation: (name, stall) => reconciler?.setActivation(name, stall),
  });
  running = autoscaler;
  const lead = (): void => {
    reconciler = new FunctionReconciler(objects, {
      events,
      imagePullSecrets: env.imagePullSecrets,
      placement: env.placement,
      gatewayUrl: `http://${componentServices.gateway}.${env.namespace}.svc:8080`,
    });
    autoscaler.setActive(true);
    log.info('leading: reconciling Functions and scaling them', { lease: `${env.namespace}/${autoscalerLease}`, identity });
  };
  const standDown = (): void => {
    autoscaler.setActive(false);
    const was = reconciler;
    reconciler = undefined;
    if (!was) return;
    log.warn('standing down: another replica leads, or the Lease could not be renewed; deciding without scaling until this replica leads again', {
      lease: `${env.namespace}/${autoscalerLease}`,
      identity,
    });
    standingDown = standingDown.then(() => was.close());
  };
  const app = internalServer(1024, log, 'autoscaler');
  await app.register(async (scope) => {
    scope.addHook('onRequest', async (request) => checkToken(request, env.componentToken, componentTokenHint(env.namespace)));
    // Whether this replica leads, that it keeps collecting and deciding (ticks, decisions), what
    // its controller did, and what it costs: API calls made, memory, CPU time.
    scope.get('/status', async () => {
      const { active, ...progress } = autoscaler.progress();
      const { rss, heapUsed } = process.memoryUsage();
      const { user, system } = process.cpuUsage();
      return {
        identity,
        leading: active,
        ...progress,
        reconciles: reconciler?.counts,
        apiRequests: apiRequestCount(),
        apiRequestsByKind: apiRequestCounts(),
        rssBytes: rss,
        heapUsedBytes: heapUsed,
        cpuSeconds: (user + system) / 1e6,
      };
    });
    await pokePlugin(scope, {
      poke: async (name, body) => {
        if (!autoscaler.active) throw notLeading(identity);
        await autoscaler.poke(name, body);
      },
    });
  });
  const url = await app.listen({ port: env.port, host: '0.0.0.0' });
  autoscaler.start();
  const election = await LeaderElection.start({
    kubeconfig: kc,
    namespace: env.namespace,
    name: autoscalerLease,
    identity,
    onStartedLeading: lead,
    onStoppedLeading: standDown,
    onWarning,
  });
  log.info('autoscaler and controller running; campaigning for the Lease', { url, namespace: env.namespace, functions: env.functionNamespace, identity, config: live.current ? autoscalerConfigMap : 'built-in defaults' });
  return {
    url,
    close: async () => {
      await configMap.close();
      // Releases the Lease, so the standby leads at its next try rather than a lease duration later.
      await election.stop();
      await standingDown;
      await autoscaler.stop();
      await app.close();
      await driver.close();
      await Promise.all([gateways.close(), objects.stop()]);
    },
  };
}

/**
 * POST /poke/<name> with an optional JSON body `{ queued }` (the poking gateway's backlog): the
 * autoscaler scales the function from zero at once. An empty body is a poke with nothing known;
 * a body that is not JSON or not a valid PokeBody is 400 BAD_REQUEST.
 */
export async function pokePlugin(scope: FastifyInstance, autoscaler: Pick<Autoscaler, 'poke'>): Promise<void> {
  scope.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, text, done) => {
    if (text === '') return done(null, undefined);
    try {
      done(null, JSON.parse(text as string));
    } catch (err) {
      done(new KubefnError('BAD_REQUEST', `a poke's body is not JSON: ${(err as Error).message}`, { hint: 'send {"queued": <requests waiting>} or no body' }), undefined);
    }
  });
  scope.post<{ Params: { name: string } }>(pokeRoute, async (request, reply) => {
    const body = parsePokeBody(request.body);
    await autoscaler.poke(request.params.name, body);
    return reply.code(202).send({ function: request.params.name });
  });
}

export async function startBuilder(env: ComponentEnv, log: Logger): Promise<RunningComponent> {
  const app = internalServer(1024 * 1024, log, 'builder');
  // Without a registry the builder still runs (so a default install is healthy) and says what is
  // missing on every build instead of crash-looping.
  const missing = [!env.registry && 'registry', !env.base && 'base'].filter(Boolean);
  await app.register(async (scope) => {
    scope.addHook('onRequest', async (request) => checkToken(request, env.componentToken, componentTokenHint(env.namespace)));
    if (missing.length) {
      scope.addContentTypeParser('*', (_request, payload, done) => done(null, payload));
      scope.post('/system/builds', async () => {
        throw new KubefnError('UNAVAILABLE', `the build service has no ${missing.join(' or ')} to build with`, {
          hint: `set ${missing.join(' and ')} in the kubefn-config ConfigMap (fn install --registry <host:port>), then: kubectl rollout restart deploy/kubefn-builder`,
        });
      });
      return;
    }
    const client = new RegistryClient({ insecureRegistries: env.insecureRegistries, credentials: (r) => loadCredentials(r) });
    const work = process.env.KUBEFN_WORK_DIR ?? tmpdir();
    const publish = registryPublisher({ client, base: env.base!, cacheDir: path.join(work, 'cache'), registry: env.registry! });
    await scope.register(
      buildServicePlugin({
        scratchDir: path.join(work, 'builds'),
        build: async ({ dir, handler, name, log: buildLog }) => {
          log.info('building', { function: name });
          return { ...(await publish({ dir, handler, name, log: buildLog })) };
        },
      }),
    );
  });
  const url = await app.listen({ port: env.port, host: '0.0.0.0' });
  if (missing.length) log.warn(`builder running without ${missing.join(' and ')}: builds are refused`, { url });
  else log.info('builder listening', { url, registry: env.registry, base: env.base });
  return { url, close: () => app.close() };
}

export const startComponent: Record<ComponentName, (env: ComponentEnv, log: Logger) => Promise<RunningComponent>> = {
  gateway: startGateway,
  autoscaler: startAutoscaler,
  builder: startBuilder,
};

/** Where the components' token is: the Secret `fn install` created. */
function componentTokenHint(namespace: string): string {
  return `only kubefn's components call here, with the token of the Secret ${namespace}/kubefn-component-token`;
}

/** Where a cluster's token is: the Secret `fn install` created. */
function clusterTokenHint(namespace: string): string {
  return `\`fn install\` keeps it in the Secret ${namespace}/kubefn-token: kubectl get secret -n ${namespace} kubefn-token -o jsonpath='{.data.token}' | base64 -d`;
}
