// One FunctionRouter per function, made on first use and closed when the function goes.

import type { Driver, FunctionSpec } from '@kubefn/platform';
import { FunctionRouter } from './router.js';

export class RouterPool {
  readonly #routers = new Map<string, FunctionRouter>();

  constructor(
    private readonly driver: Pick<Driver, 'endpoints'>,
    private readonly maxQueue: number,
    private readonly onNoReplica: (name: string) => void,
  ) {}

  get(spec: FunctionSpec): FunctionRouter {
    let r = this.#routers.get(spec.name);
    if (!r) {
      r = new FunctionRouter({
        name: spec.name,
        endpoints: this.driver.endpoints(spec.name),
        containerConcurrency: spec.scale.containerConcurrency,
        maxQueue: this.maxQueue,
        onNoReplica: this.onNoReplica,
      });
      this.#routers.set(spec.name, r);
    } else {
      r.containerConcurrency = spec.scale.containerConcurrency;
    }
    return r;
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
