// The kubefn error catalogue: one class, matched on `code`, mapped to HTTP only at the edge.

import type { ErrorBody } from './runtime-contract.js';

export const errorCatalogue = {
  INVALID_SPEC: { status: 400, userFault: true },
  INVALID_NAME: { status: 400, userFault: true },
  BAD_REQUEST: { status: 400, userFault: true },
  UNAUTHORIZED: { status: 401, userFault: true },
  FORBIDDEN: { status: 403, userFault: true },
  NOT_FOUND: { status: 404, userFault: true },
  ALREADY_EXISTS: { status: 409, userFault: true },
  /** What the spec asks for clashes with something that exists (a NATS stream or consumer). */
  CONFLICT: { status: 409, userFault: true },
  BODY_TOO_LARGE: { status: 413, userFault: true },
  NOT_SUPPORTED: { status: 501, userFault: false },
  BUILD_FAILED: { status: 422, userFault: true },
  HANDLER_ERROR: { status: 500, userFault: true },
  REPLICA_FAILED: { status: 502, userFault: false },
  START_FAILED: { status: 503, userFault: true },
  /** The function's handler cannot load: its module throws on import, has no default export, or init() throws. */
  LOAD_FAILED: { status: 503, userFault: true },
  /** A replica used more memory than its `resources.memory` and was killed (or V8 ran out of heap). */
  OUT_OF_MEMORY: { status: 503, userFault: true },
  /** A replica stopped answering its liveness probe (a handler that blocks the event loop) and was killed. */
  UNHEALTHY: { status: 503, userFault: true },
  QUEUE_FULL: { status: 503, userFault: false },
  OVERLOADED: { status: 503, userFault: false },
  SHUTTING_DOWN: { status: 503, userFault: false },
  UNAVAILABLE: { status: 503, userFault: false },
  DEADLINE_EXCEEDED: { status: 504, userFault: false },
  TIMEOUT: { status: 504, userFault: true },
  /** A disk the platform writes to is full (ENOSPC, EDQUOT). */
  NO_SPACE: { status: 507, userFault: false },
  /** Something the platform stored (a bundle, an app) no longer matches its digest; it was moved aside. */
  CORRUPT: { status: 500, userFault: false },
  INTERNAL: { status: 500, userFault: false },
} as const satisfies Record<string, { status: number; userFault: boolean }>;

export type ErrorCode = keyof typeof errorCatalogue;

/**
 * The catalogue code for a failed call to a dependency (the Kubernetes API, a registry) by its
 * HTTP status: 401 is a wrong or missing credential, 403 a credential that is not allowed this
 * verb on this resource, and 429 or 5xx a dependency that is overloaded or down (retryable).
 */
export function dependencyErrorCode(status: number): ErrorCode {
  if (status === 401) return 'UNAUTHORIZED';
  if (status === 403) return 'FORBIDDEN';
  if (status === 404) return 'NOT_FOUND';
  if (status === 409) return 'ALREADY_EXISTS';
  if (status === 429 || status >= 500) return 'UNAVAILABLE';
  return 'BAD_REQUEST';
}

export interface FieldError {
  /** Dotted path of the offending field, e.g. `scale.min`. */
  field: string;
  message: string;
}

export class KubefnError extends Error {
  override readonly name = 'KubefnError';
  readonly code: ErrorCode;
  readonly status: number;
  readonly userFault: boolean;
  /** How the user can fix it, for CLI output. */
  readonly hint: string | undefined;
  readonly fields: FieldError[] | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    options: { cause?: unknown; hint?: string; fields?: FieldError[] } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.status = errorCatalogue[code].status;
    this.userFault = errorCatalogue[code].userFault;
    this.hint = options.hint;
    this.fields = options.fields;
  }

  /** The JSON body an HTTP edge sends for this error. */
  toJSON(): ErrorBody {
    const body: ErrorBody = { code: this.code, message: this.message };
    if (this.hint) body.hint = this.hint;
    if (this.fields) body.fields = this.fields;
    return body;
  }
}

export type { ErrorBody };

/** Matches on `code`, so errors that crossed a package or process boundary still match. */
export function isKubefnError(err: unknown, code?: ErrorCode): err is KubefnError {
  if (typeof err !== 'object' || err === null) return false;
  const c = (err as { code?: unknown }).code;
  if (typeof c !== 'string' || !(c in errorCatalogue)) return false;
  return code === undefined || c === code;
}

/** Rebuilds an error from an HTTP error body (the CLI's side of the edge). */
export function errorFromBody(status: number, body: unknown): KubefnError {
  if (typeof body === 'object' && body !== null) {
    const b = body as Partial<ErrorBody>;
    if (typeof b.code === 'string' && b.code in errorCatalogue && typeof b.message === 'string') {
      const opts: { hint?: string; fields?: FieldError[] } = {};
      if (b.hint) opts.hint = b.hint;
      if (b.fields) opts.fields = b.fields;
      return new KubefnError(b.code as ErrorCode, b.message, opts);
    }
  }
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  const code: ErrorCode =
    status === 404 ? 'NOT_FOUND'
    : status === 401 ? 'UNAUTHORIZED'
    : status === 403 ? 'FORBIDDEN'
    : status === 429 || status === 502 || status === 503 ? 'UNAVAILABLE'
    : status < 500 ? 'BAD_REQUEST'
    : 'INTERNAL';
  return new KubefnError(code, `HTTP ${status}: ${text?.slice(0, 500) ?? ''}`);
}
