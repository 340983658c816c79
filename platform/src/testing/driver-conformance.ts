// The conformance suite every Driver passes: the same node:test cases, registered once per driver.
//
// A driver's test file calls driverConformance('process', setup). `setup` returns the driver and
// `image(fixture)`, which builds one of three fixture functions into whatever that driver runs
// (a bundle ref, an OCI image). The fixtures behave like this:
//   hello: any path -> 200, body contains `greeting=<$GREETING>`; `?mark=X` first prints `mark=X` to stdout.
//   crash: `/crash` -> answers, then the process exits with code 3; other paths -> 200 `boot=<id>`,
//          an id fixed for the life of the process (so a replacement is told apart from the original).
//   slow:  `?ms=N` -> waits N ms, then 200 `slept N`; `?mark=X` prints `mark=X` to stdout when the call starts.
//   broken: throws `broken fixture: failed at import time` on line 2 of handler.js while it is imported.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { Driver, Endpoint, FunctionStatus, LogLine } from '../driver.js';
import { isKubefnError, type ErrorCode } from '../errors.js';
import { rolloutState, type RolloutState } from '../rollout.js';
import { parseFunctionSpec, type FunctionSpecInput } from '../spec.js';
import { waitFor } from './wait-for.js';

export type ConformanceFixture = 'hello' | 'crash' | 'slow' | 'broken';

export interface ConformanceHarness {
  driver: Driver;
  /** The `image` a spec needs to run this fixture on the driver; may build on first use. */
  image(fixture: ConformanceFixture): Promise<string>;
  cleanup(): Promise<void>;
}

export interface ConformanceOptions {
  /** Deadline for each awaited condition (replicas ready, logs arriving), in ms (default 90000). */
  waitTimeoutMs?: number;
  /** Deadline for each test case, in ms (default 300000). */
  testTimeoutMs?: number;
}

export function driverConformance(
  name: string,
  setup: () => Promise<ConformanceHarness>,
  options: ConformanceOptions = {},
): void {
  const waitTimeoutMs = options.waitTimeoutMs ?? 90_000;
  const timeout = options.testTimeoutMs ?? 300_000;

  describe(`driver conformance: ${name}`, () => {
    let harness: ConformanceHarness | undefined;
    const deployed = new Set<string>();
    const h = (): ConformanceHarness => {
      if (!harness) throw new Error('conformance setup failed');
      return harness;
    };

    before(async () => {
      harness = await setup();
    });

    after(async () => {
      if (!harness) return;
      for (const fn of deployed) await harness.driver.remove(fn).catch(() => {});
      await harness.cleanup();
    });

    async function deploy(fixture: ConformanceFixture, input: FunctionSpecInput): Promise<FunctionStatus> {
      deployed.add(input.name);
      return h().driver.deploy(parseFunctionSpec({ ...input, image: await h().image(fixture) }));
    }

    async function removeQuietly(fn: string): Promise<void> {
      await h().driver.remove(fn).catch(() => {});
      deployed.delete(fn);
    }

    function wait<T>(what: string, check: () => T | Promise<T>) {
      return waitFor(check, { what, timeoutMs: waitTimeoutMs });
    }

    /** Waits until the function has exactly `n` ready endpoints that `accept` every body of. */
    function endpointsAnswering(fn: string, n: number, accept: (body: string) => boolean): Promise<readonly Endpoint[]> {
      return wait(`${n} ready replica(s) of ${fn} answering`, async () => {
        const endpoints = h().driver.endpoints(fn).current();
        if (endpoints.length !== n) return undefined;
        for (const e of endpoints) {
          const res = await call(e.url, '/');
          if (res.status !== 200 || !accept(res.body)) return undefined;
        }
        return endpoints;
      });
    }

    it('deploy creates a function that get() and list() show', { timeout }, async () => {
      const fn = uniqueName('deploy');
      try {
        const created = await deploy('hello', { name: fn, scale: { initial: 0 } });
        assert.equal(created.spec.name, fn);
        assert.equal(created.replicas, 0);
        assert.equal(created.readyReplicas, 0);
        assert.ok(!Number.isNaN(Date.parse(created.createdAt)), 'createdAt is a date');
        assert.ok(!Number.isNaN(Date.parse(created.updatedAt)), 'updatedAt is a date');

        const got = await h().driver.get(fn);
        assert.equal(got.spec.name, fn);
        assert.equal(got.spec.image, created.spec.image);
        assert.equal(got.replicas, 0);
        const listed = (await h().driver.list()).find((s) => s.spec.name === fn);
        assert.ok(listed, 'list() includes the function');
        assert.equal(listed.replicas, 0);

        const again = await deploy('hello', { name: fn, scale: { initial: 0 } });
        assert.equal(again.createdAt, created.createdAt, 'deploying again updates, it does not re-create');
        assert.deepEqual(h().driver.endpoints(fn).current(), []);
      } finally {
        await removeQuietly(fn);
      }
    });

    it('scale 0 -> 2 fills endpoints with replicas that answer; scale 0 empties them', { timeout }, async () => {
      const fn = uniqueName('scale');
      try {
        // Taken before the deploy: the set is live, empty first and filled later.
        const set = h().driver.endpoints(fn);
        assert.deepEqual(set.current(), []);
        await deploy('hello', { name: fn, env: { GREETING: 'conformance' }, scale: { initial: 0, max: 2 } });

        await h().driver.scale(fn, 2);
        assert.equal((await h().driver.get(fn)).replicas, 2);
        await wait('2 endpoints in the set taken before deploy', () => set.current().length === 2);
        const endpoints = await endpointsAnswering(fn, 2, (body) => body.includes('greeting=conformance'));
        assert.equal(new Set(endpoints.map((e) => e.id)).size, 2, 'replica ids are distinct');
        assert.equal(new Set(endpoints.map((e) => e.url)).size, 2, 'replica urls are distinct');
        for (const e of endpoints) assert.match(e.adminUrl, /^https?:\/\//);
        await wait('readyReplicas 2', async () => (await h().driver.get(fn)).readyReplicas === 2);

        await h().driver.scale(fn, 5);
        assert.equal((await h().driver.get(fn)).replicas, 2, 'scale is clamped to scale.max');

        await h().driver.scale(fn, 0);
        assert.equal((await h().driver.get(fn)).replicas, 0);
        await wait('no endpoints after scale 0', () => set.current().length === 0);
        await wait('readyReplicas 0', async () => (await h().driver.get(fn)).readyReplicas === 0);
      } finally {
        await removeQuietly(fn);
      }
    });

    it('updating the spec rolls replicas over: new ones see the new env, old ones go', { timeout }, async () => {
      const fn = uniqueName('update');
      try {
        const status = await deploy('hello', { name: fn, env: { GREETING: 'one' }, scale: { initial: 2, max: 2 } });
        assert.equal(status.replicas, 2, 'deploy starts scale.initial replicas');
        const before = await endpointsAnswering(fn, 2, (body) => body.includes('greeting=one'));
        const oldIds = new Set(before.map((e) => e.id));

        let emptied = false;
        const unsubscribe = h().driver.endpoints(fn).subscribe((list) => {
          if (list.length === 0) emptied = true;
        });
        try {
          const updated = await deploy('hello', { name: fn, env: { GREETING: 'two' }, scale: { initial: 2, max: 2 } });
          assert.equal(updated.spec.env?.GREETING, 'two');
          assert.equal(updated.createdAt, status.createdAt);
          await endpointsAnswering(fn, 2, (body) => body.includes('greeting=two'));
          await wait('old replicas gone from endpoints', () =>
            h().driver.endpoints(fn).current().every((e) => !oldIds.has(e.id)),
          );
        } finally {
          unsubscribe();
        }
        assert.equal(emptied, false, 'a rolling update never leaves a function with no ready replica');
        assert.equal((await h().driver.get(fn)).spec.env?.GREETING, 'two');
      } finally {
        await removeQuietly(fn);
      }
    });

    /** The rollout as `fn deploy` judges it; the driver must report every field it needs. */
    async function rolloutOf(fn: string): Promise<{ status: FunctionStatus; rollout: RolloutState }> {
      const status = await h().driver.get(fn);
      for (const field of ['updatedReplicas', 'generation', 'observedGeneration'] as const) {
        assert.equal(typeof status[field], 'number', `the status reports ${field}`);
      }
      const rollout = rolloutState({
        replicas: status.replicas,
        readyReplicas: status.readyReplicas,
        updatedReplicas: status.updatedReplicas!,
        generation: status.generation!,
        observedGeneration: status.observedGeneration!,
        loadError: status.loadError,
      });
      return { status, rollout };
    }

    it('a redeploy at zero is done once applied, and the next replica runs the new spec', { timeout }, async () => {
      const fn = uniqueName('zero');
      try {
        const first = await deploy('hello', { name: fn, env: { GREETING: 'one' }, scale: { initial: 0 } });
        await deploy('hello', { name: fn, env: { GREETING: 'two' }, scale: { initial: 0 } });
        const done = await wait('the redeploy at zero to be done', async () => {
          const r = await rolloutOf(fn);
          return r.rollout.state === 'done' ? r : undefined;
        });
        assert.deepEqual(done.rollout, { state: 'done', reason: 'at-zero' });
        assert.ok(done.status.generation! > (first.generation ?? 0), 'the generation went up');
        await h().driver.scale(fn, 1);
        await endpointsAnswering(fn, 1, (body) => body.includes('greeting=two'));
      } finally {
        await removeQuietly(fn);
      }
    });

    it('an update is done only once every ready replica runs the new spec', { timeout }, async () => {
      const fn = uniqueName('rollout');
      try {
        await deploy('hello', { name: fn, env: { GREETING: 'one' }, scale: { initial: 1, max: 1 } });
        await endpointsAnswering(fn, 1, (body) => body.includes('greeting=one'));
        // A driver's status may trail its endpoints (a Deployment's status after the pod is ready).
        const first = await wait('the first version to be done', async () => {
          const r = await rolloutOf(fn);
          return r.rollout.state === 'done' ? r : undefined;
        });
        assert.deepEqual(first.rollout, { state: 'done', reason: 'updated' });
        await deploy('hello', { name: fn, env: { GREETING: 'two' }, scale: { initial: 1, max: 1 } });
        const done = await wait('the update to be done', async () => {
          const r = await rolloutOf(fn);
          return r.rollout.state === 'done' ? r : undefined;
        });
        assert.equal(done.status.updatedReplicas, done.status.readyReplicas);
        // Right when the status says done, whatever is routable answers with the new spec.
        const endpoints = h().driver.endpoints(fn).current();
        assert.ok(endpoints.length >= 1, 'a ready replica');
        for (const e of endpoints) assert.match((await call(e.url, '/')).body, /greeting=two/, `${e.id} runs the new spec`);
      } finally {
        await removeQuietly(fn);
      }
    });

    it('a handler that cannot load is reported with its message and source line', { timeout }, async () => {
      const fn = uniqueName('broken');
      try {
        await deploy('broken', { name: fn, scale: { initial: 1, max: 1 } });
        const failed = await wait('a load error', async () => {
          const r = await rolloutOf(fn);
          return r.rollout.state === 'failed' ? r : undefined;
        });
        const e = failed.status.loadError;
        assert.equal(e?.code, 'LOAD_FAILED');
        assert.match(e?.message ?? '', /broken fixture: failed at import time/);
        assert.match(e?.location ?? '', /^handler\.js:2:\d+$/);
        assert.equal(failed.status.readyReplicas, 0);

        // Fixed code clears it: the error belonged to the old spec.
        await deploy('hello', { name: fn, env: { GREETING: 'fixed' }, scale: { initial: 1, max: 1 } });
        const fixed = await wait('the fixed spec to be done', async () => {
          const r = await rolloutOf(fn);
          return r.rollout.state === 'done' ? r : undefined;
        });
        assert.equal(fixed.status.loadError, undefined);
        await endpointsAnswering(fn, 1, (body) => body.includes('greeting=fixed'));
      } finally {
        await removeQuietly(fn);
      }
    });

    it('logs hold what the handler printed, and follow streams new lines', { timeout }, async () => {
      const fn = uniqueName('logs');
      try {
        await deploy('hello', { name: fn, scale: { initial: 1 } });
        const [endpoint] = await endpointsAnswering(fn, 1, () => true);
        const first = `first-${randomBytes(4).toString('hex')}`;
        await call(endpoint!.url, `/?mark=${first}`);
        const line = await wait(`a log line with mark=${first}`, async () =>
          (await collect(h().driver.logs(fn, {}, AbortSignal.timeout(waitTimeoutMs)))).find((l) => l.text.includes(`mark=${first}`)),
        );
        assert.equal(line.name, fn);
        assert.equal(line.stream, 'stdout');
        assert.ok(line.instance.length > 0, 'a line names its replica');
        assert.ok(!Number.isNaN(Date.parse(line.timestamp)), 'timestamp is a date');

        const tail = await collect(h().driver.logs(fn, { tail: 1 }, AbortSignal.timeout(waitTimeoutMs)));
        assert.equal(tail.length, 1, 'tail: 1 gives exactly the last line');
        const future = new Date(Date.now() + 3_600_000);
        assert.deepEqual(await collect(h().driver.logs(fn, { since: future }, AbortSignal.timeout(waitTimeoutMs))), []);

        // A follower attaches asynchronously on some drivers, so keep calling until one call's line arrives.
        const followed = `followed-${randomBytes(4).toString('hex')}`;
        const controller = new AbortController();
        const deadline = setTimeout(() => controller.abort(), waitTimeoutMs);
        let seen: LogLine | undefined;
        const reader = (async () => {
          for await (const l of h().driver.logs(fn, { follow: true, tail: 0 }, controller.signal)) {
            if (l.text.includes(`mark=${followed}`)) return (seen = l);
          }
          return undefined;
        })();
        try {
          let n = 0;
          await waitFor(
            async () => {
              if (seen) return seen;
              await call(endpoint!.url, `/?mark=${followed}-${n++}`).catch(() => undefined);
              return seen;
            },
            { what: 'a followed log line', timeoutMs: waitTimeoutMs, maxIntervalMs: 1000 },
          );
          assert.ok(await reader, 'follow delivered a line written after it started');
        } finally {
          clearTimeout(deadline);
          controller.abort();
          await reader.catch(() => undefined);
        }
      } finally {
        await removeQuietly(fn);
      }
    });

    it('a replica that crashes is replaced', { timeout }, async () => {
      const fn = uniqueName('crash');
      try {
        await deploy('crash', { name: fn, scale: { initial: 1, max: 1 } });
        const [endpoint] = await endpointsAnswering(fn, 1, (body) => body.includes('boot='));
        const boot = (await call(endpoint!.url, '/')).body.trim();
        await call(endpoint!.url, '/crash').catch(() => undefined);
        await wait('a replacement replica answering', async () => {
          const [e] = h().driver.endpoints(fn).current();
          if (!e) return false;
          const res = await call(e.url, '/');
          return res.status === 200 && res.body.includes('boot=') && res.body.trim() !== boot;
        });
        assert.equal((await h().driver.get(fn)).replicas, 1, 'the desired count is unchanged');
      } finally {
        await removeQuietly(fn);
      }
    });

    it('a replica scaled away finishes the call it is serving', { timeout }, async () => {
      const fn = uniqueName('drain');
      try {
        await deploy('slow', { name: fn, scale: { initial: 1, max: 1 } });
        const [endpoint] = await endpointsAnswering(fn, 1, (body) => body.includes('slept'));
        const mark = `drain-${randomBytes(4).toString('hex')}`;
        const inflight = call(endpoint!.url, `/?ms=3000&mark=${mark}`);
        await wait('the slow call to start', async () =>
          (await collect(h().driver.logs(fn, {}, AbortSignal.timeout(waitTimeoutMs)))).some((l) => l.text.includes(`mark=${mark}`)),
        );
        await h().driver.scale(fn, 0);
        await wait('no endpoints after scale 0', () => h().driver.endpoints(fn).current().length === 0);
        const res = await inflight;
        assert.equal(res.status, 200);
        assert.match(res.body, /slept 3000/);
      } finally {
        await removeQuietly(fn);
      }
    });

    it('remove stops the replicas and forgets the function', { timeout }, async () => {
      const fn = uniqueName('remove');
      await deploy('hello', { name: fn, scale: { initial: 1 } });
      await endpointsAnswering(fn, 1, () => true);
      const controller = new AbortController();
      const deadline = setTimeout(() => controller.abort(), waitTimeoutMs);
      let followEnded = false;
      const follower = (async () => {
        for await (const _ of h().driver.logs(fn, { follow: true }, controller.signal));
        followEnded = true;
      })();
      try {
        await h().driver.remove(fn);
        deployed.delete(fn);
        await expectCode(h().driver.get(fn), 'NOT_FOUND');
        assert.ok(!(await h().driver.list()).some((s) => s.spec.name === fn), 'list() no longer shows it');
        await wait('no endpoints after remove', () => h().driver.endpoints(fn).current().length === 0);
        await wait('a log follower to end when its function goes', () => followEnded);
        await expectCode(h().driver.remove(fn), 'NOT_FOUND');
        await expectCode(h().driver.scale(fn, 1), 'NOT_FOUND');
      } finally {
        clearTimeout(deadline);
        controller.abort();
        await follower.catch(() => undefined);
      }
    });

    it('unknown names are NOT_FOUND', { timeout }, async () => {
      const fn = uniqueName('missing');
      await expectCode(h().driver.get(fn), 'NOT_FOUND');
      await expectCode(h().driver.remove(fn), 'NOT_FOUND');
      await expectCode(h().driver.scale(fn, 1), 'NOT_FOUND');
      await expectCode(collect(h().driver.logs(fn, {}, AbortSignal.timeout(waitTimeoutMs))), 'NOT_FOUND');
      assert.deepEqual(h().driver.endpoints(fn).current(), []);
    });

    it('an invalid replica count is rejected', { timeout }, async () => {
      const fn = uniqueName('badscale');
      try {
        await deploy('hello', { name: fn, scale: { initial: 0 } });
        await expectCode(h().driver.scale(fn, -1), 'BAD_REQUEST');
        await expectCode(h().driver.scale(fn, 1.5), 'BAD_REQUEST');
        await expectCode(h().driver.scale(fn, Number.NaN), 'BAD_REQUEST');
        assert.equal((await h().driver.get(fn)).replicas, 0);
      } finally {
        await removeQuietly(fn);
      }
    });
  });
}

function uniqueName(tag: string): string {
  return `cf-${tag}-${randomBytes(3).toString('hex')}`;
}

async function call(base: string, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(new URL(path, base), { signal: AbortSignal.timeout(30_000) });
  return { status: res.status, body: await res.text() };
}

async function collect(lines: AsyncIterable<LogLine>): Promise<LogLine[]> {
  const out: LogLine[] = [];
  for await (const line of lines) out.push(line);
  return out;
}

/** Asserts that `promise` rejects with a KubefnError of `code`. */
export async function expectCode(promise: Promise<unknown>, code: ErrorCode): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(isKubefnError(err, code), `expected ${code}, got ${(err as Error)?.stack ?? String(err)}`);
    return true;
  });
}
