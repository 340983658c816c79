// What calls a function besides HTTP: the trigger part of the FunctionSpec and its checks.
//
//   http       the function's URL on the gateway (the default trigger)
//   nats       core NATS: a subject (wildcards allowed), optionally a queue group; at most once
//   jetstream  a durable consumer on a stream (created when missing with the subject); at least
//              once, with maxDeliver, ackWait, a backoff list, maxInFlight and a dead-letter subject
//   cron       a schedule (5 or 6 fields, a nickname like @hourly, or "@every 5m"), a time zone,
//              an optional body
// Any trigger may name an `output` subject that each successful result is published to, so one
// function's output is the next one's input.
//
// The schema is one flat object (the CRD needs a structural schema); which fields a type takes
// is checked here, every bad field named.

import { Type, type Static } from '@sinclair/typebox';
import { Cron } from 'croner';
import { durationPattern, parseDuration } from './duration.js';
import type { FieldError } from './errors.js';
import { subjectMatches, subjectProblem } from './subjects.js';

const Subject = (description: string) => Type.String({ minLength: 1, maxLength: 256, description });
const Name = (description: string) => Type.String({ minLength: 1, maxLength: 64, description });
const Duration = (description: string) => Type.String({ pattern: durationPattern, description });

export const triggerTypes = ['http', 'nats', 'jetstream', 'cron'] as const;
export type TriggerType = (typeof triggerTypes)[number];

export const TriggerSchema = Type.Object(
  {
    type: Type.Union(triggerTypes.map((t) => Type.Literal(t))),
    subject: Type.Optional(Subject('NATS subject to consume; "*" matches one token, ">" the rest')),
    queue: Type.Optional(Name('core NATS queue group: each message goes to one member')),
    stream: Type.Optional(Name('JetStream stream; created with `subject` when missing')),
    durable: Type.Optional(Name('durable consumer name (default: the function name)')),
    maxDeliver: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, description: 'deliveries before the dead-letter subject' })),
    ackWait: Type.Optional(Duration('how long a delivery may run before it is redelivered')),
    backoff: Type.Optional(Type.Array(Duration('pause before a redelivery'), { maxItems: 32, description: 'pause before each redelivery' })),
    maxInFlight: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000, description: 'un-acked messages per gateway' })),
    deadLetter: Type.Optional(Subject('where a message goes after maxDeliver failed deliveries')),
    output: Type.Optional(Subject('where each successful result is published')),
    schedule: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: 'cron schedule: 5 or 6 fields, @hourly, or "@every 5m"' })),
    timezone: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'IANA time zone of the schedule (default UTC)' })),
    body: Type.Optional(Type.String({ maxLength: 65_536, description: 'request body of each cron call' })),
  },
  { additionalProperties: false },
);

export type TriggerSpec = Static<typeof TriggerSchema>;

type TriggerField = Exclude<keyof TriggerSpec, 'type'>;

/** The fields each type takes: the required ones, and the optional ones. */
export const triggerFields: Record<TriggerType, { required: TriggerField[]; optional: TriggerField[] }> = {
  http: { required: [], optional: ['output'] },
  nats: { required: ['subject'], optional: ['queue', 'output'] },
  jetstream: { required: ['subject', 'stream'], optional: ['durable', 'maxDeliver', 'ackWait', 'backoff', 'maxInFlight', 'deadLetter', 'output'] },
  cron: { required: ['schedule'], optional: ['timezone', 'body', 'output'] },
};

/** The error for a field that trigger type `type` does not take (also the CRD's CEL message). */
export function takesNo(type: TriggerType, field: string): string {
  const { required, optional } = triggerFields[type];
  return `${type === 'http' ? 'an' : 'a'} ${type} trigger takes no ${field} (it takes ${[...required, ...optional].join(', ') || 'nothing else'})`;
}

/** The shortest `@every` period, ms: anything faster is a loop, not a schedule. */
const minEveryMs = 1000;

/** Every bad field of trigger `i` (field paths like `triggers.1.subject`). */
export function triggerErrors(t: TriggerSpec, i: number): FieldError[] {
  const at = `triggers.${i}`;
  const out: FieldError[] = [];
  const { required, optional } = triggerFields[t.type];
  for (const field of required) {
    if (t[field] === undefined) out.push({ field: `${at}.${field}`, message: `is required for a ${t.type} trigger` });
  }
  for (const field of Object.keys(t) as (keyof TriggerSpec)[]) {
    if (field === 'type' || required.includes(field) || optional.includes(field)) continue;
    out.push({ field: `${at}.${field}`, message: takesNo(t.type, field) });
  }
  if (out.length) return out;

  if (t.subject !== undefined) {
    const bad = subjectProblem(t.subject, true);
    if (bad) out.push({ field: `${at}.subject`, message: bad });
  }
  for (const field of ['output', 'deadLetter'] as const) {
    const value = t[field];
    const bad = value === undefined ? undefined : subjectProblem(value, false);
    if (bad) out.push({ field: `${at}.${field}`, message: bad });
  }
  if (t.output !== undefined && t.subject !== undefined && subjectMatches(t.subject, t.output)) {
    out.push({ field: `${at}.output`, message: `must not match the trigger's own subject "${t.subject}": every result would call the function again` });
  }
  for (const field of ['queue', 'stream', 'durable'] as const) {
    const value = t[field];
    if (value !== undefined && !/^[A-Za-z0-9_-]+$/.test(value)) {
      out.push({ field: `${at}.${field}`, message: `must be letters, digits, "-" and "_" only (got ${JSON.stringify(value)})` });
    }
  }
  if (t.ackWait !== undefined && (parseDuration(t.ackWait) < 1000 || parseDuration(t.ackWait) > 3_600_000)) {
    out.push({ field: `${at}.ackWait`, message: 'must be between 1s and 1h' });
  }
  (t.backoff ?? []).forEach((d, j) => {
    const ms = parseDuration(d);
    if (ms < 1 || ms > 24 * 3_600_000) out.push({ field: `${at}.backoff.${j}`, message: 'must be between 1ms and 24h' });
  });
  // JetStream refuses a consumer whose backoff list is not shorter than its max deliveries.
  if (t.backoff && t.backoff.length >= (t.maxDeliver ?? Infinity)) {
    out.push({ field: `${at}.backoff`, message: `must list fewer pauses than maxDeliver (${t.backoff.length} >= ${t.maxDeliver}): there is one pause between two deliveries` });
  }
  if (t.schedule !== undefined) {
    const bad = scheduleProblem(t.schedule, t.timezone);
    if (bad) out.push({ field: `${at}.${bad.field}`, message: bad.message });
  }
  return out;
}


function scheduleProblem(schedule: string, timezone: string | undefined): { field: string; message: string } | undefined {
  if (timezone !== undefined) {
    try {
      new Intl.DateTimeFormat('en', { timeZone: timezone });
    } catch {
      return { field: 'timezone', message: `must be an IANA time zone like "UTC" or "Europe/Paris" (got ${JSON.stringify(timezone)})` };
    }
  }
  if (/^@every\b/.test(schedule.trim())) {
    const every = /^@every\s+(\S+)$/.exec(schedule.trim())?.[1];
    if (!every || !new RegExp(durationPattern).test(every)) {
      return { field: 'schedule', message: `"@every" takes one duration like "30s" or "5m" (got ${JSON.stringify(schedule)})` };
    }
    if (parseDuration(every) < minEveryMs) return { field: 'schedule', message: `"@every" must be at least 1s (got ${JSON.stringify(schedule)})` };
    return undefined;
  }
  const fields = schedule.trim().split(/\s+/).length;
  if (!schedule.trim().startsWith('@') && fields !== 5 && fields !== 6) {
    return { field: 'schedule', message: `must have 5 fields (minute hour day month weekday) or 6 (with seconds first), got ${fields}: ${JSON.stringify(schedule)}` };
  }
  try {
    const cron = new Cron(schedule, { paused: true, ...(timezone ? { timezone } : { timezone: 'UTC' }) });
    if (!cron.nextRun()) return { field: 'schedule', message: `never fires (${JSON.stringify(schedule)})` };
  } catch (err) {
    return { field: 'schedule', message: `is not a cron schedule: ${err instanceof Error ? err.message : String(err)}` };
  }
  return undefined;
}
