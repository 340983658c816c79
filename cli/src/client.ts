// A small typed client for the kubefn gateway's management API and function routes, mapping HTTP errors to KubefnError.

import { errorFromBody, isKubefnError, KubefnError, type ErrorBody, type Published, type PublishReply } from '@kubefn/platform/core';
import type { FunctionSpec } from '@kubefn/platform';
import type { BuildEvent } from '@kubefn/builder';
import { CliError, isAbort } from './errors.js';

/** One function as GET /system/functions and /system/function/<name> return it (OpenFaaS shape + spec). */
export interface FunctionInfo {
  name: string;
  image: string;
  namespace?: string;
  envVars?: Record<string, string>;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  /** Replicas asked for. */
  replicas: number;
  /** Replicas ready to take requests. */
  availableReplicas: number;
  invocationCount: number;
  /** RFC 3339. */
  createdAt?: string;
  spec: FunctionSpec;
  /** Each scale knob in effect and where it comes from, when the gateway knows the autoscaler's defaults. */
  scaling?: Record<string, { value: string | number; from: 'spec' | 'config' | 'default' }>;
  /** The state of the function's event triggers, from a gateway with NATS. */
  events?: FunctionEventsInfo;
  /** Ready replicas that run the current spec; absent from older gateways and from OpenFaaS. */
  updatedReplicas?: number;
  /** The spec's generation and the one the platform has applied. */
  generation?: number;
  observedGeneration?: number;
  /** Why replicas are missing, when the platform knows. */
  lastError?: ErrorBody;
  /** The current spec's handler cannot load (LOAD_FAILED, with `location`). */
  loadError?: ErrorBody;
  /** What of the spec the platform does not enforce where it runs (resource limits), one sentence each. */
  warnings?: string[];
  /** How a replica starts from zero: from the platform's warm pool, or as a new process and why. */
  coldStart?: { path: 'warm-pool' } | { path: 'process-start' | 'container-start' | 'pod-start'; reason: string };
  /** Set while the autoscaler holds the function's activation as stalled: it adds no replicas until one is ready. */
  activation?: { state: 'ActivationStalled'; reason: string; since: string };
}

/** GET /system/function/<name>'s `events`: the NATS link and each trigger's state in that gateway. */
export interface FunctionEventsInfo {
  nats: { connected: boolean; server?: string; error?: string };
  triggers: TriggerStateInfo[];
}

export interface TriggerStateInfo {
  type: 'nats' | 'jetstream' | 'cron';
  index: number;
  ready?: boolean;
  error?: string;
  // jetstream: the server's counts for the shared consumer
  pending?: number;
  ackPending?: number;
  redelivered?: number;
  // this gateway's counts
  delivered?: number;
  acked?: number;
  succeeded?: number;
  failed?: number;
  dropped?: number;
  retried?: number;
  deadLettered?: number;
  inFlight?: number;
  // cron
  next?: string;
  fired?: number;
  skipped?: number;
  missed?: number;
  lastError?: string;
  lastErrorAt?: string;
}

/** GET /system/info. */
export interface GatewayInfo {
  provider: { provider: string; orchestration: string; version: { release: string; sha: string } };
  version?: { release?: string; sha?: string; commit_message?: string };
  arch?: string;
  /** How to deploy to this platform. */
  kubefn?: {
    driver?: string;
    /** The gateway takes bundle uploads (process driver). */
    bundles?: boolean;
    /** The gateway takes app uploads: a bundle and its files as one tar (process driver). */
    apps?: boolean;
    /** POST /system/builds is served. */
    builds?: boolean;
    /** The driver runs OCI images, not bundles. */
    needsImage?: boolean;
    /** The registry the platform pulls from, when it has one. */
    registry?: string;
    base?: string;
  };
}

/** One NDJSON line of GET /system/logs. */
export interface LogEntry {
  name: string;
  namespace?: string;
  instance: string;
  /** RFC 3339. */
  timestamp: string;
  text: string;
}

export interface LogQuery {
  follow?: boolean;
  /** Last N lines of history. */
  tail?: number;
  since?: Date;
}

export interface InvokeRequest {
  method?: string;
  /** Sub-path after /function/<name>, e.g. "/users/7". */
  path?: string;
  query?: readonly (readonly [string, string])[];
  headers?: readonly (readonly [string, string])[];
  body?: Uint8Array | string;
  signal?: AbortSignal;
}

export interface PublishRequest {
  /** A subject to publish to: tokens separated by dots, no wildcards. */
  subject: string;
  data?: Uint8Array;
  /** NATS headers, names as given (case kept). */
  headers?: readonly (readonly [string, string])[];
  /** How long the gateway waits for the reply (or for NATS to confirm), e.g. "10s"; default 10s. */
  timeout?: string;
  signal?: AbortSignal;
}

export interface GatewayClientOptions {
  /** Base URL, e.g. "http://127.0.0.1:8080" (no trailing slash needed). */
  gateway: string;
  /** Sent as `Authorization: Bearer <token>` on /system/* calls only, never to functions. */
  token?: string | undefined;
  userAgent?: string;
  /** Where the token file is (KUBEFN_HOME's), named in the hint of a 401. */
  tokenFile?: string;
  /** Defaults to the global fetch. */
  fetch?: typeof fetch;
}

/** What to do about a 401; `tokenFile` is where this CLI reads the token `fn up` wrote. */
export function unauthorizedHint(tokenFile = '~/.kubefn/token'): string {
  return `run \`fn up\` on this machine (it writes the token to ${tokenFile}), or pass --token <token> / set KUBEFN_TOKEN`;
}

const functionNotFoundHint = 'run `fn list` to see deployed functions, or `fn deploy` to create it';

export class GatewayClient {
  readonly gateway: string;
  readonly #token: string | undefined;
  readonly #userAgent: string;
  readonly #tokenFile: string | undefined;
  readonly #fetch: typeof fetch;

  constructor(options: GatewayClientOptions) {
    this.gateway = options.gateway.replace(/\/+$/, '');
    this.#token = options.token;
    this.#userAgent = options.userAgent ?? 'kubefn-cli';
    this.#tokenFile = options.tokenFile;
    this.#fetch = options.fetch ?? fetch;
  }

  /** The public URL of a function, e.g. "http://127.0.0.1:8080/function/hello". */
  functionUrl(name: string): string {
    return `${this.gateway}/function/${encodeURIComponent(name)}`;
  }

  async info(signal?: AbortSignal): Promise<GatewayInfo> {
    return (await this.#system('GET', '/system/info', { signal })).json() as Promise<GatewayInfo>;
  }

  async listFunctions(signal?: AbortSignal): Promise<FunctionInfo[]> {
    return (await this.#system('GET', '/system/functions', { signal })).json() as Promise<FunctionInfo[]>;
  }

  /** NOT_FOUND if the function does not exist. */
  async getFunction(name: string, signal?: AbortSignal): Promise<FunctionInfo> {
    const res = await this.#system('GET', `/system/function/${encodeURIComponent(name)}`, { signal, notFoundHint: functionNotFoundHint });
    return res.json() as Promise<FunctionInfo>;
  }

  /**
   * Updates the function (PUT), or creates it (POST) when the gateway does not know it yet.
   * `notReconciled`: the gateway stored the change, but no controller has applied it yet (its
   * 202 with a message).
   */
  async deployFunction(spec: FunctionSpec, signal?: AbortSignal): Promise<{ created: boolean; notReconciled?: string }> {
    const late = async (res: Response): Promise<{ notReconciled?: string }> => {
      const text = res.status === 202 ? await res.text() : '';
      const message = text ? (JSON.parse(text) as { message?: unknown }).message : undefined;
      return typeof message === 'string' ? { notReconciled: message } : {};
    };
    try {
      return { created: false, ...(await late(await this.#system('PUT', '/system/functions', { json: spec, signal }))) };
    } catch (err) {
      if (!isKubefnError(err, 'NOT_FOUND')) throw err;
    }
    return { created: true, ...(await late(await this.#system('POST', '/system/functions', { json: spec, signal }))) };
  }

  async deleteFunction(name: string, signal?: AbortSignal): Promise<void> {
    await this.#system('DELETE', '/system/functions', { json: { functionName: name }, signal, notFoundHint: functionNotFoundHint });
  }

  async scaleFunction(name: string, replicas: number, signal?: AbortSignal): Promise<void> {
    await this.#system('POST', `/system/scale-function/${encodeURIComponent(name)}`, {
      json: { serviceName: name, replicas },
      signal,
      notFoundHint: functionNotFoundHint,
    });
  }

  /** Secret names; values never come back. */
  async listSecrets(signal?: AbortSignal): Promise<{ name: string }[]> {
    return (await this.#system('GET', '/system/secrets', { signal })).json() as Promise<{ name: string }[]>;
  }

  /** Creates a secret (ALREADY_EXISTS if the name is taken), or with `replace` creates or updates it. */
  async putSecret(name: string, value: Uint8Array, replace: boolean, signal?: AbortSignal): Promise<{ created: boolean }> {
    // rawValue (base64) carries any bytes, as OpenFaaS's Secret type allows.
    const json = { name, rawValue: Buffer.from(value).toString('base64') };
    try {
      await this.#system('POST', '/system/secrets', { json, signal });
      return { created: true };
    } catch (err) {
      if (!replace || !isKubefnError(err, 'ALREADY_EXISTS')) throw err;
    }
    await this.#system('PUT', '/system/secrets', { json, signal });
    return { created: false };
  }

  async deleteSecret(name: string, signal?: AbortSignal): Promise<void> {
    await this.#system('DELETE', '/system/secrets', { json: { name }, signal, notFoundHint: 'run `fn secret list` to see the secrets there are' });
  }

  /** Whether the gateway already stores the bundle with this digest ("sha256:<hex>"). */
  hasBundle(digest: string, signal?: AbortSignal): Promise<boolean> {
    return this.#hasUpload('bundles', digest, signal);
  }

  /** Stores a bundle under its digest; returns the image reference the gateway assigned. */
  uploadBundle(digest: string, bytes: Uint8Array, signal?: AbortSignal): Promise<{ image: string }> {
    return this.#upload('bundles', digest, bytes, signal);
  }

  /** Whether the gateway already stores the app (bundle and files, one tar) with this digest. */
  hasApp(digest: string, signal?: AbortSignal): Promise<boolean> {
    return this.#hasUpload('apps', digest, signal);
  }

  /** Stores an app tar under its digest; returns the image reference the gateway assigned. */
  uploadApp(digest: string, bytes: Uint8Array, signal?: AbortSignal): Promise<{ image: string }> {
    return this.#upload('apps', digest, bytes, signal);
  }

  async #hasUpload(what: 'bundles' | 'apps', digest: string, signal: AbortSignal | undefined): Promise<boolean> {
    const res = await this.#send('HEAD', `/system/${what}/${digest}`, { signal, auth: true });
    if (res.status === 404) return false;
    if (res.ok) return true;
    throw await this.#errorFrom(res);
  }

  async #upload(what: 'bundles' | 'apps', digest: string, bytes: Uint8Array, signal: AbortSignal | undefined): Promise<{ image: string }> {
    const res = await this.#system('PUT', `/system/${what}/${digest}`, {
      body: bytes,
      contentType: 'application/octet-stream',
      signal,
    });
    const body = (await res.json().catch(() => ({}))) as { image?: unknown };
    return { image: typeof body.image === 'string' ? body.image : `${what === 'apps' ? 'app' : 'bundle'}:${digest}` };
  }

  /**
   * Sends a source archive (tar.gz) to the build service and yields its NDJSON events: log lines,
   * then one result or error. A refused archive rejects with the service's 4xx error.
   */
  async *build(name: string, handler: string, archive: Uint8Array, signal?: AbortSignal): AsyncGenerator<BuildEvent> {
    const params = new URLSearchParams({ name, handler });
    const res = await this.#system('POST', `/system/builds?${params}`, { body: archive, contentType: 'application/gzip', signal });
    if (!res.body) throw new KubefnError('INTERNAL', 'the build service answered without a body');
    // The builder package is heavy; every other call of this client runs without it.
    const { readBuildEvents } = await import('@kubefn/builder');
    yield* readBuildEvents(res.body);
  }

  /**
   * Streams a function's log lines (NDJSON) as they arrive. With `follow` it ends only when
   * `signal` aborts (rejecting with an AbortError) or the gateway closes the stream.
   */
  async *logs(name: string, query: LogQuery, signal?: AbortSignal): AsyncGenerator<LogEntry> {
    for await (const line of this.logLines(name, query, signal)) yield parseLogLine(line, name);
  }

  /** The same stream as `logs`, each NDJSON line as the gateway sent it. */
  async *logLines(name: string, query: LogQuery, signal?: AbortSignal): AsyncGenerator<string> {
    const params = new URLSearchParams({ name });
    if (query.follow) params.set('follow', 'true');
    if (query.tail !== undefined) params.set('tail', String(query.tail));
    if (query.since) params.set('since', query.since.toISOString());
    const res = await this.#system('GET', `/system/logs?${params}`, { signal, notFoundHint: functionNotFoundHint });
    if (!res.body) return;
    yield* ndjsonLines(res.body);
  }

  /**
   * Publishes a message to NATS through the gateway; with `reply`, sends a request and resolves
   * with the reply (UNAVAILABLE when nothing subscribes, TIMEOUT when no reply comes in time).
   */
  async publish(request: PublishRequest & { reply: true }): Promise<PublishReply>;
  async publish(request: PublishRequest & { reply?: false }): Promise<Published>;
  async publish(request: PublishRequest & { reply?: boolean }): Promise<Published | PublishReply> {
    const params = new URLSearchParams({ subject: request.subject });
    for (const [k, v] of request.headers ?? []) params.append('header', `${k}:${v}`);
    if (request.reply) params.set('reply', 'true');
    if (request.timeout) params.set('timeout', request.timeout);
    const res = await this.#system('POST', `/system/events/publish?${params}`, {
      body: request.data ?? new Uint8Array(),
      contentType: 'application/octet-stream',
      signal: request.signal,
    });
    return res.json() as Promise<Published | PublishReply>;
  }

  /**
   * Calls a function. Resolves with the response whatever its status (the caller streams the
   * body); rejects only when the gateway cannot be reached or `signal` aborts.
   */
  async invoke(name: string, request: InvokeRequest = {}): Promise<Response> {
    const sub = request.path ? (request.path.startsWith('/') ? request.path : `/${request.path}`) : '';
    const url = new URL(this.functionUrl(name) + sub);
    for (const [k, v] of request.query ?? []) url.searchParams.append(k, v);
    const headers = new Headers();
    for (const [k, v] of request.headers ?? []) headers.append(k, v);
    if (!headers.has('user-agent')) headers.set('user-agent', this.#userAgent);
    return this.#fetchOrUnreachable(url.href, {
      method: request.method ?? (request.body === undefined ? 'GET' : 'POST'),
      headers,
      body: request.body,
      signal: request.signal,
      redirect: 'manual',
    });
  }

  async #system(
    method: string,
    path: string,
    options: { json?: unknown; body?: Uint8Array; contentType?: string; signal?: AbortSignal | undefined; notFoundHint?: string },
  ): Promise<Response> {
    const res = await this.#send(method, path, { ...options, auth: true });
    if (!res.ok) throw await this.#errorFrom(res, options.notFoundHint);
    return res;
  }

  async #send(
    method: string,
    path: string,
    options: { json?: unknown; body?: Uint8Array; contentType?: string; signal?: AbortSignal | undefined; auth: boolean },
  ): Promise<Response> {
    const headers = new Headers({ 'user-agent': this.#userAgent, accept: 'application/json' });
    if (options.auth && this.#token) headers.set('authorization', `Bearer ${this.#token}`);
    let body: string | Uint8Array | undefined = options.body;
    if (options.json !== undefined) {
      body = JSON.stringify(options.json);
      headers.set('content-type', 'application/json');
    } else if (options.contentType) {
      headers.set('content-type', options.contentType);
    }
    return this.#fetchOrUnreachable(this.gateway + path, { method, headers, body, signal: options.signal });
  }

  async #fetchOrUnreachable(url: string, init: RequestInit): Promise<Response> {
    try {
      return await this.#fetch(url, init);
    } catch (err) {
      if (isAbort(err) || init.signal?.aborted) throw err;
      if (!isNetworkFailure(err)) throw err;
      const why = networkCause(err);
      throw new CliError('GATEWAY_UNREACHABLE', `cannot reach the kubefn gateway at ${this.gateway}${why ? ` (${why})` : ''}: is \`fn up\` running?`, {
        hint: 'start a local gateway with `fn up`, or point at a running one with --gateway <url> or KUBEFN_GATEWAY',
        cause: err,
      });
    }
  }

  /** Turns a non-2xx response into the KubefnError its body describes, adding hints the CLI can give. */
  async #errorFrom(res: Response, notFoundHint?: string): Promise<KubefnError> {
    const text = await res.text().catch(() => '');
    let body: unknown = text;
    try {
      body = text ? JSON.parse(text) : `${res.status} ${res.statusText}`;
    } catch {
      // Not JSON (a proxy's HTML page, a plain-text error): errorFromBody keeps the text.
    }
    const err = errorFromBody(res.status, body);
    if (res.status === 401) {
      const what = this.#token ? `the gateway at ${this.gateway} rejected the token` : `the gateway at ${this.gateway} requires a token`;
      return new KubefnError('UNAUTHORIZED', `${what}: ${err.message}`, { hint: unauthorizedHint(this.#tokenFile), cause: err });
    }
    if (err.code === 'NOT_FOUND' && !err.hint && notFoundHint) {
      return new KubefnError('NOT_FOUND', err.message, { hint: notFoundHint, ...(err.fields ? { fields: err.fields } : {}) });
    }
    return err;
  }
}

/** Longest NDJSON line accepted, in characters: log lines are capped well below this. */
const maxLineChars = 1024 * 1024;

/** Splits a byte stream into non-empty, trimmed lines; a last line without "\n" counts too. */
export async function* ndjsonLines(body: AsyncIterable<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buffered = '';
  for await (const chunk of body) {
    buffered += decoder.decode(chunk, { stream: true });
    if (buffered.length > maxLineChars && !buffered.includes('\n')) {
      throw new KubefnError('BAD_REQUEST', `the gateway sent a line over ${maxLineChars} characters`);
    }
    let newline: number;
    while ((newline = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, newline).trim();
      buffered = buffered.slice(newline + 1);
      if (line) yield line;
    }
  }
  buffered += decoder.decode();
  if (buffered.trim()) yield buffered.trim();
}

/** A line that is not a JSON log entry is kept as its text rather than failing the whole stream. */
function parseLogLine(line: string, name: string): LogEntry {
  try {
    const v = JSON.parse(line) as Partial<LogEntry>;
    if (typeof v === 'object' && v !== null && typeof v.text === 'string') {
      const entry: LogEntry = {
        name: typeof v.name === 'string' ? v.name : name,
        instance: typeof v.instance === 'string' ? v.instance : '',
        timestamp: typeof v.timestamp === 'string' ? v.timestamp : '',
        text: v.text,
      };
      if (typeof v.namespace === 'string') entry.namespace = v.namespace;
      return entry;
    }
  } catch {
    // fall through
  }
  return { name, instance: '', timestamp: '', text: line };
}

/** undici rejects with TypeError("fetch failed") and the socket error as `cause`. */
function isNetworkFailure(err: unknown): boolean {
  return err instanceof TypeError && (err.message === 'fetch failed' || err.cause !== undefined);
}

function networkCause(err: unknown): string | undefined {
  const cause = (err as { cause?: unknown }).cause as { code?: unknown; message?: unknown; errors?: unknown[] } | undefined;
  if (!cause) return undefined;
  if (typeof cause.code === 'string') return cause.code;
  const first = Array.isArray(cause.errors) ? (cause.errors[0] as { code?: unknown } | undefined) : undefined;
  if (typeof first?.code === 'string') return first.code;
  return typeof cause.message === 'string' ? cause.message : undefined;
}
