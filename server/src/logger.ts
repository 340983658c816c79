// The logger of every kubefn server part: pino (fastify's own), as one JSON object per line in
// the cluster and for `fn up --json`, or as short human lines on stderr for `fn up`.
//
// The parts log through `Logger` (message first, then fields, as the autoscaler's logger is
// called); fastify gets the pino instance underneath, so request logs and the error handler's
// logs (with their `cause` chain, by pino's error serializer) go to the same stream.

import { pino, type DestinationStream, type Logger as PinoLogger } from 'pino';

type Fields = Record<string, unknown>;

/** Lines gathered for one write to stdout at most. */
const batchBytes = 64 * 1024;

export interface Logger {
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
  /** The pino logger underneath, for fastify (`loggerInstance`) and children. */
  readonly pino: PinoLogger;
  /** A logger that adds `fields` to every line. */
  child(fields: Fields): Logger;
  /** Whether its lines are JSON (so another process of the platform can log as it does). */
  readonly json: boolean;
}

export interface LoggerOptions {
  /** JSON lines on stdout (default), or human lines on stderr. */
  json?: boolean;
  /** pino level (default "info"; KUBEFN_LOG_LEVEL in the components). */
  level?: string;
  /** Where the lines go instead of stdout/stderr (tests). */
  destination?: { write(line: string): unknown };
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const json = options.json ?? true;
  let stream: DestinationStream;
  if (json && !options.destination) {
    stream = stdoutLines();
  } else {
    const out = options.destination ?? (json ? process.stdout : process.stderr);
    stream = json ? { write: (line: string) => void out.write(line) } : { write: (line: string) => void out.write(humanLine(line)) };
  }
  const base = pino(
    {
      level: options.level ?? 'info',
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    stream,
  );
  return wrap(base, json);
}

let stdoutBatch: LineBatch | undefined;

/**
 * Request logs write a line per call. Written one write(2) each, they were a tenth of the
 * gateway's CPU under load; the lines logged in one turn of the event loop are written together
 * at its end (or once 64 KiB are waiting), and whatever is left when the process exits.
 */
function stdoutLines(): LineBatch {
  if (!stdoutBatch) {
    const batch = new LineBatch((text) => process.stdout.write(text));
    process.on('exit', () => batch.flush());
    stdoutBatch = batch;
  }
  return stdoutBatch;
}

export class LineBatch implements DestinationStream {
  readonly #out: (text: string) => unknown;
  #lines: string[] = [];
  #bytes = 0;
  #scheduled = false;

  constructor(out: (text: string) => unknown) {
    this.#out = out;
  }

  write(line: string): void {
    this.#lines.push(line);
    this.#bytes += line.length;
    if (this.#bytes >= batchBytes) this.flush();
    else if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  flush(): void {
    this.#scheduled = false;
    if (this.#lines.length === 0) return;
    const text = this.#lines.join('');
    this.#lines = [];
    this.#bytes = 0;
    this.#out(text);
  }
}

function wrap(p: PinoLogger, json: boolean): Logger {
  return {
    json,
    info: (msg, fields) => p.info(fields ?? {}, msg),
    warn: (msg, fields) => p.warn(fields ?? {}, msg),
    error: (msg, fields) => p.error(fields ?? {}, msg),
    pino: p,
    child: (fields) => wrap(p.child(fields), json),
  };
}

/**
 * One pino JSON line as `fn up` has always printed it: "HH:MM:SS [LEVEL ]msg k=v ...", with an
 * error's message (causes included) rather than its stack.
 */
export function humanLine(line: string): string {
  let entry: Fields;
  try {
    entry = JSON.parse(line) as Fields;
  } catch {
    return line;
  }
  const { time, level, msg, err, ...fields } = entry;
  const clock = typeof time === 'string' ? new Date(time).toTimeString().slice(0, 8) : new Date().toTimeString().slice(0, 8);
  const label = level === 'info' || level === undefined ? '' : `${String(level).toUpperCase()} `;
  if (err && typeof err === 'object') fields.err = (err as { message?: unknown }).message ?? err;
  else if (err !== undefined) fields.err = err;
  const extra = Object.entries(fields)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ');
  return `${clock} ${label}${String(msg ?? '')}${extra ? ' ' + extra : ''}\n`;
}
