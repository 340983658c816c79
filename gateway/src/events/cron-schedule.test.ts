import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cronSchedule } from './cron-schedule.js';

const ms = (iso: string): number => Date.parse(iso);
const iso = (t: number | undefined): string | undefined => (t === undefined ? undefined : new Date(t).toISOString());

describe('cronSchedule', () => {
  it('@every ticks at multiples of the period since the epoch, whenever it is asked', () => {
    const every = cronSchedule('@every 90s');
    assert.equal(every.next(1_000_000), 1_080_000);
    assert.equal(every.next(1_079_999), 1_080_000);
    // Strictly after: a tick is never its own successor.
    assert.equal(every.next(1_080_000), 1_170_000);
    assert.equal(cronSchedule('@every 5m').next(ms('2025-06-01T10:02:31.400Z')), ms('2025-06-01T10:05:00.000Z'));
    assert.equal(cronSchedule('@every 1s').next(ms('2025-06-01T10:02:31.400Z')), ms('2025-06-01T10:02:32.000Z'));
    // The time zone does not move @every ticks.
    assert.equal(cronSchedule('@every 1h', 'Asia/Kolkata').next(ms('2025-06-01T10:02:31Z')), ms('2025-06-01T11:00:00Z'));
  });

  it('refuses an @every without a duration of at least 1s', () => {
    assert.throws(() => cronSchedule('@every 500ms'), /at least 1s/);
    assert.throws(() => cronSchedule('@every'), /takes one duration/);
    assert.throws(() => cronSchedule('@every 5 m'), /takes one duration/);
  });

  it('reads 6 fields as seconds first, 5 as minutes, and nicknames', () => {
    assert.equal(iso(cronSchedule('*/5 * * * * *').next(ms('2025-06-01T12:00:03.200Z'))), '2025-06-01T12:00:05.000Z');
    assert.equal(iso(cronSchedule('*/15 * * * *').next(ms('2025-06-01T12:00:03.200Z'))), '2025-06-01T12:15:00.000Z');
    assert.equal(iso(cronSchedule('@hourly').next(ms('2025-06-01T12:00:00.000Z'))), '2025-06-01T13:00:00.000Z');
    assert.equal(iso(cronSchedule('0 3 * * *').next(ms('2025-06-01T12:00:00Z'))), '2025-06-02T03:00:00.000Z');
  });

  it('reads the schedule in its time zone, daylight saving included', () => {
    const paris = cronSchedule('0 3 * * *', 'Europe/Paris');
    assert.equal(paris.timezone, 'Europe/Paris');
    // 03:00 in winter (UTC+1), then 03:00 on the day summer time starts (UTC+2).
    assert.equal(iso(paris.next(ms('2025-01-10T12:00:00Z'))), '2025-01-11T02:00:00.000Z');
    assert.equal(iso(paris.next(ms('2025-03-29T12:00:00Z'))), '2025-03-30T01:00:00.000Z');
    assert.equal(iso(cronSchedule('0 3 * * *', 'Asia/Tokyo').next(ms('2025-06-01T12:00:00Z'))), '2025-06-01T18:00:00.000Z');
    assert.equal(cronSchedule('0 3 * * *').timezone, 'UTC');
  });

  it('says when a schedule never fires again', () => {
    // 30 February does not exist.
    assert.equal(cronSchedule('0 0 30 2 *').next(ms('2025-06-01T12:00:00Z')), undefined);
  });
});
