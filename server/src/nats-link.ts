// The cluster gateway's link to NATS. Where the servers are: KUBEFN_NATS_URL when it is set (any
// NATS, by address or DNS name), else the ready pods of deploy/'s kubefn-nats Service, read from
// its EndpointSlices as the components find each other (no cluster DNS or kube-proxy needed) and
// followed when the pod comes back elsewhere. The connection is made the first time the gateway
// needs one (a deployed function with an event trigger or an output subject), tried again on the
// next need while it fails, and once made it reconnects for ever: a NATS that is down never stops
// the gateway, its HTTP side works and its event triggers show not ready with the reason. Every
// change of the connection is logged; close() drains it.

import { connect, type ConnectionOptions, type NatsConnection } from '@nats-io/transport-node';
import type { Logger } from './logger.js';

/** Where the NATS servers are now. */
export interface NatsServers {
  /** Each server to try, as host:port or a nats:// URL; empty when there is none. */
  list(): string[];
  /** Calls `listener` when the list may have changed. */
  onChange?(listener: () => void): void;
  /** Where the list comes from, for messages: "KUBEFN_NATS_URL", "the kubefn-nats Service". */
  what: string;
}

export interface NatsLinkOptions {
  servers: NatsServers;
  log: Logger;
  /** The client name the server shows (default "kubefn-gateway"). */
  name?: string;
  /** The token NATS asks for (KUBEFN_NATS_TOKEN), if it asks. */
  token?: string;
  /** How long one attempt may take to reach a server and shake hands, ms (default 5000). */
  timeoutMs?: number;
  /** Pause between reconnect attempts, ms (default 2000, nats.js's). */
  reconnectWaitMs?: number;
  /** For tests: nats.js's connect. */
  connect?: (options: ConnectionOptions) => Promise<NatsConnection>;
}

export class NatsLink {
  readonly #o: NatsLinkOptions;
  #nc: NatsConnection | undefined;
  #connecting: Promise<NatsConnection> | undefined;
  /** The last failure logged, so a NATS that stays away is said once, not on every try. */
  #lastFailure: string | undefined;
  #closing: Promise<void> | undefined;

  constructor(options: NatsLinkOptions) {
    this.#o = options;
    options.servers.onChange?.(() => this.#follow());
  }

  /**
   * The connection, made now if there is none yet (the gateway's `nats` option). Rejects, saying
   * which servers did not answer, when none does; the next call tries again.
   */
  readonly connection = (): Promise<NatsConnection> => {
    if (this.#closing) return Promise.reject(new Error('the gateway is stopping'));
    if (this.#nc) return Promise.resolve(this.#nc);
    this.#connecting ??= this.#connect().finally(() => {
      this.#connecting = undefined;
    });
    return this.#connecting;
  };

  /** The connection if one was made (and not closed). */
  get current(): NatsConnection | undefined {
    return this.#nc;
  }

  /** Drains the connection (its subscriptions finish what they hold), once; later calls wait for the first. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      const nc = this.#nc ?? (await this.#connecting?.catch(() => undefined));
      if (!nc || nc.isClosed()) return;
      await nc.drain().catch((err: unknown) => this.#o.log.warn('draining the NATS connection failed', { err: text(err) }));
    })();
    return this.#closing;
  }

  async #connect(): Promise<NatsConnection> {
    const { servers: source, log } = this.#o;
    const servers = source.list();
    if (!servers.length) throw this.#failed(`no NATS server: ${source.what} has no ready server`);
    let nc: NatsConnection;
    try {
      nc = await (this.#o.connect ?? connect)({
        servers,
        name: this.#o.name ?? 'kubefn-gateway',
        ...(this.#o.token ? { token: this.#o.token } : {}),
        // Once connected, never give up: the triggers resume when the server is back.
        maxReconnectAttempts: -1,
        reconnectTimeWait: this.#o.reconnectWaitMs ?? 2000,
        timeout: this.#o.timeoutMs ?? 5000,
      });
    } catch (err) {
      throw this.#failed(`cannot connect to NATS at ${servers.join(', ')} (${source.what}): ${text(err)}`, err);
    }
    if (this.#closing) {
      await nc.close().catch(() => {});
      throw new Error('the gateway is stopping');
    }
    this.#nc = nc;
    this.#lastFailure = undefined;
    log.info('connected to NATS', { server: nc.getServer(), servers: source.what });
    void this.#watch(nc);
    // The list may have moved while connecting.
    this.#follow();
    return nc;
  }

  #failed(message: string, cause?: unknown): Error {
    if (message !== this.#lastFailure) this.#o.log.warn(`${message}; event triggers wait for it`);
    this.#lastFailure = message;
    return new Error(message, cause === undefined ? undefined : { cause });
  }

  /** Gives the connection the servers listed now, for its next reconnect. */
  #follow(): void {
    const nc = this.#nc;
    const servers = this.#o.servers.list();
    if (!nc || nc.isClosed() || !servers.length) return;
    const hostPort = (s: string) => s.replace(/^nats:\/\//, '');
    const now = nc.getServers().map((s) => s.listen).sort().join(',');
    if (servers.map(hostPort).sort().join(',') === now) return;
    try {
      nc.setServers(servers);
      this.#o.log.info('NATS servers changed', { servers, from: this.#o.servers.what });
    } catch (err) {
      this.#o.log.warn('cannot use the new NATS servers', { servers, err: text(err) });
    }
  }

  async #watch(nc: NatsConnection): Promise<void> {
    const log = this.#o.log;
    try {
      for await (const s of nc.status()) {
        if (s.type === 'disconnect') log.warn('disconnected from NATS; reconnecting', { server: s.server });
        else if (s.type === 'reconnect') log.info('reconnected to NATS', { server: s.server });
        else if (s.type === 'ldm') log.warn('the NATS server is going away (lame duck mode)', { server: s.server });
        else if (s.type === 'staleConnection') log.warn('the NATS connection is stale; reconnecting');
        else if (s.type === 'error') log.warn('NATS error', { err: text(s.error) });
      }
    } catch {
      // the connection closed
    }
    const err = await nc.closed();
    if (err) log.warn('the NATS connection closed', { err: text(err) });
    else log.info('the NATS connection closed');
    if (this.#nc === nc) this.#nc = undefined;
  }
}

function text(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
