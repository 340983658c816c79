// The gateway's event side: one NATS connection (given, or made the first time a deployed function
// needs one) and the trigger kinds on it — core NATS subscriptions, JetStream consumers and cron
// schedules — kept in step with the deployed functions. Deploy checks a spec against the server
// first (check()); a NATS server that is down does not fail a deploy: its triggers are reported
// not ready and start once it is back.

import { setTimeout as delay } from 'node:timers/promises';
import type { NatsConnection } from '@nats-io/transport-node';
import { KubefnError, type FunctionSpec, type FunctionStatus } from '@kubefn/platform';
import type { Registry } from 'prom-client';
import type { Invoke } from './call.js';
import { AsyncInvocations, type AsyncInvocationsState } from './async-worker.js';
import { CronTriggers, type CronTriggerState } from './cron-triggers.js';
import { EventMetrics } from './event-metrics.js';
import { errorText, JetStreamTriggers, type JetStreamTriggerState } from './jetstream-triggers.js';
import { NatsTriggers, type NatsTriggerState } from './nats-triggers.js';
import { Publisher } from './publisher.js';
import { Coalesced } from './coalesce.js';

/** A NATS connection, or how to make one when a function first needs it. */
export type NatsSource = NatsConnection | (() => Promise<NatsConnection>);

export interface EventTriggersOptions {
  nats: NatsSource;
  invoke: Invoke;
  functions: () => Promise<FunctionStatus[]>;
  maxBodyBytes: number;
  registry: Registry;
  onWarning?: (message: string, fields?: Record<string, unknown>) => void;
  /** Each function's messages waiting in its JetStream consumers, as read (for the autoscaler's samples). */
  onPending?: (name: string, messages: number) => void;
  /** How long a deploy waits on NATS for its checks before going on without them, ms (default 5000). */
  checkTimeoutMs?: number;
}

export interface NatsLinkState {
  connected: boolean;
  server?: string;
  /** Why there is no connection, or since when it is lost. */
  error?: string;
}

export interface FunctionEvents {
  nats: NatsLinkState;
  triggers: (({ type: 'nats' } & NatsTriggerState) | ({ type: 'jetstream' } & JetStreamTriggerState) | ({ type: 'cron' } & CronTriggerState))[];
}

/** Whether a function needs NATS: any trigger but http, or any output subject. */
export function needsNats(spec: FunctionSpec): boolean {
  return spec.triggers.some((t) => t.type !== 'http' || t.output !== undefined);
}

interface Parts {
  nc: NatsConnection;
  nats: NatsTriggers;
  jetstream: JetStreamTriggers;
  cron: CronTriggers;
  async: AsyncInvocations;
}

export class EventTriggers {
  readonly metrics: EventMetrics;
  readonly #o: EventTriggersOptions;
  #parts: Parts | undefined;
  #connecting: Promise<Parts> | undefined;
  #dialing: Promise<NatsConnection> | undefined;
  #connectError: string | undefined;
  #lost: string | undefined;
  readonly #sync = new Coalesced(async () => {
    await this.#syncOnce();
  }, () => this.#closed);
  #closed = false;

  constructor(options: EventTriggersOptions) {
    this.#o = options;
    this.metrics = new EventMetrics(options.registry, () => this.#parts?.jetstream.lags() ?? []);
    // A connection given ready-made is watched from the start: it may drop before any function needs it.
    if (typeof options.nats !== 'function') void this.#watch(options.nats);
  }

  /**
   * Checks `spec`'s triggers against the NATS server before a deploy changes anything: throws
   * CONFLICT for a stream or consumer that does not fit. Without a reachable server it passes:
   * the triggers start when the server is back.
   */
  async check(spec: FunctionSpec): Promise<void> {
    if (!needsNats(spec)) return;
    const timeoutMs = this.#o.checkTimeoutMs ?? 5000;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    try {
      // A server that cannot be had at all (no nats-server to start) fails the deploy with how to
      // get one; one that is down only delays the triggers.
      const connecting = this.#connect().catch((err: unknown) => {
        if (err instanceof KubefnError && err.code === 'NOT_SUPPORTED') throw err;
        return undefined;
      });
      const parts = await Promise.race([connecting, timedOut]);
      if (!parts || parts === 'timeout' || parts.nc.isClosed() || this.#lost) return;
      if (!spec.triggers.some((t) => t.type === 'jetstream')) return;
      const checked = await Promise.race([parts.jetstream.check(spec).then(() => 'ok' as const), timedOut]).catch((err: unknown) => {
        if (err instanceof KubefnError) throw err;
        this.#o.onWarning?.('checking jetstream triggers failed; deploying without the check', { function: spec.name, err: errorText(err) });
        return 'failed' as const;
      });
      if (checked === 'timeout') this.#o.onWarning?.('checking jetstream triggers timed out; deploying without the check', { function: spec.name });
    } finally {
      clearTimeout(timer);
    }
  }

  /** Brings every trigger in line with the deployed functions; concurrent calls are coalesced. */
  sync(): Promise<void> {
    return this.#sync.run();
  }

  /** A function was deleted: its JetStream consumers go too. */
  async forget(spec: FunctionSpec): Promise<void> {
    await this.#parts?.jetstream.forget(spec).catch((err: unknown) => this.#o.onWarning?.('deleting consumers failed', { function: spec.name, err: errorText(err) }));
  }

  /** The connection, made now if it was not yet (for `fn publish`); throws UNAVAILABLE when it cannot be. */
  async connection(): Promise<NatsConnection> {
    return await this.#unavailableUnless(() => this.#connection());
  }

  /**
   * The connection with everything that runs on it started (for /async-function calls): a call
   * stored in the async stream is then also run, even when no function has an event trigger.
   * Throws UNAVAILABLE when NATS cannot be reached.
   */
  async running(): Promise<NatsConnection> {
    return await this.#unavailableUnless(async () => (await this.#connect()).nc);
  }

  async #unavailableUnless(connect: () => Promise<NatsConnection>): Promise<NatsConnection> {
    try {
      return await connect();
    } catch (err) {
      if (err instanceof KubefnError) throw err;
      throw new KubefnError('UNAVAILABLE', `no NATS server: ${errorText(err)}`, { cause: err });
    }
  }

  state(name: string): FunctionEvents {
    const p = this.#parts;
    const link: NatsLinkState = p
      ? { connected: !this.#lost && !p.nc.isClosed(), server: p.nc.getServer(), ...(this.#lost ? { error: this.#lost } : {}) }
      : { connected: false, ...(this.#connectError ? { error: this.#connectError } : {}) };
    if (!p) return { nats: link, triggers: [] };
    return {
      nats: link,
      triggers: [
        ...p.nats.state(name).map((s) => ({ type: 'nats' as const, ...s })),
        ...p.jetstream.state(name).map((s) => ({ type: 'jetstream' as const, ...s })),
        ...p.cron.state(name).map((s) => ({ type: 'cron' as const, ...s })),
      ].sort((a, b) => a.index - b.index),
    };
  }

  /** The async worker in this gateway, once NATS is connected. */
  asyncState(): AsyncInvocationsState | undefined {
    return this.#parts?.async.state();
  }

  /** Messages waiting for function `name` in its JetStream consumers. */
  pending(name: string): number {
    return this.#parts?.jetstream.pending(name) ?? 0;
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#sync.running?.catch(() => {});
    const p = this.#parts ?? (await this.#connecting?.catch(() => undefined));
    if (!p) return;
    await Promise.all([p.nats.close(), p.jetstream.close(), p.cron.close(), p.async.close()]);
  }

  async #syncOnce(): Promise<void> {
    if (this.#closed) return;
    const specs = (await this.#o.functions()).map((f) => f.spec);
    // A connection given ready-made is used at once (async calls stored before a restart wait in
    // its stream); one made on demand waits for a function that needs it.
    if (!this.#parts && typeof this.#o.nats === 'function' && !specs.some(needsNats)) return;
    let parts: Parts;
    try {
      parts = await this.#connect();
    } catch {
      return; // state() says why; the next sync tries again
    }
    if (this.#closed) return;
    parts.nats.sync(specs);
    // A new trigger's stream and consumer are in place when a deploy returns, unless the server
    // is slow or away: then they come when it answers.
    await Promise.race([parts.jetstream.sync(specs), delay(this.#lost ? 0 : 5000)]);
    await parts.cron.sync(specs);
  }

  #connect(): Promise<Parts> {
    if (this.#parts) return Promise.resolve(this.#parts);
    this.#connecting ??= (async () => {
      const nc = await this.#connection();
      const warn = this.#o.onWarning;
      const publisher = new Publisher(nc);
      const parts: Parts = {
        nc,
        nats: new NatsTriggers({ connection: nc, invoke: this.#o.invoke, publish: publisher.publish, metrics: this.metrics, ...(warn ? { onWarning: warn } : {}) }),
        jetstream: new JetStreamTriggers({
          connection: nc,
          invoke: this.#o.invoke,
          publish: publisher.publish,
          maxBodyBytes: this.#o.maxBodyBytes,
          metrics: this.metrics,
          ...(this.#o.onPending ? { onPending: this.#o.onPending } : {}),
          ...(warn ? { onWarning: warn } : {}),
        }),
        cron: new CronTriggers({
          connection: nc,
          invoke: this.#o.invoke,
          output: (subject, body, headers) => publisher.publish(subject, body, headers),
          ...(warn ? { onWarning: warn } : {}),
        }),
        async: new AsyncInvocations({ connection: nc, invoke: this.#o.invoke, ...(warn ? { onWarning: warn } : {}) }),
      };
      // The async worker starts with the connection: /async-function calls wait in its stream.
      void parts.async.start().catch((err: unknown) => warn?.('async invocations not started', { err: errorText(err) }));
      this.#parts = parts;
      return parts;
    })().catch((err: unknown) => {
      this.#connecting = undefined;
      throw err;
    });
    return this.#connecting;
  }

  /** The connection alone (what `fn publish` needs), made once; a failed attempt is retried on the next call. */
  #connection(): Promise<NatsConnection> {
    const source = this.#o.nats;
    if (typeof source !== 'function') return Promise.resolve(source);
    this.#dialing ??= source().then(
      (nc) => {
        this.#connectError = undefined;
        void this.#watch(nc);
        return nc;
      },
      (err: unknown) => {
        this.#dialing = undefined;
        this.#connectError = errorText(err);
        throw err;
      },
    );
    return this.#dialing;
  }

  async #watch(nc: NatsConnection): Promise<void> {
    try {
      for await (const s of nc.status()) {
        if (s.type === 'disconnect') this.#lost = `disconnected from ${s.server} at ${new Date().toISOString()}; reconnecting`;
        else if (s.type === 'reconnect') this.#lost = undefined;
        else if (s.type === 'close') this.#lost = 'connection closed';
      }
    } catch {
      // the connection closed
    }
  }
}
