// `fn up --workers 2` end to end: two gateway processes on one port in front of the primary,
// which keeps the driver and the autoscaler. Calls on new connections are answered by both
// workers (each request log line names the worker's pid); a function of containerConcurrency 1
// never has two calls in its handler under 20 concurrent callers spread over the workers; a
// function scales from zero through the workers; a deletion reaches every worker's catalog at
// once; a killed worker is started again while the port keeps answering; and a bad --workers is
// refused before anything starts.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { request } from 'node:http';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { waitFor } from '@kubefn/platform/testing';
import { Api } from '../support/api.js';
import { fnBin, newHome, repoRoot, startPlatform, type RunningPlatform } from '../support/platform-process.js';

const exec = promisify(execFile);
const hello = path.join(repoRoot, 'tests', 'fixtures', 'hello');
const counter = path.join(repoRoot, 'tests', 'fixtures', 'counter');

/** One call on a connection of its own: node:cluster deals connections, not requests, to the workers. */
function call(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false, timeout: 30_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from ${url} within 30 s`)));
    req.on('error', reject);
    req.end();
  });
}

interface LogLine {
  msg?: string;
  url?: string;
  status?: number;
  pid?: number;
  worker?: number;
  callId?: string;
  workers?: number;
  workerPids?: number[];
}

function lines(platform: RunningPlatform): LogLine[] {
  return platform.output.flatMap((l) => {
    try {
      return [JSON.parse(l) as LogLine];
    } catch {
      return [];
    }
  });
}

describe('fn up --workers 2', () => {
  let platform: RunningPlatform;
  let api: Api;
  let pids: number[];

  before(async () => {
    platform = await startPlatform(await newHome(), { args: ['--workers', '2', '--pool', '0', '--no-nats'], timeoutMs: 60_000 });
    api = new Api(platform.url, platform.token);
    const listening = lines(platform).find((l) => l.msg === 'listening');
    assert.equal(listening?.workers, 2, 'fn up says 2 workers serve the port');
    pids = listening!.workerPids!;
    assert.equal(new Set(pids).size, 2);
    assert.ok(!pids.includes(platform.child.pid!), 'the workers are processes of their own');
  });
  after(async () => {
    await platform?.stop();
  });

  it('answers calls from both workers, and the management API through them', { timeout: 120_000 }, async () => {
    const image = await api.upload(hello, 'handler.js');
    await api.deploy({ name: 'hello', image, scale: { min: 1, max: 1 } });
    await waitFor(async () => (await api.status('hello')).availableReplicas === 1, { what: 'hello ready', timeoutMs: 30_000 });
    const answers = await Promise.all(Array.from({ length: 10 }, () => call(`${api.url}/function/hello`)));
    assert.deepEqual(answers.map((a) => a.status), Array(10).fill(200));
    // Each answer's request log line, written by the worker that served it.
    const served = await waitFor(() => {
      const seen = lines(platform).filter((l) => l.url === '/function/hello' && l.status === 200 && l.pid !== undefined);
      return seen.length >= 10 && seen;
    }, { what: '10 request log lines', timeoutMs: 10_000 });
    const by = new Set(served.map((l) => l.pid));
    assert.deepEqual([...by].sort(), [...pids].sort(), `both workers served calls (log lines by pid: ${JSON.stringify(served.map((l) => l.pid))})`);
    const list = (await api.ok('GET', '/system/functions')) as { name: string }[];
    assert.deepEqual(list.map((f) => f.name), ['hello']);
    // The workers report their calls to the primary, whose management API counts them.
    await waitFor(async () => ((await api.ok('GET', '/system/function/hello')) as { invocationCount: number }).invocationCount >= 10, {
      what: 'the 10 calls counted',
      timeoutMs: 10_000,
    });
  });

  it('never has two calls in the handler of a function of containerConcurrency 1', { timeout: 120_000 }, async () => {
    const image = await api.upload(counter, 'handler.js');
    await api.deploy({ name: 'counter', image, timeout: '60s', scale: { min: 1, max: 1, containerConcurrency: 1 } });
    await waitFor(async () => (await api.status('counter')).availableReplicas === 1, { what: 'counter ready', timeoutMs: 30_000 });
    const answers = await Promise.all(Array.from({ length: 20 }, () => call(`${api.url}/function/counter?ms=50`)));
    assert.deepEqual(answers.map((a) => a.status), Array(20).fill(200), answers.map((a) => a.body).join('\n'));
    const seen = answers.map((a) => (JSON.parse(a.body) as { seen: number; most: number }).most);
    assert.equal(Math.max(...seen), 1, 'at most one call in the handler at once');
    const callers = new Set(lines(platform).filter((l) => l.url?.startsWith('/function/counter') && l.pid !== undefined).map((l) => l.pid));
    assert.equal(callers.size, 2, 'the calls came through both workers');
  });

  it('scales a function from zero through the workers', { timeout: 120_000 }, async () => {
    const image = await api.upload(hello, 'handler.js');
    await api.deploy({ name: 'cold', image, timeout: '60s', scale: { min: 0, max: 2, initial: 0 } });
    await waitFor(async () => (await api.status('cold')).replicas === 0, { what: 'cold at zero', timeoutMs: 10_000 });
    const answers = await Promise.all(Array.from({ length: 6 }, () => call(`${api.url}/function/cold`)));
    assert.deepEqual(answers.map((a) => a.status), Array(6).fill(200));
    assert.ok((await api.status('cold')).replicas >= 1);
  });

  it('tells every worker at once of a deleted function', { timeout: 60_000 }, async () => {
    await api.ok('DELETE', '/system/functions', { functionName: 'cold' });
    // No wait: the workers' catalogs forgot "cold" before the deletion was answered.
    const answers = await Promise.all(Array.from({ length: 6 }, () => call(`${api.url}/function/cold`)));
    assert.deepEqual(answers.map((a) => a.status), Array(6).fill(404));
  });

  it('starts a killed worker again, and the port keeps answering', { timeout: 120_000 }, async () => {
    const [victim, survivor] = pids as [number, number];
    process.kill(victim, 'SIGKILL');
    await waitFor(() => lines(platform).some((l) => l.msg === 'gateway worker exited: starting another' && l.pid === victim), { what: 'the primary seeing the worker exit', timeoutMs: 10_000 });
    const during = await Promise.all(Array.from({ length: 6 }, () => call(`${api.url}/function/hello`)));
    assert.deepEqual(during.map((a) => a.status), Array(6).fill(200), 'answered while a worker restarts');
    const restarted = await waitFor(() => lines(platform).find((l) => l.msg === 'gateway worker listening' && l.pid !== undefined && !pids.includes(l.pid)), {
      what: 'a new worker listening',
      timeoutMs: 30_000,
    });
    assert.notEqual(restarted.pid, survivor);
    // The new worker serves too: new connections go round-robin over both.
    await waitFor(async () => {
      await call(`${api.url}/function/hello`);
      return lines(platform).some((l) => l.url === '/function/hello' && l.pid === restarted.pid);
    }, { what: 'a call served by the new worker', timeoutMs: 20_000 });
  });

  it('stops every worker with the primary', { timeout: 60_000 }, async () => {
    const now = (lines(platform).filter((l) => l.msg === 'gateway worker listening').map((l) => l.pid!));
    assert.equal(await platform.stop('SIGTERM'), 0);
    for (const pid of now) assert.equal(alive(pid), false, `worker ${pid} is gone`);
  });
});

describe('fn up --workers refuses a count that is not one', () => {
  for (const bad of ['0', 'x', '1.5', '100000']) {
    it(`--workers ${bad}`, { timeout: 30_000 }, async () => {
      const home = await newHome();
      const failed = await exec(process.execPath, [fnBin, 'up', '--port', '0', '--home', home, '--workers', bad], { timeout: 20_000 }).then(
        () => assert.fail('fn up started'),
        (err: { code?: number; stderr?: string }) => err,
      );
      assert.equal(failed.code, 2, 'a usage error');
      assert.match(failed.stderr ?? '', new RegExp(`--workers must be a whole number from 1 to \\d+, got "${bad.replace('.', '\\.')}"`));
    });
  }
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
