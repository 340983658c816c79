import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseFunctionSpec } from './spec.js';
import { subjectMatches, subjectProblem } from './subjects.js';

/** The field errors parseFunctionSpec reports for these triggers, as "field: message". */
function errors(triggers: unknown[]): string[] {
  try {
    parseFunctionSpec({ name: 'fn', triggers });
    return [];
  } catch (err) {
    return ((err as { fields?: { field: string; message: string }[] }).fields ?? []).map((f) => `${f.field}: ${f.message}`);
  }
}

describe('triggers', () => {
  it('accepts each type with the fields it takes', () => {
    const spec = parseFunctionSpec({
      name: 'fn',
      triggers: [
        { type: 'http', output: 'results.http' },
        { type: 'nats', subject: 'orders.*.created', queue: 'workers', output: 'orders.checked' },
        { type: 'jetstream', subject: 'payments.>', stream: 'PAYMENTS', durable: 'fn', maxDeliver: 4, ackWait: '30s', backoff: ['1s', '5s', '30s'], maxInFlight: 64, deadLetter: 'payments.dead', output: 'ledger.entries' },
        { type: 'cron', schedule: '*/5 * * * *', timezone: 'Europe/Paris', body: '{"tick":true}' },
        { type: 'cron', schedule: '0 */10 * * * *' },
        { type: 'cron', schedule: '@hourly' },
        { type: 'cron', schedule: '@every 5m' },
      ],
    });
    assert.equal(spec.triggers.length, 7);
    assert.deepEqual(spec.triggers[2]!.backoff, ['1s', '5s', '30s']);
  });

  it('names every required field a type lacks and every field it does not take', () => {
    assert.deepEqual(errors([{ type: 'jetstream' }]), ['triggers.0.subject: is required for a jetstream trigger', 'triggers.0.stream: is required for a jetstream trigger']);
    assert.deepEqual(errors([{ type: 'cron', schedule: '@hourly', subject: 'x', maxDeliver: 3 }]), [
      'triggers.0.subject: a cron trigger takes no subject (it takes schedule, timezone, body, output)',
      'triggers.0.maxDeliver: a cron trigger takes no maxDeliver (it takes schedule, timezone, body, output)',
    ]);
    assert.deepEqual(errors([{ type: 'http' }, { type: 'nats', subject: 'a', stream: 'S' }]), ['triggers.1.stream: a nats trigger takes no stream (it takes subject, queue, output)']);
    assert.deepEqual(errors([{ type: 'kafka', subject: 'a' }]).length, 1);
  });

  it('checks subjects as NATS does: wildcards only to subscribe, and whole tokens', () => {
    assert.match(errors([{ type: 'nats', subject: 'orders..new' }])[0]!, /^triggers\.0\.subject: must be tokens separated by single dots/);
    assert.match(errors([{ type: 'nats', subject: 'orders.new*' }])[0]!, /only as whole tokens/);
    assert.match(errors([{ type: 'nats', subject: 'orders.>.new' }])[0]!, /only as the last token/);
    assert.match(errors([{ type: 'nats', subject: 'orders new' }])[0]!, /white space/);
    assert.match(errors([{ type: 'nats', subject: 'in', output: 'out.*' }])[0]!, /^triggers\.0\.output: is a subject to publish to/);
    assert.match(errors([{ type: 'jetstream', subject: 'in', stream: 'S', deadLetter: 'dead.>' }])[0]!, /^triggers\.0\.deadLetter: is a subject to publish to/);
    assert.match(errors([{ type: 'jetstream', subject: 'in', stream: 'S.1' }])[0]!, /^triggers\.0\.stream: must be letters, digits/);
    assert.equal(subjectProblem('a.*.c.>', true), undefined);
  });

  it('refuses an output that feeds the function its own results', () => {
    assert.match(errors([{ type: 'nats', subject: 'jobs.>', output: 'jobs.done' }])[0]!, /^triggers\.0\.output: must not match the trigger's own subject "jobs\.>"/);
    assert.deepEqual(errors([{ type: 'nats', subject: 'jobs.*', output: 'jobs.done.ok' }]), []);
    assert.ok(subjectMatches('a.*', 'a.b') && subjectMatches('a.>', 'a.b.c') && !subjectMatches('a.>', 'a') && !subjectMatches('a.*', 'a.b.c'));
  });

  it('keeps JetStream settings to what a consumer accepts', () => {
    assert.match(errors([{ type: 'jetstream', subject: 'in', stream: 'S', maxDeliver: 2, backoff: ['1s', '2s'] }])[0]!, /^triggers\.0\.backoff: must list fewer pauses than maxDeliver \(2 >= 2\)/);
    assert.match(errors([{ type: 'jetstream', subject: 'in', stream: 'S', ackWait: '10ms' }])[0]!, /^triggers\.0\.ackWait: must be between 1s and 1h/);
    assert.match(errors([{ type: 'jetstream', subject: 'in', stream: 'S', backoff: ['soon'] }])[0]!, /^triggers\.0\.backoff\.0: must be a duration/);
  });

  it('checks schedules and time zones with a cron parser', () => {
    assert.match(errors([{ type: 'cron', schedule: '61 * * * *' }])[0]!, /^triggers\.0\.schedule: is not a cron schedule: .*minute/);
    assert.match(errors([{ type: 'cron', schedule: '* * *' }])[0]!, /must have 5 fields .* got 3/);
    assert.match(errors([{ type: 'cron', schedule: '@every soon' }])[0]!, /"@every" takes one duration/);
    assert.match(errors([{ type: 'cron', schedule: '@every 10ms' }])[0]!, /at least 1s/);
    assert.match(errors([{ type: 'cron', schedule: '@hourly', timezone: 'Mars/Olympus' }])[0]!, /^triggers\.0\.timezone: must be an IANA time zone/);
  });
});
