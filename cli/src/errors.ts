// The CLI's own error catalogue (usage mistakes, an unreachable gateway) and how any error becomes stderr text and an exit code.

import type { FieldError } from '@kubefn/platform';

export const cliErrorCatalogue = {
  /** Bad arguments or options: the command did nothing. */
  USAGE: { exitCode: 2 },
  /** No TCP connection to the gateway (refused, DNS, timeout). */
  GATEWAY_UNREACHABLE: { exitCode: 1 },
  /** Ctrl-C while a command was working. */
  INTERRUPTED: { exitCode: 130 },
} as const satisfies Record<string, { exitCode: number }>;

export type CliErrorCode = keyof typeof cliErrorCatalogue;

export class CliError extends Error {
  override readonly name = 'CliError';
  readonly code: CliErrorCode;
  readonly exitCode: number;
  /** How the user can fix it. */
  readonly hint: string | undefined;

  constructor(code: CliErrorCode, message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.exitCode = cliErrorCatalogue[code].exitCode;
    this.hint = options.hint;
  }
}

export function usageError(message: string, hint?: string): CliError {
  return new CliError('USAGE', message, hint === undefined ? {} : { hint });
}

/**
 * Runs a validator (such as platform's `validateName`) on a command-line argument and turns
 * whatever it throws into a usage error (exit code 2), keeping its hint.
 */
export function checkArg<T>(validate: () => T): T {
  try {
    return validate();
  } catch (err) {
    const { message, hint } = describeError(err);
    throw usageError(message, hint);
  }
}

/** 2 for usage errors, 130 for Ctrl-C, 1 for everything else. */
export function exitCodeFor(err: unknown): number {
  if (err instanceof CliError) return err.exitCode;
  if (isAbort(err)) return cliErrorCatalogue.INTERRUPTED.exitCode;
  return 1;
}

export function isAbort(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { name?: unknown }).name === 'AbortError';
}

interface Described {
  message: string;
  hint: string | undefined;
  fields: FieldError[];
}

/** Reads message, hint and field errors off a KubefnError, a CliError or anything else thrown. */
export function describeError(err: unknown): Described {
  if (typeof err === 'object' && err !== null) {
    const e = err as { message?: unknown; hint?: unknown; fields?: unknown };
    const fields = Array.isArray(e.fields) ? (e.fields as FieldError[]) : [];
    return {
      message: typeof e.message === 'string' && e.message ? e.message : String(err),
      hint: typeof e.hint === 'string' && e.hint ? e.hint : undefined,
      fields,
    };
  }
  return { message: String(err), hint: undefined, fields: [] };
}

/**
 * The stderr text for an error:
 *
 *     error: invalid function spec in /src/hello/fn.yaml
 *       scale.min: must be <= scale.max (5 > 2) [fn.yaml:7:3]
 *     hint: fix the fields above
 */
export function formatError(err: unknown, options: { stack?: boolean } = {}): string {
  if (isAbort(err)) return 'interrupted\n';
  const { message, hint, fields } = describeError(err);
  let out = `error: ${withoutFieldSummary(message, fields)}\n`;
  for (const f of fields) out += `  ${f.field || '(root)'}: ${f.message}\n`;
  if (hint) out += `hint: ${hint}\n`;
  if (options.stack && err instanceof Error && err.stack) out += `${err.stack}\n`;
  return out;
}

/**
 * parseFunctionSpec puts a one-line summary of the fields in its message
 * ("invalid spec for function "x": scale.min: must be ..."); the fields are printed one per line
 * below it, so cut the summary off rather than say everything twice.
 */
function withoutFieldSummary(message: string, fields: FieldError[]): string {
  const first = fields[0];
  if (!first) return message;
  const at = message.indexOf(`: ${first.field || '(root)'}: `);
  return at > 0 ? message.slice(0, at) : message;
}
