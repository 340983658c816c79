// `fn secret create|list|delete`: named values functions read as files (/var/openfaas/secrets/<name>)
// or, through `secretEnv` in fn.yaml, as environment variables.

import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { maxSecretBytes, validateName } from '@kubefn/platform/core';
import type { App, Io } from './app.js';
import { checkArg, usageError } from './errors.js';
import { formatTable } from './output.js';

/** The value from exactly one of: the argument, `-` (stdin), --from-file. Bounded by maxSecretBytes. */
export async function secretValue(value: string | undefined, fromFile: string | undefined, io: Io): Promise<Uint8Array> {
  if (value !== undefined && fromFile !== undefined) throw usageError('give the value once: as an argument, as "-" for stdin, or with --from-file');
  let bytes: Uint8Array;
  if (fromFile !== undefined) {
    const file = path.resolve(io.cwd, fromFile);
    const info = await stat(file).catch((err: NodeJS.ErrnoException) => {
      throw usageError(`cannot read --from-file ${file}: ${err.code ?? err.message}`);
    });
    if (info.size > maxSecretBytes) throw tooLarge(info.size);
    bytes = await readFile(file);
  } else if (value === '-') {
    bytes = await readBounded(io.stdin);
  } else if (value !== undefined) {
    bytes = new TextEncoder().encode(value);
  } else {
    throw usageError('no value given', 'pass it as an argument, "-" to read stdin, or --from-file <file>');
  }
  if (bytes.byteLength === 0) throw usageError('the secret value is empty');
  if (bytes.byteLength > maxSecretBytes) throw tooLarge(bytes.byteLength);
  return bytes;
}

function tooLarge(bytes: number) {
  return usageError(`the secret value is ${bytes} bytes, over the ${maxSecretBytes} byte limit`);
}

/** Reads a stream, stopping one byte past the limit so an endless pipe cannot fill memory. */
async function readBounded(stream: AsyncIterable<unknown>): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of stream) {
    const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string);
    chunks.push(b);
    total += b.length;
    if (total > maxSecretBytes) break;
  }
  return Buffer.concat(chunks);
}

export function registerSecret(program: Command, app: App): void {
  const secret = program
    .command('secret')
    .description('create, list and delete secrets that functions read as files (/var/openfaas/secrets/<name>)')
    .addHelpText(
      'after',
      `
A function gets the secrets its fn.yaml lists under \`secrets\`, one file per name:
/var/openfaas/secrets/<name> in a container (podman, kubernetes), or $KUBEFN_SECRETS_DIR/<name>
with the process driver, which cannot mount there. \`secretEnv\` sets environment variables from
them too:

  secrets: [db-password]
  secretEnv:
    DB_PASSWORD: db-password

Replicas read a secret's value when they start: after \`fn secret create --update\`, redeploy
(or scale to 0 and back) for running replicas to see the new value.

Examples:
  $ fn secret create db-password 's3cr3t'
  $ fn secret create tls-key --from-file ./key.pem
  $ printf %s "$TOKEN" | fn secret create api-token -
  $ fn secret list
  $ fn secret delete db-password`,
    );

  secret
    .command('create')
    .description('create a secret (--update: or replace its value)')
    .argument('<name>', 'secret name: lower-case letters, digits and "-"')
    .argument('[value]', 'the value; "-" reads it from stdin (bytes as given, a trailing newline included)')
    .option('--from-file <file>', 'read the value from a file (any bytes)')
    .option('--update', 'replace the value when the secret exists')
    .action(async (name: string, value: string | undefined, opts: { fromFile?: string; update?: boolean }, command: Command) => {
      checkArg(() => validateName(name, 'secret'));
      const bytes = await secretValue(value, opts.fromFile, app.io);
      const { created } = await app.client(command).putSecret(name, bytes, opts.update === true, app.io.signal);
      app.out(`${created ? 'created' : 'updated'} secret "${name}" (${bytes.byteLength} bytes)`);
    });

  secret
    .command('list')
    .alias('ls')
    .description('list secret names (values are never shown)')
    .option('--json', 'print the secrets as a JSON array')
    .action(async (opts: { json?: boolean }, command: Command) => {
      const secrets = await app.client(command).listSecrets(app.io.signal);
      if (opts.json) return app.json(secrets);
      if (secrets.length === 0) return app.note('no secrets; create one with `fn secret create <name> <value>`');
      app.io.stdout.write(formatTable(['NAME'], secrets.map((s) => [s.name])));
    });

  secret
    .command('delete')
    .alias('rm')
    .description('delete a secret (functions that list it keep running; new replicas cannot start until it is back)')
    .argument('<name>', 'secret name')
    .action(async (name: string, _opts: unknown, command: Command) => {
      checkArg(() => validateName(name, 'secret'));
      await app.client(command).deleteSecret(name, app.io.signal);
      app.out(`deleted secret "${name}"`);
    });
}
