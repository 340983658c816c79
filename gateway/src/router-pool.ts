// One FunctionRouter per function, made on first use and closed when the function goes; their
// queues share one gateway-wide budget.

import type { Driver, FunctionSpec } from '@kubefn/platform';
import { QueueBudget, queueSettings, type QueueSettings } from './queue-budget.js';
import { FunctionRouter, type GatewayShare } from './router.js';

export interface RouterPoolOptions {
  queue?: Partial<QueueSettings>;
  /** Called when a request finds a function with no ready replica, once it is queued. */
  onNoReplica: (name: string) => void;
  now?: () => number;
}

export class RouterPool {
  readonly #routers = new Map<string, FunctionRouter>();
  readonly settings: QueueSettings;
  readonly budget: QueueBudget;
  #share: GatewayShare = { index: 0, count: 1 };

  constructor(
    private readonly driver: Pick<Driver, 'endpoints'>,
    private readonly options: RouterPoolOptions,
  ) {
    this.settings = queueSettings(options.queue);
    this.budget = new QueueBudget(this.settings);
  }

  get(spec: FunctionSpec): FunctionRouter {
    let r = this.#routers.get(spec.name);
    if (!r) {
      r = new FunctionRouter({
        name: spec.name,
        endpoints: this.driver.endpoints(spec.name),
        containerConcurrency: spec.scale.containerConcurrency,
        share: this.#share,
        queue: this.settings,
        budget: this.budget,
        onNoReplica: this.options.onNoReplica,
        ...(this.options.now ? { now: this.options.now } : {}),
      });
      this.#routers.set(spec.name, r);
    } else {
      r.containerConcurrency = spec.scale.containerConcurrency;
    }
    return r;
  }

  /**
   * This gateway's place among the live gateways: containerConcurrency is split across them
   * (slotsFor), so together they never send a replica more than its CC.
   */
  setShare(share: GatewayShare): void {
    this.#share = { ...share };
    for (const r of this.#routers.values()) r.share = share;
  }

  get share(): GatewayShare {
    return this.#share;
  }

  /** The function's queue and ready replicas now; undefined when it has no router here. */
  state(name: string): { queued: number; ready: number } | undefined {
    const r = this.#routers.get(name);
    return r && { queued: r.queued, ready: r.readyReplicas };
  }

  /** Bytes a queued request's body counts against the budget: its content-length, else the chunked estimate. */
  bodyBytes(body: Buffer | object | null, contentLength: string | string[] | undefined): number {
    if (body === null) return 0;
    if (Buffer.isBuffer(body)) return body.length;
    const n = Number(Array.isArray(contentLength) ? contentLength[0] : contentLength);
    return contentLength !== undefined && Number.isSafeInteger(n) && n >= 0 ? n : this.settings.chunkedBodyBytes;
  }

  remove(name: string): void {
    this.#routers.get(name)?.close();
    this.#routers.delete(name);
  }

  *queueDepths(): Iterable<[string, number]> {
    for (const [name, r] of this.#routers) yield [name, r.queued];
  }

  close(): void {
    for (const r of this.#routers.values()) r.close();
    this.#routers.clear();
  }
}
