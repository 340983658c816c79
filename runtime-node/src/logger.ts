// JSON-lines logger: one object per line on stdout, shared by the runtime and every call's context.logger.

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export const logLevels: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];

/** Receives one finished JSON line (without the trailing newline). */
export type LogSink = (line: string) => void;

export type LogFields = Record<string, unknown>;

/** What a handler sees as `context.logger`. */
export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
}

const rank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

// Keys the logger owns; a field with one of these names is dropped so every line keeps the same shape.
const reserved = new Set(['time', 'level', 'msg', 'function', 'instance', 'callId']);

export function stdoutSink(line: string): void {
  // Writes to a pipe or file are synchronous on Linux, so a line written just before
  // process.exit() is not lost.
  process.stdout.write(line + '\n');
}

export class RootLogger implements Logger {
  private readonly min: number;

  constructor(
    private readonly functionName: string,
    private readonly instance: string,
    level: LogLevel = 'info',
    private readonly sink: LogSink = stdoutSink,
  ) {
    this.min = rank[level];
  }

  enabled(level: LogLevel): boolean {
    return rank[level] >= this.min;
  }

  write(level: LogLevel, msg: string, fields: LogFields | undefined, callId: string | undefined): void {
    if (rank[level] < this.min) return;
    const record: Record<string, unknown> = {
      time: new Date().toISOString(),
      level,
      msg,
      function: this.functionName,
      instance: this.instance,
    };
    if (callId !== undefined) record.callId = callId;
    if (fields) {
      for (const key of Object.keys(fields)) {
        if (!reserved.has(key)) record[key] = serialise(fields[key]);
      }
    }
    let line: string;
    try {
      line = JSON.stringify(record);
    } catch (err) {
      // A handler may log a cyclic object or a BigInt; keep the message rather than throw into its code.
      line = JSON.stringify({
        time: record.time, level, msg, function: this.functionName, instance: this.instance, callId,
        logError: `fields could not be serialised: ${(err as Error).message}`,
      });
    }
    this.sink(line);
  }

  /** A logger whose lines carry this call's id. */
  forCall(callId: string): Logger {
    return new CallLogger(this, callId);
  }

  debug(msg: string, fields?: LogFields): void { this.write('debug', msg, fields, undefined); }
  info(msg: string, fields?: LogFields): void { this.write('info', msg, fields, undefined); }
  warn(msg: string, fields?: LogFields): void { this.write('warn', msg, fields, undefined); }
  error(msg: string, fields?: LogFields): void { this.write('error', msg, fields, undefined); }
}

class CallLogger implements Logger {
  constructor(private readonly root: RootLogger, private readonly callId: string) {}
  debug(msg: string, fields?: LogFields): void { this.root.write('debug', msg, fields, this.callId); }
  info(msg: string, fields?: LogFields): void { this.root.write('info', msg, fields, this.callId); }
  warn(msg: string, fields?: LogFields): void { this.root.write('warn', msg, fields, this.callId); }
  error(msg: string, fields?: LogFields): void { this.root.write('error', msg, fields, this.callId); }
}

/** Errors become `{message, stack}` (JSON.stringify would turn them into `{}`). */
export function serialise(value: unknown): unknown {
  if (!(value instanceof Error)) return value;
  const out: Record<string, unknown> = { message: value.message, stack: value.stack };
  const code = (value as { code?: unknown }).code;
  if (code !== undefined) out.code = code;
  if (value.cause !== undefined) out.cause = serialise(value.cause);
  return out;
}
