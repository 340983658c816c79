import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadFailedExitCode, parseLoadFailure } from '@kubefn/platform/runtime-contract';
import { RuntimeChild, call, withDeadline, type RawResponse } from './testkit.js';

/** The load failure the child reported on stderr. */
function reportedFailure(replica: RuntimeChild) {
  const failure = parseLoadFailure(replica.stderr.join(''));
  assert.ok(failure, `a load-failed line on stderr, got: ${replica.stderr.join('')}`);
  return failure;
}

describe('run() in a real child process', () => {
  it('runs init() once, then reports ready over IPC and on stdout', async (t) => {
    const replica = new RuntimeChild('replica.mjs');
    t.after(() => replica.kill());
    const ready = await replica.waitForMessage('kubefn:ready');
    assert.ok(ready.port > 0 && ready.adminPort > 0 && ready.port !== ready.adminPort);

    const readyLine = await replica.logs.waitFor((l) => l.msg === 'ready', 'the ready log line');
    assert.equal(readyLine.level, 'info');
    assert.equal(readyLine.port, ready.port);
    assert.equal(readyLine.adminPort, ready.adminPort);
    assert.equal(readyLine.function, 'fixture');
    assert.equal(readyLine.instance, 'fixture-0');
    const initIndex = replica.logs.lines.findIndex((l) => l.msg === 'init ran');
    assert.ok(initIndex >= 0 && initIndex < replica.logs.lines.indexOf(readyLine), 'init() finished before ready');

    assert.deepEqual(JSON.parse((await call(ready.port)).body), { inits: 1 });
    assert.equal((await call(ready.adminPort, { path: '/readyz' })).status, 200);
  });

  it('drains on SIGTERM: every call in flight completes, a late one is served or refused at connect, exit 0', async (t) => {
    const replica = new RuntimeChild('replica.mjs');
    t.after(() => replica.kill());
    const { port, adminPort } = await replica.waitForMessage('kubefn:ready');

    const n = 8;
    const calls = Array.from({ length: n }, () => call(port, { path: '/slow' }));
    await replica.logs.waitForCount((l) => l.msg === 'started', n, `${n} calls to start`);
    replica.child.kill('SIGTERM');
    await replica.waitForMessage('kubefn:draining');

    // A call that arrives while the replica drains is served and its connection closed (during
    // the linger), or refused at connect (after it): never cut mid-call.
    const late = await call(port, { path: '/' }).then(
      (res): RawResponse | Error => res,
      (err: Error) => err,
    );
    if (late instanceof Error) {
      assert.match((late as NodeJS.ErrnoException).code ?? '', /ECONNREFUSED/);
    } else {
      assert.equal(late.status, 200);
      assert.equal(late.headers.connection, 'close');
    }
    // The calls are held, so the drain is still under way: readiness says no.
    assert.equal((await call(adminPort, { path: '/readyz' })).status, 503);
    replica.child.send('release');

    for (const res of await Promise.all(calls)) {
      assert.equal(res.status, 200);
      assert.equal(res.body, 'done');
    }
    const exit = await withDeadline(replica.exited, 'the child to exit');
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.ok(replica.logs.lines.some((l) => l.msg === 'stopped'));
  });

  it('reports a load failure without ever being ready when init() throws', async (t) => {
    const replica = new RuntimeChild('init-fails.mjs');
    t.after(() => replica.kill());
    const exit = await withDeadline(replica.exited, 'the child to exit');
    assert.equal(exit.code, loadFailedExitCode);
    const reported = reportedFailure(replica);
    assert.equal(reported.stage, 'init');
    assert.equal(reported.message, 'init boom: database unreachable');
    assert.match(reported.location ?? '', /init-fails\.mjs:7:\d+$/, 'the line of the throw in init()');
    assert.equal(replica.messages.length, 0, 'no IPC message at all');
    assert.ok(!replica.logs.lines.some((l) => l.msg === 'ready'));
    const failure = replica.logs.lines.find((l) => l.level === 'error');
    assert.equal(failure?.msg, 'init() failed');
    assert.match((failure?.err as { stack: string }).stack, /init boom: database unreachable/);
  });

  it('reports a load failure with a clear message when the module has no handler', async (t) => {
    const replica = new RuntimeChild('no-handler.mjs');
    t.after(() => replica.kill());
    const exit = await withDeadline(replica.exited, 'the child to exit');
    assert.equal(exit.code, loadFailedExitCode);
    const reported = reportedFailure(replica);
    assert.equal(reported.stage, 'export');
    assert.match(reported.message, /it has no default export/);
    assert.equal(reported.location, undefined, 'no line of the user\'s to point at');
    assert.equal(replica.messages.length, 0);
    const failure = replica.logs.lines.find((l) => l.level === 'error');
    assert.match(failure?.msg ?? '', /default export that is a function .* or an object with a `fetch\(request, context\)` method/);
  });

  it('reports a load failure with the file and line when the handler module throws on import', async (t) => {
    const replica = new RuntimeChild('import-fails.mjs');
    t.after(() => replica.kill());
    const exit = await withDeadline(replica.exited, 'the child to exit');
    assert.equal(exit.code, loadFailedExitCode);
    assert.equal(replica.messages.length, 0);
    const reported = reportedFailure(replica);
    assert.equal(reported.stage, 'import');
    assert.equal(reported.message, 'no region configured: undefined');
    assert.equal(reported.location, 'throws-on-import.mjs:3:7', 'relative to the entry module, line and column of the throw');
  });

  it('exits 1 with a clear message on a bad environment', async (t) => {
    const replica = new RuntimeChild('replica.mjs', { KUBEFN_TIMEOUT_MS: 'soon' });
    t.after(() => replica.kill());
    const exit = await withDeadline(replica.exited, 'the child to exit');
    assert.equal(exit.code, 1);
    assert.match(replica.logs.lines.find((l) => l.level === 'error')?.msg ?? '', /KUBEFN_TIMEOUT_MS="soon"/);
  });

  for (const [path, text, msg] of [
    ['/crash-later', 'background boom', 'uncaught exception'],
    ['/reject-later', 'unhandled boom', 'unhandled promise rejection'],
  ] as const) {
    it(`exits non-zero on ${msg} in a handler's background work`, async (t) => {
      // Behind the load guard, as a bundle runs: once run() took over, a crash is a crash.
      const replica = new RuntimeChild('guarded-replica.mjs');
      t.after(() => replica.kill());
      const { port } = await replica.waitForMessage('kubefn:ready');
      // The crash may win the race with the response; either way the process must go.
      await call(port, { path }).catch(() => undefined);
      const exit = await withDeadline(replica.exited, 'the child to exit');
      assert.equal(exit.code, 1);
      const crash = replica.logs.lines.find((l) => l.msg === msg);
      assert.ok(crash, `a "${msg}" log line`);
      assert.equal(crash.level, 'error');
      assert.match((crash.err as { stack: string }).stack, new RegExp(`Error: ${text}\\n\\s+at `));
    });
  }
});
