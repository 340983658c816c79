// `fn list`, `fn describe`, `fn delete`, `fn scale`: reading and changing deployed functions.

import type { Command } from 'commander';
import { validateName } from '@kubefn/platform/core';
import type { FunctionSpec } from '@kubefn/platform';
import type { App } from './app.js';
import { parseCount } from './args.js';
import type { FunctionEventsInfo, FunctionInfo } from './client.js';
import { checkArg, usageError } from './errors.js';
import { ageSince, formatTable, shortImage } from './output.js';

export const listHeaders = ['NAME', 'REPLICAS', 'READY', 'INVOCATIONS', 'IMAGE', 'AGE'] as const;

/** The rows of `fn list`, sorted by name. */
export function listRows(functions: readonly FunctionInfo[], nowMs: number): string[][] {
  return [...functions]
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((f) => [
      f.name,
      String(f.replicas ?? 0),
      String(f.availableReplicas ?? 0),
      String(f.invocationCount ?? 0),
      shortImage(f.image || f.spec?.image),
      ageSince(f.createdAt, nowMs),
    ]);
}

/** `fn describe` text: "Key:  value" lines, kubectl style. */
export function describeFunction(f: FunctionInfo, url: string, nowMs: number): string {
  const spec: Partial<FunctionSpec> = f.spec ?? {};
  const rows: [string, string][] = [
    ['Name', f.name],
    ['URL', url],
    ['Image', f.image || spec.image || '<none>'],
  ];
  if (f.namespace) rows.push(['Namespace', f.namespace]);
  rows.push(
    ['Created', f.createdAt ? `${f.createdAt} (${ageSince(f.createdAt, nowMs)} ago)` : '<unknown>'],
    ['Replicas', `${f.availableReplicas ?? 0} ready / ${f.replicas ?? 0} desired`],
    ['Invocations', String(f.invocationCount ?? 0)],
  );
  if (spec.handler) rows.push(['Handler', spec.handler]);
  if (spec.timeout) rows.push(['Timeout', spec.timeout]);
  const s = spec.scale;
  if (s) {
    const cap = s.containerConcurrency > 0 ? `at most ${s.containerConcurrency} in flight per replica` : 'no per-replica cap';
    // A knob the spec leaves out takes the autoscaler's default: its value and where it comes from
    // (config or default) when the gateway reports them, else just "default".
    const knob = (name: keyof typeof s, unit = '') => {
      const e = f.scaling?.[name];
      if (e) return e.from === 'spec' ? `${e.value}${unit}` : `${e.value}${unit} (${e.from})`;
      const v = s[name];
      return v === undefined ? 'default' : `${String(v)}${unit}`;
    };
    const metricIs = (f.scaling?.metric?.value ?? s.metric) as string | undefined;
    const metric = metricIs === 'rps' ? 'req/s' : metricIs === 'concurrency' ? 'in-flight' : '(default metric)';
    rows.push(
      ['Scale', `min ${s.min}, max ${s.max}, initial ${s.initial}`],
      ['Target', `${knob('target')} ${metric} per replica at ${knob('targetUtilizationPercent', '%')} utilization; ${cap}`],
      ['Windows', `stable ${knob('stableWindow')}, panic ${knob('panicWindowPercent', '%')} of it above ${knob('panicThresholdPercent', '%')} of target`],
      ['Scale down', `max rate ${knob('maxScaleDownRate', 'x')}, delay ${knob('scaleDownDelay')}, to zero after ${knob('scaleToZeroGrace')} idle`],
    );
    // Only a JetStream trigger has a backlog for the autoscaler to read.
    if (s.pendingTarget !== undefined || spec.triggers?.some((t) => t.type === 'jetstream')) {
      rows.push(['Pending', `${knob('pendingTarget')} waiting messages per replica`]);
    }
  }
  if (spec.triggers?.length) rows.push(['Triggers', spec.triggers.map(describeTrigger).join('; ')]);
  if (f.events) rows.push(...describeEvents(f.events, spec.triggers ?? []));
  if (spec.resources) {
    const r = spec.resources;
    const parts = [r.cpu && `cpu ${r.cpu}`, r.memory && `memory ${r.memory}`, r.gpu && `gpu ${r.gpu}`].filter(Boolean);
    if (parts.length) rows.push(['Resources', parts.join(', ')]);
  }
  if (f.coldStart) rows.push(['Cold start', f.coldStart.path === 'warm-pool' ? 'from the warm pool (no process start)' : `a new ${{ 'container-start': 'container', 'pod-start': 'pod', 'process-start': 'process' }[f.coldStart.path]}: ${f.coldStart.reason}`]);
  for (const [i, w] of (f.warnings ?? []).entries()) rows.push([i === 0 ? 'Warnings' : '', w]);
  if (f.activation) rows.push(['Activation', `${f.activation.state}: ${f.activation.reason} (since ${f.activation.since})`]);
  if (f.lastError) rows.push(['Last error', `${f.lastError.code}: ${f.lastError.message}`]);
  if (f.lastError?.hint) rows.push(['', `hint: ${f.lastError.hint}`]);
  const env = f.envVars ?? spec.env ?? {};
  for (const [i, [k, v]] of Object.entries(env).entries()) rows.push([i === 0 ? 'Env' : '', `${k}=${v}`]);
  for (const [i, [k, v]] of Object.entries(f.labels ?? spec.labels ?? {}).entries()) rows.push([i === 0 ? 'Labels' : '', `${k}=${v}`]);
  if (spec.secrets?.length) rows.push(['Secrets', spec.secrets.join(', ')]);
  const width = Math.max(...rows.map(([k]) => k.length)) + 2;
  return rows.map(([k, v]) => `${(k ? `${k}:` : '').padEnd(width)}${v}`).join('\n') + '\n';
}

function describeTrigger(t: FunctionSpec['triggers'][number]): string {
  const out = t.output ? ` -> ${t.output}` : '';
  if (t.type === 'http') return `http${out}`;
  if (t.type === 'cron') return `cron "${t.schedule ?? ''}"${t.timezone ? ` ${t.timezone}` : ''}${out}`;
  const extra = [
    t.queue && `queue ${t.queue}`,
    t.stream && `stream ${t.stream}`,
    t.durable && `durable ${t.durable}`,
    t.maxDeliver !== undefined && `max ${t.maxDeliver} deliveries`,
    t.deadLetter && `dead letters to ${t.deadLetter}`,
  ].filter(Boolean);
  return `${t.type} ${t.subject ?? ''}${extra.length ? ` (${extra.join(', ')})` : ''}${out}`;
}

/** One row for the NATS link, then one per event trigger with its state in the gateway that answered. */
function describeEvents(events: FunctionEventsInfo, triggers: FunctionSpec['triggers']): [string, string][] {
  const n = events.nats;
  const rows: [string, string][] = [['NATS', n.connected ? `connected${n.server ? ` (${n.server})` : ''}` : `not connected${n.error ? `: ${n.error}` : ''}`]];
  for (const s of events.triggers) {
    const t = triggers[s.index];
    const name = t ? describeTrigger(t).replace(/ \(.*$/, '') : s.type;
    const parts: string[] = [];
    if (s.type === 'cron') {
      parts.push(s.next ? `next ${s.next}` : 'not scheduled');
      parts.push(`fired ${s.fired ?? 0}, taken by another gateway ${s.skipped ?? 0}, missed ${s.missed ?? 0}`);
    } else {
      parts.push(s.ready ? (s.type === 'nats' ? 'subscribed' : 'consuming') : `not ready${s.error ? ` (${s.error})` : ''}`);
      if (s.type === 'jetstream') {
        if (s.pending !== undefined) parts.push(`${s.pending} pending, ${s.ackPending ?? 0} unacked, ${s.redelivered ?? 0} redelivered`);
        parts.push(`here: ${s.delivered ?? 0} delivered, ${s.acked ?? 0} acked, ${s.retried ?? 0} retried, ${s.deadLettered ?? 0} dead-lettered`);
      } else {
        parts.push(`here: ${s.delivered ?? 0} delivered, ${s.succeeded ?? 0} ok, ${s.failed ?? 0} failed, ${s.dropped ?? 0} dropped`);
      }
    }
    if (s.lastError) parts.push(`last error${s.lastErrorAt ? ` at ${s.lastErrorAt}` : ''}: ${s.lastError.trim()}`);
    rows.push(['', `#${s.index} ${name}: ${parts.join('; ')}`]);
  }
  return rows;
}

export function registerFunctions(program: Command, app: App): void {
  program
    .command('list')
    .alias('ls')
    .description('list deployed functions')
    .option('--json', 'print the functions as a JSON array')
    .addHelpText('after', '\nExamples:\n  $ fn list\n  $ fn ls --json | jq -r \'.[].name\'')
    .action(async (opts: { json?: boolean }, command: Command) => {
      const functions = await app.client(command).listFunctions(app.io.signal);
      if (opts.json) return app.json(functions);
      if (functions.length === 0) return app.note('no functions deployed; run `fn deploy` in a function directory');
      app.io.stdout.write(formatTable(listHeaders, listRows(functions, app.io.now())));
    });

  program
    .command('describe')
    .description('show one function: URL, image, replicas, scale settings, triggers, env')
    .argument('<name>', 'function name')
    .option('--json', 'print the function as JSON')
    .addHelpText('after', '\nExamples:\n  $ fn describe hello\n  $ fn describe hello --json | jq .spec.scale')
    .action(async (name: string, opts: { json?: boolean }, command: Command) => {
      checkArg(() => validateName(name));
      const client = app.client(command);
      const info = await client.getFunction(name, app.io.signal);
      if (opts.json) return app.json(info);
      app.io.stdout.write(describeFunction(info, client.functionUrl(name), app.io.now()));
    });

  program
    .command('delete')
    .alias('rm')
    .description('delete a function and stop its replicas')
    .argument('<name>', 'function name')
    .addHelpText('after', '\nExamples:\n  $ fn delete hello\n  $ fn rm hello')
    .action(async (name: string, _opts: unknown, command: Command) => {
      checkArg(() => validateName(name));
      await app.client(command).deleteFunction(name, app.io.signal);
      app.out(`deleted function "${name}"`);
    });

  program
    .command('scale')
    .description("set a function's replica count now, or the range the autoscaler keeps it in (--min/--max)")
    .argument('<name>', 'function name')
    .argument('[replicas]', 'replicas to run now, 0 or more (the autoscaler moves the count with traffic afterwards)')
    .option('--min <n>', 'fewest replicas the autoscaler keeps (scale.min; 0 allows scale to zero)')
    .option('--max <n>', 'most replicas the autoscaler starts (scale.max)')
    .addHelpText(
      'after',
      `
The autoscaler owns the replica count: a count set here lasts until its next decision. To hold
a count, pin it with --min and --max; they change the deployed spec (put them in fn.yaml too, or
the next \`fn deploy\` sets them back).

Examples:
  $ fn scale hello 3                  # 3 replicas now
  $ fn scale hello 0                  # scale to zero now
  $ fn scale hello --min 3 --max 3    # hold 3 replicas
  $ fn scale hello --min 0            # allow scale to zero again`,
    )
    .action(async (name: string, replicasText: string | undefined, opts: { min?: string; max?: string }, command: Command) => {
      checkArg(() => validateName(name));
      const replicas = replicasText === undefined ? undefined : parseCount(replicasText, 'replicas');
      const min = opts.min === undefined ? undefined : parseCount(opts.min, '--min');
      const max = opts.max === undefined ? undefined : parseCount(opts.max, '--max', 1);
      if (replicas === undefined && min === undefined && max === undefined) {
        throw usageError('give a replica count, --min or --max (see `fn scale --help`)');
      }
      if (min !== undefined && max !== undefined && min > max) throw usageError(`--min ${min} is above --max ${max}`);
      const client = app.client(command);
      const info = await client.getFunction(name, app.io.signal);
      const scale = { ...info.spec.scale, ...(min !== undefined ? { min } : {}), ...(max !== undefined ? { max } : {}) };
      if (scale.min > scale.max) throw usageError(`--min ${scale.min} is above --max ${scale.max}`);
      if (min !== undefined || max !== undefined) {
        await client.deployFunction({ ...info.spec, scale }, app.io.signal);
        app.out(`"${name}" now scales between ${scale.min} and ${scale.max} replicas (put scale.min/max in fn.yaml too: the next \`fn deploy\` sets them back)`);
      }
      if (replicas !== undefined) {
        await client.scaleFunction(name, replicas, app.io.signal);
        // Every driver holds the count within scale.max: say so rather than promise more.
        if (replicas > scale.max) {
          app.out(`scaling "${name}" to ${scale.max} replica${scale.max === 1 ? '' : 's'}, not ${replicas}: its scale.max is ${scale.max} (raise it with \`fn scale ${name} --max ${replicas}\` or in fn.yaml)`);
          return;
        }
        const held = scale.min === scale.max && replicas === scale.min;
        app.out(
          held
            ? `scaling "${name}" to ${replicas} replica${replicas === 1 ? '' : 's'}`
            : `scaling "${name}" to ${replicas} replica${replicas === 1 ? '' : 's'} now; the autoscaler moves the count with traffic between ${scale.min} and ${scale.max}: to hold ${replicas}, run \`fn scale ${name} --min ${replicas} --max ${Math.max(replicas, 1)}\``,
        );
      }
    });
}
