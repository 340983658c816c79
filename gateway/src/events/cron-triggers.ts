// Cron triggers: each cron trigger of a deployed function is a timer in every gateway, and each
// tick is one call through the gateway's invoke route, made by whichever gateway claims the tick
// first in a JetStream KV bucket (cron-claims.ts), so N gateways fire it exactly once.
//
// - Only future ticks are scheduled: a (re)started gateway never replays the ticks it missed, and
//   a tick whose timer ran more than `cronLateToleranceMs` late is skipped, not fired in a burst.
// - A tick that cannot be claimed (NATS down, JetStream missing) is not fired: better to miss a
//   tick than to fire it twice. The schedule keeps running and `lastError` says why.
// - At most one tick per trigger is in progress in a gateway (claim and call). A tick that finds
//   the previous one still running is passed up unclaimed, so another gateway may take it.
// - The function sees a binary CloudEvent (type dev.kubefn.cron.tick, id stable for the tick), and
//   a 2xx result goes to the trigger's `output` subject.
//
// The timer is ours rather than croner's: croner computes the instants (cron-schedule.ts), and the
// instant a timer was armed for is the tick's name on every gateway, even when the timer runs late.

import type { NatsConnection } from '@nats-io/transport-node';
import { CloudEvent } from 'cloudevents';
import type { FunctionSpec, TriggerSpec } from '@kubefn/platform';
import { isSuccess, type EventResult, type Invoke } from './call.js';
import { KvTickClaims, messageOf } from './cron-claims.js';
import { cronSchedule, type CronSchedule } from './cron-schedule.js';
import { toBinary } from './cloudevent.js';
import { Coalesced } from './coalesce.js';

export interface CronTriggersOptions {
  /** A connection to a NATS server with JetStream. */
  connection: NatsConnection;
  /** Calls a function through the gateway's invoke route (call.ts). */
  invoke: Invoke;
  /** Publishes a 2xx result to the trigger's output subject. */
  output: (subject: string, body: Buffer, headers: Record<string, string>) => Promise<void>;
  onWarning?: (message: string, fields?: Record<string, unknown>) => void;
  /** KV bucket of the claims (default "kubefn_cron"). */
  bucket?: string;
  /** How long a KV request of a claim may take before the tick is given up, ms (default 5000). */
  claimTimeoutMs?: number;
}

export interface CronTriggerState {
  /** The trigger's index in the function's triggers. */
  index: number;
  schedule: string;
  /** The IANA time zone the schedule is read in (UTC unless the trigger names one). */
  timezone: string;
  /** The next tick, ISO; absent when the schedule fires no more. */
  next?: string;
  /** The last tick this gateway fired, ISO. */
  lastFired?: string;
  /** Ticks this gateway claimed and called the function for. */
  fired: number;
  /** Ticks another gateway claimed first. */
  skipped: number;
  /** Ticks passed up because this gateway's previous tick of the trigger was still running. */
  busy: number;
  /** Ticks not fired because they could not be claimed (KV unreachable) or the timer ran late. */
  missed: number;
  /** Fired ticks whose call failed, answered other than 2xx, or whose result could not be published. */
  failed: number;
  /** The status of the last call. */
  lastStatus?: number;
  /** Why the last tick was not fired or failed; cleared by a tick that went well. */
  lastError?: string;
}

export const cronEventType = 'dev.kubefn.cron.tick';

/** How late a timer may run and still fire its tick, ms. */
export const cronLateToleranceMs = 5000;

/** The longest single timer, ms: long waits are split, which also follows wall clock changes. */
const maxTimerMs = 3_600_000;

/** The longest lastError kept, characters. */
const maxErrorLength = 500;

interface Schedule {
  name: string;
  index: number;
  trigger: TriggerSpec;
  times: CronSchedule;
  /** The tick the timer is armed for, Unix ms. */
  next: number | undefined;
  timer: NodeJS.Timeout | undefined;
  running: boolean;
  stopped: boolean;
  counts: { fired: number; skipped: number; busy: number; missed: number; failed: number };
  lastFired?: number;
  lastStatus?: number;
  lastError?: string;
}

export class CronTriggers {
  readonly #o: CronTriggersOptions;
  readonly #bucket: string;
  readonly #claims: KvTickClaims;
  readonly #schedules = new Map<string, Schedule>();
  readonly #inFlight = new Set<Promise<void>>();
  #wanted: FunctionSpec[] = [];
  readonly #sync = new Coalesced(async () => {
    await this.#syncOnce(this.#wanted);
  }, () => this.#closing !== undefined);
  #closing: Promise<void> | undefined;

  constructor(options: CronTriggersOptions) {
    this.#o = options;
    this.#bucket = options.bucket ?? 'kubefn_cron';
    this.#claims = new KvTickClaims({ connection: options.connection, bucket: this.#bucket, timeoutMs: options.claimTimeoutMs ?? 5000 });
  }

  /**
   * Starts a schedule for every cron trigger of `functions` and stops those no longer present
   * (a trigger is its function, index, schedule and time zone; a changed body or output applies
   * from the next tick). Calls made while one runs are coalesced into one more run, with the
   * latest list.
   */
  sync(functions: FunctionSpec[]): Promise<void> {
    this.#wanted = functions;
    return this.#sync.run();
  }

  /** Each cron trigger of function `name`, by index. */
  state(name: string): CronTriggerState[] {
    const out: CronTriggerState[] = [];
    for (const s of this.#schedules.values()) {
      if (s.name !== name) continue;
      out.push({
        index: s.index,
        schedule: s.times.schedule,
        timezone: s.times.timezone,
        ...(s.next !== undefined ? { next: new Date(s.next).toISOString() } : {}),
        ...(s.lastFired !== undefined ? { lastFired: new Date(s.lastFired).toISOString() } : {}),
        ...s.counts,
        ...(s.lastStatus !== undefined ? { lastStatus: s.lastStatus } : {}),
        ...(s.lastError !== undefined ? { lastError: s.lastError } : {}),
      });
    }
    return out.sort((a, b) => a.index - b.index);
  }

  /**
   * Stops every schedule and waits for the ticks in progress. Idempotent. state() still answers
   * afterwards, with the final counts and no `next`.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.#sync.running?.catch(() => {});
      for (const s of this.#schedules.values()) this.#stop(s);
      await Promise.allSettled([...this.#inFlight]);
    })();
    return this.#closing;
  }

  async #syncOnce(functions: FunctionSpec[]): Promise<void> {
    if (this.#closing) return;
    const wanted = new Map<string, { name: string; index: number; trigger: TriggerSpec }>();
    for (const fn of functions) {
      fn.triggers.forEach((trigger, index) => {
        if (trigger.type !== 'cron' || trigger.schedule === undefined) return;
        wanted.set(JSON.stringify([fn.name, index, trigger.schedule, trigger.timezone ?? 'UTC']), { name: fn.name, index, trigger });
      });
    }
    for (const [key, s] of this.#schedules) {
      if (wanted.has(key)) continue;
      this.#stop(s);
      this.#schedules.delete(key);
    }
    for (const [key, { name, index, trigger }] of wanted) {
      const existing = this.#schedules.get(key);
      if (existing) {
        existing.trigger = trigger;
        continue;
      }
      let times: CronSchedule;
      try {
        times = cronSchedule(trigger.schedule!, trigger.timezone);
      } catch (err) {
        this.#warn('cron trigger not scheduled', { function: name, trigger: index, schedule: trigger.schedule, err: messageOf(err) });
        continue;
      }
      const s: Schedule = {
        name,
        index,
        trigger,
        times,
        next: undefined,
        timer: undefined,
        running: false,
        stopped: false,
        counts: { fired: 0, skipped: 0, busy: 0, missed: 0, failed: 0 },
      };
      this.#schedules.set(key, s);
      this.#arm(s, Date.now());
    }
    // Open the bucket now rather than at the first tick; a failure here is retried by each claim.
    if (this.#schedules.size > 0) await this.#claims.open().catch((err: unknown) => this.#warn('cron claims unavailable', { err: messageOf(err) }));
  }

  /** Arms the timer for the first tick after `afterMs`. */
  #arm(s: Schedule, afterMs: number): void {
    s.next = s.times.next(afterMs);
    if (s.next !== undefined) this.#wait(s);
  }

  #wait(s: Schedule): void {
    const tick = s.next!;
    const delay = tick - Date.now();
    const split = delay > maxTimerMs;
    s.timer = setTimeout(
      () => {
        if (s.stopped) return;
        if (split) return this.#wait(s);
        // The next timer is armed before this tick's work, so a slow claim or call never delays
        // it; the next tick is after now, so ticks missed while the process stalled are dropped.
        this.#arm(s, Math.max(tick, Date.now()));
        this.#tick(s, tick);
      },
      Math.max(0, Math.min(delay, maxTimerMs)),
    );
    // A forgotten close() must not keep the process alive.
    s.timer.unref();
  }

  #tick(s: Schedule, tick: number): void {
    const at = new Date(tick).toISOString();
    const lateMs = Date.now() - tick;
    if (lateMs > cronLateToleranceMs) {
      s.counts.missed++;
      this.#problem(s, `the tick at ${at} was reached ${lateMs} ms late (over ${cronLateToleranceMs} ms), so it was skipped`);
      return;
    }
    if (s.running) {
      s.counts.busy++;
      this.#problem(s, `the tick at ${at} was passed up: the previous tick of this trigger is still running in this gateway`);
      return;
    }
    s.running = true;
    const work = this.#claimAndFire(s, tick, at)
      .catch((err: unknown) => {
        s.counts.failed++;
        this.#problem(s, `the tick at ${at} failed: ${messageOf(err)}`);
      })
      .finally(() => {
        s.running = false;
        this.#inFlight.delete(work);
      });
    this.#inFlight.add(work);
  }

  async #claimAndFire(s: Schedule, tick: number, at: string): Promise<void> {
    let won: boolean;
    try {
      won = await this.#claims.claim(`${s.name}.${s.index}`, tick);
    } catch (err) {
      s.counts.missed++;
      this.#problem(s, `the tick at ${at} was not fired: it could not be claimed in KV bucket "${this.#bucket}": ${messageOf(err)}`);
      return;
    }
    if (!won) {
      s.counts.skipped++;
      s.lastError = undefined;
      return;
    }
    s.counts.fired++;
    s.lastFired = tick;
    const { trigger } = s;
    const id = `${s.name}.${s.index}.${tick}`;
    const body = trigger.body ?? '';
    const event = toBinary(
      new CloudEvent<string>({
        id,
        type: cronEventType,
        source: `kubefn://cron/${s.name}/${s.index}`,
        time: at,
        datacontenttype: isJson(body) ? 'application/json' : 'text/plain',
        data: body,
      }),
    );
    let res: EventResult;
    try {
      res = await this.#o.invoke({ name: s.name, method: 'POST', headers: { ...event.headers, 'x-call-id': id }, body: event.body });
    } catch (err) {
      s.counts.failed++;
      this.#problem(s, `the call of the tick at ${at} failed: ${messageOf(err)}`);
      return;
    }
    s.lastStatus = res.status;
    if (!isSuccess(res.status)) {
      s.counts.failed++;
      this.#problem(s, `the call of the tick at ${at} answered ${res.status}${res.code ? ` (${res.code})` : ''}`);
      return;
    }
    if (trigger.output) {
      const type = res.headers['content-type'];
      try {
        await this.#o.output(trigger.output, res.body, typeof type === 'string' ? { 'content-type': type } : {});
      } catch (err) {
        s.counts.failed++;
        this.#problem(s, `the result of the tick at ${at} could not be published to ${trigger.output}: ${messageOf(err)}`);
        return;
      }
    }
    s.lastError = undefined;
  }

  #stop(s: Schedule): void {
    s.stopped = true;
    clearTimeout(s.timer);
    s.timer = undefined;
    s.next = undefined;
  }

  #problem(s: Schedule, message: string): void {
    s.lastError = message.length > maxErrorLength ? `${message.slice(0, maxErrorLength)}…` : message;
    this.#warn(`cron trigger: ${s.lastError}`, { function: s.name, trigger: s.index, schedule: s.times.schedule });
  }

  #warn(message: string, fields?: Record<string, unknown>): void {
    try {
      this.#o.onWarning?.(message, fields);
    } catch {
      // A logger that throws must not stop a schedule.
    }
  }
}

function isJson(text: string): boolean {
  if (text.trim() === '') return false;
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}
