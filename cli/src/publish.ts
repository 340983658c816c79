// `fn publish`: a message to a NATS subject through the gateway (which reaches NATS where this
// machine may not), or with --reply a request whose reply is printed.

import type { Command } from 'commander';
import { formatDuration, subjectProblem } from '@kubefn/platform/core';
import type { App } from './app.js';
import { collect, parseDurationArg, splitPair } from './args.js';
import type { PublishRequest } from './client.js';
import { usageError } from './errors.js';
import { readAll } from './invoke.js';

/** Longest --timeout, ms: the gateway waits no longer for a reply. */
const maxTimeoutMs = 5 * 60_000;

interface PublishFlags {
  reply?: boolean;
  header?: string[];
  timeout?: string;
  json?: boolean;
}

/** The request `fn publish` sends for these arguments; usage errors for bad ones. Data is read by the caller. */
export function publishRequest(subject: string, flags: PublishFlags): Omit<PublishRequest, 'data' | 'signal'> {
  const bad = subjectProblem(subject, false);
  if (bad) throw usageError(`subject ${bad}`, 'e.g. fn publish orders.new \'{"id":1}\'');
  const headers = (flags.header ?? []).map((text) => {
    const [name, value] = splitPair(text, '=', '--header', 'name=value');
    if (!/^[\x21-\x39\x3b-\x7e]+$/.test(name)) throw usageError(`--header name must be printable ASCII without spaces or ":", got ${JSON.stringify(name)}`);
    if (/[\r\n]/.test(value)) throw usageError(`--header ${name} must be one line`);
    return [name, value] as const;
  });
  const request: Omit<PublishRequest, 'data' | 'signal'> = { subject, headers };
  if (flags.timeout !== undefined) {
    const ms = parseDurationArg(flags.timeout, '--timeout');
    if (ms < 1 || ms > maxTimeoutMs) throw usageError(`--timeout must be from 1ms to 5m, got ${JSON.stringify(flags.timeout)}`);
    request.timeout = formatDuration(ms);
  }
  return request;
}

export function registerPublish(program: Command, app: App): void {
  program
    .command('publish')
    .description('publish a message to a NATS subject through the gateway; with --reply, print the reply')
    .argument('<subject>', 'subject to publish to, e.g. orders.new (no wildcards)')
    .argument('[data]', 'the message: text, or - to read stdin (default: empty)')
    .option('--reply', 'send a request and print the reply\'s data (a function with a nats trigger answers)')
    .option('--header <name=value>', 'NATS header, name as written (repeatable)', collect)
    .option('--timeout <duration>', 'how long to wait for the reply, up to 5m', '10s')
    .option('--json', 'print the gateway\'s answer as JSON (with --reply: status, headers, data and its encoding)')
    .addHelpText(
      'after',
      `
The gateway publishes the message, so this works wherever \`fn\` reaches the gateway. With
--reply the reply's data goes to stdout; a reply whose kubefn-status (the HTTP status of the
function that answered) is not 200 is reported on stderr, and one outside 2xx exits 1.

Examples:
  $ fn publish orders.new '{"id":1}'
  $ fn publish orders.new '{"id":1}' --reply
  $ echo '{"id":2}' | fn publish orders.new - --header content-type=application/json
  $ fn publish orders.new '{"id":3}' --header Nats-Msg-Id=order-3
  $ fn publish images.resize - --reply --timeout 1m < photo.jpg > small.jpg`,
    )
    .action(async (subject: string, data: string | undefined, flags: PublishFlags, command: Command) => {
      const request = publishRequest(subject, flags);
      const body = data === '-' ? await readAll(app.io.stdin) : data === undefined ? undefined : new TextEncoder().encode(data);
      const client = app.client(command);
      const common = { ...request, ...(body ? { data: body } : {}), signal: app.io.signal };
      if (!flags.reply) {
        const published = await client.publish(common);
        if (flags.json) app.json(published);
        else app.note(`published ${published.bytes} bytes to ${published.subject}`);
        return;
      }
      const reply = await client.publish({ ...common, reply: true });
      if (flags.json) {
        app.json(reply);
      } else {
        const bytes = reply.encoding === 'base64' ? Buffer.from(reply.data, 'base64') : Buffer.from(reply.data, 'utf8');
        app.io.stdout.write(bytes);
        // Keep the shell prompt off the end of a reply without a final newline.
        if (app.io.stdout.isTTY && bytes.length && bytes[bytes.length - 1] !== 0x0a) app.io.stdout.write('\n');
      }
      if (reply.status !== undefined && reply.status !== 200) app.note(`kubefn-status: ${reply.status}`);
      if (reply.status !== undefined && (reply.status < 200 || reply.status > 299)) app.exitCode = 1;
    });
}
