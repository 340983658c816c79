// The handler contract: the types a function author sees, loading a handler module, and mapping its result.

import type { Logger } from './logger.js';

/** A CloudEvents 1.0 event, present on `context.event` when the call came from an event trigger. */
export interface CloudEvent {
  id: string;
  source: string;
  type: string;
  specversion: string;
  subject?: string;
  time?: string;
  datacontenttype?: string;
  data?: unknown;
}

/** The second argument every handler gets. */
export interface Context {
  readonly functionName: string;
  readonly instance: string;
  /** The call's id: the incoming `x-call-id` header, or a fresh UUID. Also set on the response. */
  readonly callId: string;
  /** JSON log lines carrying `callId` and `function`. */
  readonly logger: Logger;
  /** Fires when the call times out (reason name `TimeoutError`) or the client goes away (`AbortError`). */
  readonly signal: AbortSignal;
  /** When the call times out, in epoch ms. */
  readonly deadline: number;
  /** The event, when the call came from an event trigger; undefined for plain HTTP. */
  readonly event?: CloudEvent | undefined;
}

export type HandlerResult = Response | string | object | Uint8Array | ArrayBuffer | null | undefined | void;

export type Handler = (request: Request, context: Context) => HandlerResult | Promise<HandlerResult>;

/** Workers style: `export default { fetch(request, context) { ... } }`. */
export interface FetchHandler {
  fetch: Handler;
}

/**
 * What `import * as m from './handler.js'` gives for a function module. Typed loosely on purpose:
 * any module namespace is accepted, and loadHandler checks its shape once at startup.
 */
export interface HandlerModule {
  /** A Handler, or a FetchHandler. */
  readonly default?: unknown;
  /** Runs once, before the replica reports ready. */
  readonly init?: unknown;
}

export interface LoadedHandler {
  invoke: Handler;
  init: (() => unknown) | undefined;
}

export class HandlerLoadError extends Error {
  override readonly name = 'HandlerLoadError';
  readonly code = 'INVALID_HANDLER';
}

/** Checks the module's shape once, at startup, so a bad module fails before the replica is ready. */
export function loadHandler(mod: HandlerModule): LoadedHandler {
  if (mod === null || (typeof mod !== 'object' && typeof mod !== 'function')) {
    throw new HandlerLoadError(`handler module must be a module object, got ${describe(mod)}`);
  }
  const init = mod.init;
  if (init !== undefined && typeof init !== 'function') {
    throw new HandlerLoadError(`the handler module's "init" export must be a function, got ${describe(init)}`);
  }
  const main = mod.default;
  let invoke: Handler;
  if (typeof main === 'function') {
    invoke = main as Handler;
  } else if (main !== null && typeof main === 'object' && typeof (main as FetchHandler).fetch === 'function') {
    const target = main as FetchHandler;
    invoke = (request, context) => target.fetch(request, context);
  } else {
    throw new HandlerLoadError(
      'the handler module must have a default export that is a function `(request, context) => Response | string | object`' +
        ' or an object with a `fetch(request, context)` method; ' +
        (main === undefined ? 'it has no default export' : `its default export is ${describe(main)}`),
    );
  }
  return { invoke, init: init as (() => unknown) | undefined };
}

/** A handler result that is not a Response, ready to write as one block. */
export class PlainReply {
  constructor(
    readonly status: number,
    readonly contentType: string | undefined,
    readonly body: string | Uint8Array | undefined,
  ) {}
}

export class ResultError extends Error {
  override readonly name = 'ResultError';
}

const noContent = new PlainReply(204, undefined, undefined);
const octetStream = 'application/octet-stream';

/**
 * Maps a handler's return value: Response as is; string -> 200 text/plain; bytes -> 200
 * application/octet-stream; null/undefined -> 204; anything else -> 200 JSON.
 * Throws ResultError when the value cannot be serialised.
 */
export function mapResult(result: unknown): Response | PlainReply {
  if (typeof result === 'string') return new PlainReply(200, 'text/plain; charset=utf-8', result);
  if (result === null || result === undefined) return noContent;
  if (typeof result === 'object') {
    if (result instanceof Response || isResponseLike(result)) return result as Response;
    if (result instanceof Uint8Array) return new PlainReply(200, octetStream, result);
    if (result instanceof ArrayBuffer) return new PlainReply(200, octetStream, new Uint8Array(result));
    if (ArrayBuffer.isView(result)) {
      const bytes = new Uint8Array(result.buffer, result.byteOffset, result.byteLength);
      return new PlainReply(200, octetStream, bytes);
    }
  }
  let json: string | undefined;
  try {
    json = JSON.stringify(result);
  } catch (err) {
    throw new ResultError(`handler result cannot be serialised as JSON: ${(err as Error).message}`, { cause: err });
  }
  // JSON.stringify returns undefined for functions and symbols.
  if (json === undefined) throw new ResultError(`handler result cannot be serialised as JSON: ${describe(result)}`);
  return new PlainReply(200, 'application/json', json);
}

// A Response from another realm or a bundled fetch polyfill fails instanceof but works the same.
function isResponseLike(value: object): boolean {
  const v = value as Partial<Response>;
  return typeof v.status === 'number' && typeof v.headers?.get === 'function' && 'body' in v &&
    typeof v.arrayBuffer === 'function';
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'object') return `an object with keys [${Object.keys(value).join(', ')}]`;
  return `${typeof value} ${String(value)}`;
}
