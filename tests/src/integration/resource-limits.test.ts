// Resource limits on the process driver: a replica that leaks past `resources.memory` (in V8's
// heap or in Buffers outside it) is killed, reported as OUT_OF_MEMORY in status and logs, and
// replaced; `resources.cpu` puts the replica in a cgroup with that quota, or deploy warns.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Readable } from 'node:stream';
import { bundleFunction, packApp } from '@kubefn/builder';
import { AppStore, appImageRef, BundleStore, cfsQuotaUs, parseFunctionSpec, ProcessDriver, type FunctionSpecInput, type LogLine } from '@kubefn/platform';
import { waitFor } from '@kubefn/platform/testing';

const fixturesDir = fileURLToPath(new URL('../../fixtures/', import.meta.url));
const waitTimeoutMs = 90_000;
const timeout = 300_000;

describe('process driver resource limits', () => {
  let dir: string;
  let driver: ProcessDriver;
  let image: string;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'kubefn-resource-limits-'));
    const apps = await AppStore.open(path.join(dir, 'apps'));
    const bundle = await bundleFunction({ dir: path.join(fixturesDir, 'memory-hog'), handler: 'handler.js', outDir: path.join(dir, 'build') });
    const app = await packApp(bundle);
    await apps.put(app.digest, Readable.from([app.tar]));
    image = appImageRef(app.digest);
    driver = new ProcessDriver({ bundles: await BundleStore.open(path.join(dir, 'bundles')), apps });
  });

  after(async () => {
    await driver?.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function deploy(input: FunctionSpecInput) {
    return driver.deploy(parseFunctionSpec({ ...input, image }));
  }

  async function history(name: string): Promise<LogLine[]> {
    const out: LogLine[] = [];
    for await (const line of driver.logs(name, {}, AbortSignal.timeout(waitTimeoutMs))) out.push(line);
    return out;
  }

  /** Asks the only ready replica to leak 1 GiB of `kind`; resolves with what it answered, if anything. */
  async function leak(name: string, kind: 'heap' | 'buffer'): Promise<{ id: string; answer: string | undefined }> {
    await waitFor(() => driver.endpoints(name).current().length === 1, { what: `a ready replica of ${name}`, timeoutMs: waitTimeoutMs });
    const endpoint = driver.endpoints(name).current()[0]!;
    const answer = await fetch(`${endpoint.url}/?kind=${kind}&mib=1024`, { signal: AbortSignal.timeout(waitTimeoutMs) }).then(
      (res) => res.text(),
      () => undefined,
    );
    return { id: endpoint.id, answer };
  }

  for (const kind of ['heap', 'buffer'] as const) {
    it(`kills a replica that leaks 1 GiB of ${kind} past its 128Mi limit, reports OUT_OF_MEMORY and replaces it`, { timeout }, async () => {
      const name = `leak-${kind}`;
      await deploy({ name, resources: { memory: '128Mi' }, scale: { initial: 1, max: 1 } });
      const { id, answer } = await leak(name, kind);
      assert.equal(answer, undefined, `the replica held 1 GiB under a 128Mi limit: ${answer}`);

      await waitFor(async () => (await driver.get(name)).lastError?.code === 'OUT_OF_MEMORY', { what: 'OUT_OF_MEMORY in status', timeoutMs: waitTimeoutMs });
      const message = (await driver.get(name)).lastError!.message;
      // The heap leak stops at V8's limit, set below 128Mi; the Buffers are caught by the watchdog.
      const killed = /used (\d+) MiB, over its 128Mi limit; killed/.exec(message);
      if (kind === 'buffer') assert.ok(killed, message);
      else assert.ok(killed || /ran out of JavaScript heap \(\d+ MiB, set from its 128Mi limit\)/.test(message), message);
      assert.ok(message.startsWith(`replica ${id} `), message);
      // Killed well short of the 1 GiB it asked for.
      if (killed) assert.ok(Number(killed[1]) < 512, `killed only at ${killed[1]} MiB`);
      const logged = (await history(name)).filter((l) => l.stream === 'system' && l.text.includes(message));
      assert.equal(logged.length, 1, 'one system line in the logs says why');

      await waitFor(() => driver.endpoints(name).current().some((e) => e.id !== id), { what: 'a replacement replica', timeoutMs: waitTimeoutMs });
      assert.equal((await driver.get(name)).lastError?.message, message, 'the kill is still in the status once its replacement is ready');
      await driver.remove(name);
    });
  }

  it('a replica without a memory limit is not killed for holding 256 MiB', { timeout }, async () => {
    const name = 'no-limit';
    await deploy({ name, scale: { initial: 1, max: 1 } });
    await waitFor(() => driver.endpoints(name).current().length === 1, { what: 'a ready replica', timeoutMs: waitTimeoutMs });
    const res = await fetch(`${driver.endpoints(name).current()[0]!.url}/?kind=buffer&mib=256`, { signal: AbortSignal.timeout(waitTimeoutMs) });
    assert.equal(await res.text(), 'holding 256 MiB in buffer\n');
    assert.equal((await driver.get(name)).lastError, undefined);
    await driver.remove(name);
  });

  it('holds a replica to resources.cpu with a cgroup quota, or warns that it cannot', { timeout }, async () => {
    const name = 'cpu-limit';
    const status = await deploy({ name, resources: { cpu: '250m' }, scale: { initial: 1, max: 1 } });
    await waitFor(() => driver.endpoints(name).current().length === 1, { what: 'a ready replica', timeoutMs: waitTimeoutMs });
    const warning = status.warnings?.find((w) => w.startsWith('resources.cpu 250m is not enforced'));
    const pid = await replicaPid(name);
    const quota = cpuQuotaOf(pid);
    if (quota === undefined) {
      assert.ok(warning, `no cpu cgroup for the replica, and no warning: ${JSON.stringify(status.warnings)}`);
    } else {
      assert.equal(warning, undefined);
      assert.equal(quota, cfsQuotaUs(0.25));
    }
    await driver.remove(name);
  });

  /** The pid of the function's one replica, from its "starting replica" log line. */
  async function replicaPid(name: string): Promise<number> {
    const line = (await history(name)).find((l) => /^starting replica .* \(pid \d+\)$/.test(l.text));
    assert.ok(line, 'a starting line with the pid');
    return Number(/pid (\d+)/.exec(line.text)![1]);
  }
});

/** The CFS quota (µs per 100 ms) of the cgroup `pid` is in, when it has one of its own; v1 or v2. */
function cpuQuotaOf(pid: number): number | undefined {
  for (const line of readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n')) {
    const [, controllers, group] = line.split(':');
    if (!group || !group.includes('/kubefn-')) continue;
    if (controllers === '') {
      const max = readFileSync(path.join('/sys/fs/cgroup', group, 'cpu.max'), 'utf8').split(' ')[0]!;
      return max === 'max' ? undefined : Number(max);
    }
    if (controllers!.split(',').includes('cpu')) {
      const mount = ['/sys/fs/cgroup/cpu', '/sys/fs/cgroup/cpu,cpuacct'].find((m) => {
        try {
          readFileSync(path.join(m, group, 'cpu.cfs_quota_us'));
          return true;
        } catch {
          return false;
        }
      });
      if (!mount) return undefined;
      const quota = Number(readFileSync(path.join(mount, group, 'cpu.cfs_quota_us'), 'utf8'));
      return quota < 0 ? undefined : quota;
    }
  }
  return undefined;
}

