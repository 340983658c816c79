// When a cron trigger's ticks fall: a pure function of the schedule and an instant, so that every
// gateway computes the same tick instants and a tick can be named by its instant.
//
//   "*/5 * * * * *", "0 3 * * *", "@hourly"   croner, in the trigger's IANA time zone (default UTC)
//   "@every 5m"                               kubefn's own: multiples of the period since the Unix
//                                             epoch, whatever the time zone (an offset is whole
//                                             minutes, so zones would only shift sub-hour periods)
//
// Worked example for "@every 90s" (period 90 000 ms) after 1 000 000 ms: floor(1 000 000 / 90 000)
// = 11, so the next tick is 12 × 90 000 = 1 080 000 ms, on every gateway, whenever it started.

import { Cron } from 'croner';
import { parseDuration } from '@kubefn/platform';

export interface CronSchedule {
  /** The trigger's schedule as written. */
  schedule: string;
  /** The IANA time zone the schedule is read in. */
  timezone: string;
  /** The first tick strictly after `afterMs` (Unix ms), or undefined when there is none. */
  next(afterMs: number): number | undefined;
}

/** Parses a validated schedule; throws with the reason when it is not one. */
export function cronSchedule(schedule: string, timezone = 'UTC'): CronSchedule {
  const text = schedule.trim();
  if (/^@every\b/.test(text)) {
    const every = /^@every\s+(\S+)$/.exec(text)?.[1];
    const periodMs = every === undefined ? NaN : parseDuration(every);
    if (!(periodMs >= 1000)) throw new Error(`"@every" takes one duration of at least 1s, like "30s" or "5m" (got ${JSON.stringify(schedule)})`);
    return { schedule, timezone, next: (afterMs) => (Math.floor(afterMs / periodMs) + 1) * periodMs };
  }
  // Paused: croner only computes here; the caller owns the timer, so the tick it fires is the
  // instant computed (a tick's name), not the moment a timer happened to run.
  const cron = new Cron(text, { paused: true, timezone });
  return { schedule, timezone, next: (afterMs) => cron.nextRun(new Date(afterMs))?.getTime() };
}
