// What every command gets: the process's streams and environment (injectable for tests), global options and a client.

import os from 'node:os';
import type { Readable } from 'node:stream';
import type { Command } from 'commander';
import { GatewayClient } from './client.js';
import { resolveConfig, type Config } from './config.js';
import { createProgress, type OutStream, type Progress } from './output.js';

export interface Io {
  stdout: OutStream;
  stderr: OutStream;
  /** `isTTY` is true when a person is typing rather than a pipe feeding data. */
  stdin: Readable & { isTTY?: boolean };
  env: Record<string, string | undefined>;
  cwd: string;
  homedir: string;
  /** Aborts on Ctrl-C; long waits and streams end when it fires. */
  signal: AbortSignal;
  /** Wall-clock milliseconds, for ages. */
  now(): number;
  /** Replaces the global fetch, e.g. in tests. */
  fetch?: typeof fetch;
}

/**
 * The real process. Ctrl-C handling is installed the first time a command reads `signal`, so a
 * command that never waits (or one like `fn up` that handles signals itself) keeps Node's default.
 * The first Ctrl-C aborts the signal; a second one kills the process as usual.
 */
export function processIo(): { io: Io; dispose: () => void } {
  const controller = new AbortController();
  const onSigint = () => controller.abort();
  // `fn logs -f | head -1`: once the reader is gone there is nobody left to print for.
  const onStdoutError = (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    process.exit(process.exitCode ?? 0);
  };
  process.stdout.on('error', onStdoutError);
  let installed = false;
  const io: Io = {
    stdout: process.stdout,
    stderr: process.stderr,
    stdin: process.stdin,
    env: process.env,
    cwd: process.cwd(),
    homedir: os.homedir(),
    get signal() {
      if (!installed) {
        installed = true;
        process.once('SIGINT', onSigint);
      }
      return controller.signal;
    },
    now: () => Date.now(),
  };
  return {
    io,
    // The EPIPE handler stays: a write buffered before main() returned can fail after it
    // (`fn --help | head -1`), and that is still nobody left to print for.
    dispose: () => process.off('SIGINT', onSigint),
  };
}

/** Options every command accepts (declared on the root program). */
export interface GlobalOptions {
  gateway?: string;
  token?: string;
}

export class App {
  readonly io: Io;
  readonly version: string;
  /** Set by a command that finished without throwing but must not exit 0 (e.g. a non-2xx invoke). */
  exitCode = 0;

  constructor(io: Io, version: string) {
    this.io = io;
    this.version = version;
  }

  config(command: Command): Config {
    const opts = command.optsWithGlobals<GlobalOptions>();
    return resolveConfig({ gateway: opts.gateway, token: opts.token, env: this.io.env, homedir: this.io.homedir });
  }

  client(command: Command): GatewayClient {
    const config = this.config(command);
    return new GatewayClient({
      gateway: config.gateway,
      token: config.token,
      tokenFile: config.tokenFile,
      userAgent: `kubefn-cli/${this.version}`,
      ...(this.io.fetch ? { fetch: this.io.fetch } : {}),
    });
  }

  progress(json: boolean): Progress {
    return createProgress({ stdout: this.io.stdout, stderr: this.io.stderr, json, env: this.io.env });
  }

  /** One line of data on stdout. */
  out(text = ''): void {
    this.io.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
  }

  /** Indented JSON on stdout, for --json. */
  json(value: unknown): void {
    this.io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  }

  /** A message for the person (progress, notices) on stderr, so stdout stays data. */
  note(text: string): void {
    this.io.stderr.write(text.endsWith('\n') ? text : `${text}\n`);
  }
}
