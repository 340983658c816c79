// Cold start through the gateway, the way a user meets it: a function at zero replicas, its
// first request timed end to end. Shared by the benchmarks.

import { request } from 'undici';
import { waitFor } from '@kubefn/platform/testing';
import type { Api } from '../support/api.js';

/**
 * Deploys `image` as a fresh function at zero `tries` times and times each first request, in ms.
 * With `warmPool`, each try first waits until the platform's warm pool is full again with none
 * starting, so every try measures a start from the pool on a platform at rest (GET /system/info
 * reports it).
 */
export async function coldStarts(api: Api, image: string, tries: number, name = 'hello-cold', options: { warmPool?: boolean } = {}): Promise<number[]> {
  const cold: number[] = [];
  for (let i = 0; i < tries; i++) {
    await api.deploy({ name, image, scale: { initial: 0 } });
    await waitFor(async () => (await api.status(name)).replicas === 0, { what: `${name} at zero` });
    if (options.warmPool) {
      // A full pool, none starting: a cold start as it comes on a platform at rest, not racing
      // the refill behind the last try (a runtime or container starting takes a core of two).
      await waitFor(async () => {
        const pool = await api.pool();
        return !!pool && pool.idle >= pool.allowed && pool.starting === 0;
      }, { what: 'the warm pool full again' });
    }
    const t0 = performance.now();
    const res = await request(`${api.url}/function/${name}`);
    await res.body.text();
    cold.push(performance.now() - t0);
    if (res.statusCode !== 200) throw new Error(`cold request answered ${res.statusCode}`);
    await api.ok('DELETE', '/system/functions', { functionName: name });
    // The next deploy must not find the old replicas still draining.
    await waitFor(async () => !(await api.call('GET', `/system/function/${name}`)).ok, { what: `${name} gone` });
  }
  return cold;
}

export function percentile(values: readonly number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}
