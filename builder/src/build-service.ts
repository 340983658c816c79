// The build service: a fastify plugin that takes an untrusted function source tarball, extracts
// it into a scratch directory, builds it and streams the build log back as NDJSON.

import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { FastifyBaseLogger, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { isKubefnError, KubefnError } from '@kubefn/platform';
import { BuildEventWriter, type BuildResult } from './build-events.js';
import { BuildSlots, type Release } from './build-slots.js';
import {
  buildQuerySchema,
  checkDeclaredLength,
  checkQuery,
  discardBody,
  extractUpload,
  type BuildHttpRequest,
  type BuildQuery,
} from './build-request.js';
import { defaultExtractLimits, type ExtractLimits } from './source-extract.js';

export {
  maxEventLineBytes,
  maxLogLineBytes,
  maxLogLines,
  readBuildEvents,
  type BuildErrorEvent,
  type BuildEvent,
  type BuildLogEvent,
  type BuildResult,
  type BuildResultEvent,
} from './build-events.js';

export interface BuildRequest {
  /** The function's name, already validated. */
  name: string;
  /** Handler module, relative to `dir`: relative, no "..", no NUL. */
  handler: string;
  /**
   * The extracted source, `<build scratch directory>/src`, removed once the build settles. The
   * directory above it holds only an empty package.json and tsconfig.json: esbuild reads those
   * in every directory above the files it bundles and applies the nearest, so these keep any
   * further up (the server's own) from applying to the upload.
   */
  dir: string;
  /** Sends one line of build log to the client (bounded and cut to 4 KiB by the service). */
  log(line: string): void;
  /** Aborted at the deadline, when the client goes away, or when the service shuts down. */
  signal: AbortSignal;
}

export interface BuildServiceOptions {
  /** Parent of the per-build scratch directories (each build gets a fresh mkdtemp under it, removed afterwards, success or failure). */
  scratchDir: string;
  limits?: Partial<ExtractLimits>;
  /** Builds at once; further requests wait in a bounded queue (maxQueued, default 8) and get 503 QUEUE_FULL past it. Default 2. */
  maxConcurrentBuilds?: number;
  maxQueued?: number;
  /** Longest a build may run (ms, default 300000): then it is aborted with DEADLINE_EXCEEDED. */
  buildTimeoutMs?: number;
  /**
   * Turns the extracted source into what a spec's `image` names (bundle + push, or bundle into a
   * store); throws KubefnError on failure. Must settle soon after `signal` aborts: its build slot
   * and scratch directory are held until it does.
   */
  build(request: BuildRequest): Promise<BuildResult>;
}

/** A build request before the service adds its log and signal. */
type BuildSource = Omit<BuildRequest, 'log' | 'signal'>;

interface Config {
  scratchDir: string;
  limits: ExtractLimits;
  maxConcurrentBuilds: number;
  maxQueued: number;
  buildTimeoutMs: number;
  build: BuildServiceOptions['build'];
}

/** Shared by the requests of one plugin instance. */
interface Service {
  config: Config;
  slots: BuildSlots;
  /** Aborted by fastify's preClose, so running builds end instead of holding the close. */
  shutdown: AbortSignal;
}

/** What a POST body may be; anything else gets fastify's 415. Gzip or not is told by magic bytes. */
const archiveContentTypes = ['application/gzip', 'application/x-gzip', 'application/x-tar', 'application/octet-stream'];

/**
 * `POST /system/builds?name=&handler=` with a tar or tar.gz body. Refusals (bad query, too
 * large, queue full, hostile archive) are a 4xx/5xx JSON error body; once the archive is
 * extracted the answer is 200 with NDJSON build events (see `BuildEvent`), ending in exactly one
 * `result` or `error`.
 *
 * Not wrapped in fastify-plugin on purpose: the raw-body content-type parsers must stay in this
 * plugin's scope. Register it where authentication hooks already apply.
 */
export function buildServicePlugin(options: BuildServiceOptions): FastifyPluginAsync {
  const config = resolveOptions(options);
  return async (app) => {
    await mkdir(config.scratchDir, { recursive: true });
    const shutdown = new AbortController();
    const service: Service = {
      config,
      slots: new BuildSlots(config.maxConcurrentBuilds, config.maxQueued),
      shutdown: shutdown.signal,
    };
    const handling = new Set<Promise<void>>();

    // The body reaches the handler unread, as the request stream itself.
    app.removeAllContentTypeParsers();
    app.addContentTypeParser(archiveContentTypes, (_request, payload, done) => done(null, payload));
    app.addHook('preClose', async () => {
      shutdown.abort(new KubefnError('SHUTTING_DOWN', 'the build service is shutting down', { hint: 'retry the build' }));
    });
    // Scratch directories are removed after the response ends; wait for that too.
    app.addHook('onClose', async () => {
      await Promise.allSettled(handling);
    });

    app.post<{ Querystring: BuildQuery }>(
      '/system/builds',
      { schema: { querystring: buildQuerySchema }, attachValidation: true },
      async (request, reply) => {
        const handled = handleBuild(service, request, reply);
        handling.add(handled);
        await handled.finally(() => handling.delete(handled));
      },
    );
  };
}

function resolveOptions(options: BuildServiceOptions): Config {
  const config: Config = {
    scratchDir: path.resolve(options.scratchDir),
    limits: { ...defaultExtractLimits, ...options.limits },
    maxConcurrentBuilds: options.maxConcurrentBuilds ?? 2,
    maxQueued: options.maxQueued ?? 8,
    buildTimeoutMs: options.buildTimeoutMs ?? 300_000,
    build: options.build,
  };
  const minimums = { maxConcurrentBuilds: 1, maxQueued: 0, buildTimeoutMs: 1 } as const;
  for (const [key, min] of Object.entries(minimums) as [keyof typeof minimums, number][]) {
    if (!Number.isSafeInteger(config[key]) || config[key] < min) {
      throw new RangeError(`buildServicePlugin: ${key} must be an integer >= ${min}, not ${config[key]}`);
    }
  }
  return config;
}

async function handleBuild(service: Service, request: BuildHttpRequest, reply: FastifyReply): Promise<void> {
  const { config } = service;
  const gone = clientGone(reply);
  const job = new Job(request.log);
  let events: BuildEventWriter;
  let build: BuildSource;
  try {
    const { name, handler } = checkQuery(request);
    checkDeclaredLength(request, config.limits.maxCompressedBytes);
    // A slot before extraction, so the disk in use is bounded by maxConcurrentBuilds archives.
    job.release = await service.slots.acquire(AbortSignal.any([gone, service.shutdown]));
    job.started = performance.now(); // durationMs leaves out the wait in the queue
    job.scratch = await mkdtemp(path.join(config.scratchDir, 'build-'));
    const dir = path.join(job.scratch, 'src');
    for (const barrier of ['package.json', 'tsconfig.json']) await writeFile(path.join(job.scratch, barrier), '{}\n');
    await mkdir(dir);
    const extracted = await extractUpload(request.raw, dir, config.limits, gone);
    build = { name, handler, dir };
    events = new BuildEventWriter();
    events.log(`extracted ${extracted.files} file${extracted.files === 1 ? '' : 's'} (${extracted.bytes} bytes)`);
  } catch (err) {
    // Nothing is left on disk by the time the client reads the refusal.
    await job.dispose();
    return refuse(request, reply, err, config.limits.maxCompressedBytes);
  }
  // The 200 goes out now, with the extraction summary; from here on errors are events.
  reply.code(200).type('application/x-ndjson').header('cache-control', 'no-store').send(events.readable);
  try {
    await streamBuild(service, build, events, job.started, gone, request.log);
  } finally {
    await job.dispose();
  }
}

/** What one request holds, given back once: its build slot and scratch directory. */
class Job {
  /** When the build got its slot, from `performance.now()` (ms). */
  started = 0;
  release: Release | undefined;
  scratch: string | undefined;

  constructor(private readonly log: FastifyBaseLogger) {}

  async dispose(): Promise<void> {
    if (this.scratch) {
      const dir = this.scratch;
      this.scratch = undefined;
      await rm(dir, { recursive: true, force: true }).catch((err: unknown) =>
        this.log.error({ err }, `could not remove build scratch directory ${dir}`),
      );
    }
    // After the removal, so at most maxConcurrentBuilds scratch directories exist at once.
    this.release?.();
    this.release = undefined;
  }
}

/**
 * Runs the build callback under its deadline and ends `events` with its result or error. The
 * final event goes out as soon as the signal aborts, even if the callback is slow to notice;
 * this returns only once the callback settled, since it may still be using the scratch dir.
 */
async function streamBuild(
  service: Service,
  build: BuildSource,
  events: BuildEventWriter,
  started: number,
  gone: AbortSignal,
  log: FastifyBaseLogger,
): Promise<void> {
  const { buildTimeoutMs } = service.config;
  const deadline = new AbortController();
  const timer = setTimeout(() => {
    deadline.abort(
      new KubefnError('DEADLINE_EXCEEDED', `the build ran longer than ${buildTimeoutMs} ms`, {
        hint: 'make the function smaller, or ask the operator for a longer build timeout',
      }),
    );
  }, buildTimeoutMs);
  const signal = AbortSignal.any([deadline.signal, gone, service.shutdown]);
  const building = Promise.resolve().then(() =>
    service.config.build({ ...build, log: (line) => events.log(line), signal }),
  );
  try {
    const result = await untilAborted(building, signal);
    events.end({ ...result, type: 'result', durationMs: Math.round(performance.now() - started) });
  } catch (err) {
    // After an abort the callback's own error is only its way of stopping; the reason is ours.
    events.end({ type: 'error', error: asKubefnError(signal.aborted ? signal.reason : err, log).toJSON() });
  } finally {
    clearTimeout(timer);
    await building.catch(() => undefined);
  }
}

/** Settles like `promise`, or rejects with the signal's reason as soon as it aborts. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/**
 * Answers with the error's status and JSON body. The body may be partly unread (refused before
 * or during extraction): up to `maxDiscardBytes` more of it is read and dropped first, because
 * closing a socket with unread input resets it, and the client would see ECONNRESET instead of
 * the answer. If the body was not read to its end the connection is closed after the answer.
 */
async function refuse(request: FastifyRequest, reply: FastifyReply, err: unknown, maxDiscardBytes: number): Promise<void> {
  const error = asKubefnError(err, request.log);
  const drained = await discardBody(request.raw, maxDiscardBytes);
  if (!drained) reply.header('connection', 'close');
  reply.code(error.status).type('application/json').send(error.toJSON());
}

/** Aborts when the connection closes before the response was sent in full. */
function clientGone(reply: FastifyReply): AbortSignal {
  const controller = new AbortController();
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) controller.abort(new KubefnError('BAD_REQUEST', 'the client went away'));
  });
  return controller.signal;
}

/** Errors from the build callback or extraction as they are; anything else is hidden as INTERNAL. */
function asKubefnError(err: unknown, log: FastifyBaseLogger): KubefnError {
  if (err instanceof KubefnError) return err;
  // Matched on code: an error from another copy of @kubefn/platform is still ours.
  if (isKubefnError(err)) return new KubefnError(err.code, err.message, { hint: err.hint, cause: err });
  log.error({ err }, 'build service error');
  return new KubefnError('INTERNAL', 'internal build service error', { cause: err });
}
