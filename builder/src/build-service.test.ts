import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, realpath, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import Fastify from 'fastify';
import { tarOf, type TarTestEntry } from './testing/tar.js';
import { isKubefnError, type ErrorBody } from '@kubefn/platform';
import { waitFor } from '@kubefn/platform/testing';
import { BuildEventWriter, maxLogLineBytes, maxLogLines } from './build-events.js';
import { buildServicePlugin, readBuildEvents, type BuildEvent, type BuildRequest, type BuildServiceOptions } from './build-service.js';
import { bundleFunction } from './bundle.js';
import { packSource } from './source-pack.js';

const MiB = 1024 * 1024;

interface Service {
  url: string;
  /** Holds scratch/, out/ and src/ and nothing else. */
  root: string;
  scratch: string;
  /** Bundle files the real build wrote, in order. */
  bundles: string[];
  /** Closes the server; idempotent. */
  close(): Promise<void>;
}

type Build = BuildServiceOptions['build'];

/** The real build, as the server's: esbuild bundles the upload, confined to it, into a directory outside the scratch dir. */
function bundleBuild(svc: Service): Build {
  return async ({ dir, handler, log }) => {
    log(`bundling ${handler}`);
    await mkdir(path.join(svc.root, 'out'), { recursive: true });
    const outDir = await mkdtemp(path.join(svc.root, 'out', 'b-'));
    const bundle = await bundleFunction({ dir, handler, outDir, confine: true });
    for (const warning of bundle.warnings) log(`warning: ${warning}`);
    svc.bundles.push(bundle.file);
    log(`bundled ${bundle.bytes} bytes`);
    return { image: `bundle:${bundle.digest}`, digest: bundle.digest };
  };
}

/** A build service on a real socket; `build` defaults to the real bundler. */
async function withService(
  options: Partial<BuildServiceOptions> & { wrap?: (real: Build) => Build },
  fn: (svc: Service) => Promise<void>,
): Promise<void> {
  const root = await realpath(await mkdtemp(path.join(tmpdir(), 'kubefn-build-service-test-')));
  // Node's fetch opens a spare connection after an abort, which would hold an 'idle' close for
  // the 60 s headers timeout; every request here has finished by the time the test closes.
  const app = Fastify({ forceCloseConnections: true });
  let closing: Promise<void> | undefined;
  const close = () => (closing ??= app.close());
  const svc: Service = { url: '', root, scratch: path.join(root, 'scratch'), bundles: [], close };
  const { wrap = (b) => b, ...rest } = options;
  try {
    await app.register(buildServicePlugin({ scratchDir: svc.scratch, build: wrap(bundleBuild(svc)), ...rest }));
    await app.listen({ host: '127.0.0.1', port: 0 });
    svc.url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    await fn(svc);
  } finally {
    await close();
    await rm(root, { recursive: true, force: true });
  }
}

/** A packed function directory (under the service root, outside the scratch dir). */
async function functionArchive(svc: Service, files: Record<string, string>): Promise<Buffer> {
  const dir = path.join(svc.root, 'src');
  await rm(dir, { recursive: true, force: true });
  for (const [rel, content] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
    await writeFile(path.join(dir, rel), content);
  }
  return (await packSource(dir)).archive;
}

const hello = { 'handler.js': "export default () => 'hi';\n" };

function post(svc: Service, body: Uint8Array, query = 'name=hello', init: RequestInit = {}): Promise<Response> {
  return fetch(`${svc.url}/system/builds?${query}`, {
    method: 'POST',
    body,
    headers: { 'content-type': 'application/gzip' },
    ...init,
  });
}

async function eventsOf(res: Response): Promise<BuildEvent[]> {
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'application/x-ndjson');
  const events: BuildEvent[] = [];
  for await (const e of readBuildEvents(res.body!)) events.push(e);
  return events;
}

/** Asserts the stream is log lines, then exactly one final event, and returns that. */
function finalEvent(events: BuildEvent[]): BuildEvent {
  assert.ok(events.length >= 2, JSON.stringify(events));
  for (const e of events.slice(0, -1)) assert.equal(e.type, 'log', JSON.stringify(e));
  return events.at(-1)!;
}

async function expectRefused(res: Response, status: number, code: string): Promise<ErrorBody> {
  const body = (await res.json()) as ErrorBody;
  assert.equal(res.status, status, JSON.stringify(body));
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
  assert.equal(body.code, code, JSON.stringify(body));
  assert.equal(typeof body.message, 'string');
  return body;
}

/** Every build cleaned up: the scratch dir is empty and nothing appeared beside it. */
async function assertNothingLeft(svc: Service, own: string[] = []): Promise<void> {
  await waitFor(async () => (await readdir(svc.scratch)).length === 0, { what: 'an empty scratch dir', timeoutMs: 10_000 });
  const extra = (await readdir(svc.root)).filter((n) => !['scratch', 'out', 'src', ...own].includes(n));
  assert.deepEqual(extra, []);
}

type Entry = TarTestEntry;

/** A build callback that waits for its signal to abort, recording the signal. */
function awaitAbort(seen: { signal?: AbortSignal }): Build {
  return async ({ log, signal }: BuildRequest) => {
    log('waiting for the signal');
    seen.signal = signal;
    return new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(new Error('stopped')), { once: true }));
  };
}

/** Holds every build (the real one) until opened, counting how many started. */
class Gate {
  started = 0;
  open!: () => void;
  readonly #opened = new Promise<void>((resolve) => (this.open = resolve));

  readonly wrap = (real: Build): Build => async (req) => {
    this.started++;
    await this.#opened;
    return real(req);
  };
}

describe('build service', () => {
  it('builds a function and streams log lines, then the result', async () => {
    await withService({}, async (svc) => {
      const events = await eventsOf(await post(svc, await functionArchive(svc, hello)));
      const last = finalEvent(events);
      assert.equal(last.type, 'result', JSON.stringify(last));
      const logs = events.filter((e) => e.type === 'log').map((e) => e.message);
      assert.deepEqual(logs.slice(0, 2), ['extracted 1 file (27 bytes)', 'bundling handler.js']);
      for (const e of events) if (e.type === 'log') assert.equal(new Date(e.time).toISOString(), e.time);

      assert.equal(svc.bundles.length, 1);
      const digest = `sha256:${createHash('sha256').update(await readFile(svc.bundles[0]!)).digest('hex')}`;
      assert.equal(last.digest, digest);
      assert.equal(last.image, `bundle:${digest}`);
      assert.equal(typeof last.durationMs, 'number');
      await assertNothingLeft(svc);
    });
  });

  it('ends with a BUILD_FAILED error event naming file:line for a syntax error', async () => {
    await withService({}, async (svc) => {
      const archive = await functionArchive(svc, { 'handler.js': 'export default () => {\n  return 1 +;\n};\n' });
      const last = finalEvent(await eventsOf(await post(svc, archive)));
      assert.equal(last.type, 'error');
      assert.equal(last.error.code, 'BUILD_FAILED');
      assert.match(last.error.message, /handler\.js:2:\d+/);
      await assertNothingLeft(svc);
    });
  });

  it('refuses an upload that reads files of the server, and no event holds their content', async (t) => {
    const secret = 'root:x:0:0';
    const cases: { what: string; files: Record<string, string>; message: RegExp }[] = [
      {
        what: 'an absolute import',
        files: { 'handler.js': "import pw from '/etc/passwd';\nexport default () => pw;\n" },
        message: /handler\.js:1:\d+: handler\.js imports "\/etc\/passwd", which is outside the function directory/,
      },
      {
        what: 'a relative import that climbs out, as text',
        files: { 'handler.js': "import pw from './lib/pw.js';\nexport default () => pw;\n", 'lib/pw.js': `export { default } from '${'../'.repeat(30)}etc/passwd.txt';\n` },
        message: /lib\/pw\.js imports "(\.\.\/)+etc\/passwd\.txt", which is outside the function directory/,
      },
      {
        what: 'a tsconfig.json extending a file outside',
        files: { ...hello, 'tsconfig.json': '{ "extends": "/etc/passwd" }\n' },
        message: /tsconfig\.json extends "\/etc\/passwd", which is outside the function directory/,
      },
    ];
    await withService({}, async (svc) => {
      // A file above the scratch directory, and a package.json there that esbuild cannot parse.
      await writeFile(path.join(svc.root, 'passwd.txt'), `${secret}:root:/root:/bin/bash\n`);
      cases.push({
        what: 'a relative import of a file above the scratch directory',
        files: { 'handler.js': "import pw from '../../../passwd.txt';\nexport default () => pw;\n" },
        message: /handler\.js imports "\.\.\/\.\.\/\.\.\/passwd\.txt", which is outside the function directory/,
      });
      for (const c of cases) {
        await t.test(c.what, async () => {
          const res = await post(svc, await functionArchive(svc, c.files));
          const text = await res.text();
          assert.ok(!text.includes(secret), `the server's file leaked:\n${text}`);
          const last = finalEvent(await eventsOf(new Response(text, { headers: res.headers })));
          assert.equal(last.type, 'error', JSON.stringify(last));
          assert.equal(last.error.code, 'BUILD_FAILED');
          assert.match(last.error.message, c.message);
          assert.match(last.error.hint ?? '', /reads only the uploaded files/);
          assert.equal(svc.bundles.length, 0);
        });
      }
      await t.test('a package.json above the scratch directory that does not parse', async () => {
        await writeFile(path.join(svc.root, 'package.json'), `${secret}:root:/root:/bin/bash\n`);
        const res = await post(svc, await functionArchive(svc, hello));
        const text = await res.text();
        assert.ok(!text.includes(secret), `the server's file leaked:\n${text}`);
        const last = finalEvent(await eventsOf(new Response(text, { headers: res.headers })));
        assert.equal(last.type, 'error', JSON.stringify(last));
        assert.match(last.error.message, /a problem in a file outside the function directory, "package\.json" \(its text is not shown/);
      });
      await assertNothingLeft(svc, ['passwd.txt', 'package.json']);
    });
  });

  it('applies no package.json or tsconfig.json above its scratch directory to the upload', async () => {
    await withService({}, async (svc) => {
      const files = { 'handler.js': "const greet = require('./greet.js');\nmodule.exports = () => greet('Ada');\n", 'greet.js': 'module.exports = (n) => `hi ${n}`;\n' };
      const clean = finalEvent(await eventsOf(await post(svc, await functionArchive(svc, files))));
      assert.equal(clean.type, 'result', JSON.stringify(clean));
      // The server's own: CommonJS read as ES modules, and every file strict, were they to apply.
      await writeFile(path.join(svc.root, 'package.json'), '{ "type": "module" }\n');
      await writeFile(path.join(svc.root, 'tsconfig.json'), '{ "compilerOptions": { "alwaysStrict": true } }\n');
      const events = await eventsOf(await post(svc, await functionArchive(svc, files)));
      const last = finalEvent(events);
      assert.equal(last.type, 'result', JSON.stringify(last));
      assert.deepEqual(events.filter((e) => e.type === 'log' && /warning/.test(e.message)), []);
      assert.equal(last.digest, clean.digest);
      await assertNothingLeft(svc, ['package.json', 'tsconfig.json']);
    });
  });

  it('refuses each hostile archive with its 4xx and a JSON body, and writes nothing outside', async (t) => {
    const tag = randomBytes(6).toString('hex');
    const escapes = [`/tmp/kubefn-escape-${tag}`, `/etc/kubefn-escape-${tag}`];
    const cases: { what: string; archive: () => Promise<Buffer>; status: number; code: string; message: RegExp }[] = [
      { what: '../x', archive: () => tarOf([{ name: '../escaped', body: 'x' }]), status: 400, code: 'BAD_REQUEST', message: /"\.\." component/ },
      { what: '../../x', archive: () => tarOf([{ name: 'a/../../../escaped', body: 'x' }]), status: 400, code: 'BAD_REQUEST', message: /"\.\." component/ },
      { what: 'absolute path', archive: () => tarOf([{ name: escapes[0]!, body: 'x' }]), status: 400, code: 'BAD_REQUEST', message: /absolute path/ },
      {
        what: 'symlink to /etc',
        archive: () => tarOf([{ name: 'etc', type: 'symlink', linkname: '/etc' }, { name: `etc/kubefn-escape-${tag}`, body: 'x' }]),
        status: 400,
        code: 'BAD_REQUEST',
        message: /symlink whose target "\/etc"/,
      },
      {
        what: 'hard link to /etc/passwd',
        archive: () => tarOf([{ name: 'passwd', type: 'link', linkname: '/etc/passwd' }]),
        status: 400,
        code: 'BAD_REQUEST',
        message: /hard link whose target "\/etc\/passwd"/,
      },
      {
        what: 'char device',
        archive: () => tarOf([{ name: 'null', type: 'character-device', devmajor: 1, devminor: 3 }]),
        status: 400,
        code: 'BAD_REQUEST',
        message: /character-device entry/,
      },
      {
        what: 'too many entries',
        archive: () => tarOf(Array.from({ length: 10 }, (_, i) => ({ name: `f${i}`, body: 'x' }))),
        status: 413,
        code: 'BODY_TOO_LARGE',
        message: /limit of 5 entries/,
      },
      {
        what: 'gzip bomb',
        archive: async () => gzipSync(Buffer.alloc(50 * MiB)),
        status: 413,
        code: 'BODY_TOO_LARGE',
        message: /expands/,
      },
      {
        // Refused at its first entry: the 3 MiB after it are never extracted, only discarded.
        what: 'a refusal early in a large upload',
        archive: () => tarOf([{ name: '../escaped', body: 'x' }, { name: 'big', body: randomBytes(3 * MiB) }]),
        status: 400,
        code: 'BAD_REQUEST',
        message: /"\.\." component/,
      },
    ];
    const built: string[] = [];
    const limits = { maxEntries: 5, maxBytes: 8 * MiB, maxCompressedBytes: 8 * MiB };
    const wrap = (real: Build): Build => (req) => {
      built.push(req.dir);
      return real(req);
    };
    await withService({ limits, wrap }, async (svc) => {
      for (const c of cases) {
        await t.test(c.what, async () => {
          const archive = await c.archive();
          const res = await post(svc, archive, 'name=hostile', { headers: { 'content-type': 'application/x-tar' } });
          const body = await expectRefused(res, c.status, c.code);
          assert.match(body.message, c.message);
          assert.deepEqual(await readdir(svc.scratch), [], 'scratch dir removed before the answer');
          await assertNothingLeft(svc);
          for (const p of [...escapes, path.join(svc.root, 'escaped')]) assert.equal(existsSync(p), false, `${p} was created`);
        });
      }
    });
    assert.deepEqual(built, [], 'no hostile archive reached the build');
  });

  it('refuses an invalid name or handler with 400 before extracting', async () => {
    await withService({}, async (svc) => {
      const archive = await functionArchive(svc, hello);
      const invalid = await expectRefused(await post(svc, archive, 'name=Not_Valid'), 400, 'INVALID_NAME');
      assert.match(invalid.message, /invalid function name "Not_Valid"/);
      assert.match(invalid.hint ?? '', /lower-case/);
      await expectRefused(await post(svc, archive, ''), 400, 'BAD_REQUEST');
      await expectRefused(await post(svc, archive, 'name=a&name=b'), 400, 'BAD_REQUEST');
      for (const handler of ['../handler.js', 'src/../../x.js', '/etc/passwd', 'C:\\x.js', 'a\0b.js', 'x'.repeat(1025), '']) {
        const query = `name=hello&handler=${encodeURIComponent(handler)}`;
        const body = await expectRefused(await post(svc, archive, query), 400, 'BAD_REQUEST');
        assert.match(body.message, /^handler /);
      }
      assert.deepEqual(await readdir(svc.scratch), []);
      assert.deepEqual(svc.bundles, []);
    });
  });

  it('refuses a Content-Length over the limit with 413 without reading the body', async () => {
    await withService({ limits: { maxCompressedBytes: 1024 } }, async (svc) => {
      const body = await expectRefused(await post(svc, randomBytes(4096)), 413, 'BODY_TOO_LARGE');
      assert.match(body.message, /4096 bytes is over the 1024 byte limit/);

      // Declares 10 MiB and sends none of it: the answer must not wait for the body.
      const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
        const req = http.request(`${svc.url}/system/builds?name=hello`, {
          method: 'POST',
          headers: { 'content-type': 'application/gzip', 'content-length': String(10 * MiB) },
        });
        req.on('response', resolve).on('error', reject).flushHeaders();
      });
      const chunks: Buffer[] = [];
      for await (const c of res) chunks.push(c as Buffer);
      assert.equal(res.statusCode, 413);
      assert.equal(res.headers.connection, 'close');
      assert.equal((JSON.parse(Buffer.concat(chunks).toString()) as ErrorBody).code, 'BODY_TOO_LARGE');
      await assertNothingLeft(svc);
    });
  });

  it('answers 415 for a body that is not an archive type', async () => {
    await withService({}, async (svc) => {
      const res = await post(svc, Buffer.from('{}'), 'name=hello', { headers: { 'content-type': 'application/json' } });
      assert.equal(res.status, 415);
      await res.body?.cancel();
    });
  });

  it('answers QUEUE_FULL past the queue, and completes the running build after', async () => {
    const gate = new Gate();
    await withService({ maxConcurrentBuilds: 1, maxQueued: 0, wrap: gate.wrap }, async (svc) => {
      const archive = await functionArchive(svc, hello);
      const first = await post(svc, archive);
      await waitFor(() => gate.started === 1, { what: 'the first build to start' });
      const body = await expectRefused(await post(svc, archive), 503, 'QUEUE_FULL');
      assert.match(body.message, /build queue full/);
      gate.open();
      assert.equal(finalEvent(await eventsOf(first)).type, 'result');
      assert.equal(gate.started, 1);
      await assertNothingLeft(svc);
    });
  });

  it('queues up to maxQueued builds and runs them in turn', async () => {
    const gate = new Gate();
    await withService({ maxConcurrentBuilds: 1, maxQueued: 1, wrap: gate.wrap }, async (svc) => {
      const archive = await functionArchive(svc, hello);
      const first = await post(svc, archive);
      await waitFor(() => gate.started === 1, { what: 'the first build to start' });
      // One of these two waits for the slot (its response cannot start before the gate opens);
      // the other finds the queue full.
      const pending = [post(svc, archive), post(svc, archive)];
      const refused = await Promise.race(pending);
      await expectRefused(refused, 503, 'QUEUE_FULL');
      gate.open();
      const queued = (await Promise.all(pending)).find((r) => r !== refused)!;
      assert.equal(finalEvent(await eventsOf(first)).type, 'result');
      assert.equal(finalEvent(await eventsOf(queued)).type, 'result');
      assert.equal(gate.started, 2);
      await assertNothingLeft(svc);
    });
  });

  it('aborts a build past buildTimeoutMs with DEADLINE_EXCEEDED and removes its scratch dir', async () => {
    const seen: { signal?: AbortSignal } = {};
    await withService({ buildTimeoutMs: 200, wrap: () => awaitAbort(seen) }, async (svc) => {
      const events = await eventsOf(await post(svc, await functionArchive(svc, hello)));
      const last = finalEvent(events);
      assert.equal(last.type, 'error');
      assert.equal(last.error.code, 'DEADLINE_EXCEEDED');
      assert.match(last.error.message, /longer than 200 ms/);
      assert.ok(isKubefnError(seen.signal?.reason, 'DEADLINE_EXCEEDED'));
      await assertNothingLeft(svc);
    });
  });

  it('aborts the build through its signal when the client disconnects', async () => {
    const seen: { signal?: AbortSignal } = {};
    await withService({ wrap: () => awaitAbort(seen) }, async (svc) => {
      const client = new AbortController();
      const res = await post(svc, await functionArchive(svc, hello), 'name=hello', { signal: client.signal });
      const events = readBuildEvents(res.body!);
      assert.equal((await events.next()).value?.type, 'log');
      await waitFor(() => seen.signal, { what: 'the build to start' });
      client.abort();
      await waitFor(() => seen.signal?.aborted, { what: 'the build signal to abort' });
      await assertNothingLeft(svc);
    });
  });

  it('aborts running builds with SHUTTING_DOWN on close, and closes once they are cleaned up', async () => {
    const seen: { signal?: AbortSignal } = {};
    await withService({ wrap: () => awaitAbort(seen) }, async (svc) => {
      const res = await post(svc, await functionArchive(svc, hello));
      await waitFor(() => seen.signal, { what: 'the build to start' });
      await svc.close();
      assert.ok(isKubefnError(seen.signal?.reason, 'SHUTTING_DOWN'));
      assert.deepEqual(await readdir(svc.scratch), []);
      await res.body?.cancel().catch(() => undefined);
    });
  });
});

describe('build events', () => {
  it('bounds the log: lines cut to 4 KiB, at most 10 000 lines then one note', async () => {
    const writer = new BuildEventWriter(() => new Date(0));
    writer.log('é'.repeat(3000)); // 6000 bytes, 2 per character
    for (let i = 1; i < maxLogLines + 5; i++) writer.log(`line ${i}`);
    writer.end({ type: 'result', image: 'bundle:x', digest: 'x', durationMs: 1 });
    writer.log('after the end');
    const events: BuildEvent[] = [];
    for await (const e of readBuildEvents(writer.readable)) events.push(e);
    assert.equal(events.length, maxLogLines + 2);
    const first = events[0]!;
    assert.ok(first.type === 'log' && Buffer.byteLength(first.message) <= maxLogLineBytes);
    assert.match(first.type === 'log' ? first.message : '', /^é+ \.\.\. \[truncated\]$/);
    assert.deepEqual(events[maxLogLines - 1], { type: 'log', time: new Date(0).toISOString(), message: `line ${maxLogLines - 1}` });
    assert.match(JSON.stringify(events[maxLogLines]), /log truncated: more than 10000 lines/);
    assert.equal(events.at(-1)!.type, 'result');
  });

  it('splits NDJSON across chunks, skipping blank lines and unknown types', async () => {
    const text = '{"type":"log","time":"t","message":"héllo"}\n\n{"type":"progress"}\n{"type":"error","error":{"code":"X","message":"m"}}';
    const bytes = Buffer.from(text);
    const chunks = Array.from({ length: bytes.length }, (_, i) => bytes.subarray(i, i + 1)); // splits inside "é" too
    const events: BuildEvent[] = [];
    for await (const e of readBuildEvents(Readable.from(chunks))) events.push(e);
    assert.deepEqual(events, [
      { type: 'log', time: 't', message: 'héllo' },
      { type: 'error', error: { code: 'X', message: 'm' } },
    ]);
  });

  it('refuses a line over 1 MiB and a line that is not JSON', async () => {
    const drain = async (chunks: Buffer[]) => {
      for await (const _ of readBuildEvents(Readable.from(chunks)));
    };
    await assert.rejects(drain([Buffer.alloc(MiB + 1, 'a')]), (err: unknown) => isKubefnError(err, 'INTERNAL') && /longer than/.test(err.message));
    await assert.rejects(drain([Buffer.from('not json\n')]), (err: unknown) => isKubefnError(err, 'INTERNAL') && /not JSON/.test(err.message));
  });
});
