// `fn logs`: prints a function's log lines from all its replicas, optionally following until Ctrl-C.

import type { Command } from 'commander';
import { validateName } from '@kubefn/platform/core';
import type { App } from './app.js';
import { parseCount, parseSince } from './args.js';
import type { LogEntry, LogQuery } from './client.js';
import { checkArg, isAbort } from './errors.js';

/** "2026-01-02T15:04:05.123Z hello-1 text". */
export function formatLogEntry(e: LogEntry): string {
  return [e.timestamp, e.instance, e.text].filter((part) => part !== '').join(' ');
}

interface LogsFlags {
  follow?: boolean;
  tail?: string;
  since?: string;
  json?: boolean;
}

export function registerLogs(program: Command, app: App): void {
  program
    .command('logs')
    .description("print a function's logs from every replica")
    .argument('<name>', 'function name')
    .option('-f, --follow', 'keep streaming new lines until Ctrl-C')
    .option('--tail <n>', 'only the last n lines of history')
    .option('--since <duration|time>', 'only lines newer than this: "10m", "1h" or an RFC 3339 time')
    .option('--json', 'print each line as the JSON object the gateway sent')
    .addHelpText(
      'after',
      `
Examples:
  $ fn logs hello
  $ fn logs hello -f --tail 20
  $ fn logs hello --since 10m
  $ fn logs hello --json | jq -r .text`,
    )
    .action(async (name: string, flags: LogsFlags, command: Command) => {
      checkArg(() => validateName(name));
      const query: LogQuery = { follow: flags.follow === true };
      if (flags.tail !== undefined) query.tail = parseCount(flags.tail, '--tail', 0, 1_000_000);
      if (flags.since !== undefined) query.since = parseSince(flags.since, app.io.now());
      const client = app.client(command);
      try {
        if (flags.json) {
          for await (const line of client.logLines(name, query, app.io.signal)) app.out(line);
        } else {
          for await (const entry of client.logs(name, query, app.io.signal)) app.out(formatLogEntry(entry));
        }
      } catch (err) {
        // Ctrl-C is how a person ends `fn logs -f`: a clean stop, not an error.
        if (isAbort(err) && app.io.signal.aborted) return;
        throw err;
      }
    });
}
