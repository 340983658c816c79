// Driver log plumbing: bounded history, followers that cannot grow memory, and line splitting.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LineSplitter, LogBuffer, type LogLine } from '@kubefn/platform';

async function collect(lines: AsyncIterable<LogLine>, max = Infinity): Promise<LogLine[]> {
  const out: LogLine[] = [];
  for await (const line of lines) {
    out.push(line);
    if (out.length >= max) break;
  }
  return out;
}

describe('line splitter', () => {
  it('joins lines split across chunks and drops \\r', () => {
    const lines: string[] = [];
    const s = new LineSplitter((t) => lines.push(t));
    s.write(Buffer.from('hel'));
    s.write(Buffer.from('lo\r\nwor'));
    s.write(Buffer.from('ld\n\nlast'));
    assert.deepEqual(lines, ['hello', 'world', '']);
    s.end();
    assert.deepEqual(lines, ['hello', 'world', '', 'last']);
  });

  it('cuts long lines and says how much it dropped, holding no more than the limit', () => {
    const lines: string[] = [];
    const s = new LineSplitter((t) => lines.push(t), 8);
    for (let i = 0; i < 1000; i++) s.write(Buffer.from('abcdefghij'));
    s.write(Buffer.from('\nok\n'));
    assert.deepEqual(lines, [`abcdefgh [truncated ${10_000 - 8} bytes]`, 'ok']);
  });

  it('keeps multi-byte characters whole across chunks', () => {
    const lines: string[] = [];
    const s = new LineSplitter((t) => lines.push(t));
    const bytes = Buffer.from('héllo ✓\n');
    for (const b of bytes) s.write(Buffer.from([b]));
    assert.deepEqual(lines, ['héllo ✓']);
  });
});

describe('log buffer', () => {
  it('keeps the newest maxLines, filtered by since and tail', async () => {
    const logs = new LogBuffer('fn', { maxLines: 3 });
    const t0 = Date.parse('2024-01-01T00:00:00Z');
    for (let i = 0; i < 5; i++) logs.append('fn-1', 'stdout', `line ${i}`, new Date(t0 + i * 1000));
    const texts = (lines: LogLine[]) => lines.map((l) => l.text);
    assert.deepEqual(texts(logs.snapshot()), ['line 2', 'line 3', 'line 4']);
    assert.deepEqual(texts(logs.snapshot({ tail: 2 })), ['line 3', 'line 4']);
    assert.deepEqual(texts(logs.snapshot({ tail: 0 })), []);
    assert.deepEqual(texts(logs.snapshot({ since: new Date(t0 + 3000) })), ['line 3', 'line 4']);
    const [first] = await collect(logs.read({}, new AbortController().signal));
    assert.deepEqual(first, { name: 'fn', instance: 'fn-1', stream: 'stdout', text: 'line 2', timestamp: new Date(t0 + 2000).toISOString() });
  });

  it('bounds history by bytes too', () => {
    const logs = new LogBuffer('fn', { maxLines: 1000, maxBytes: 10_000 });
    for (let i = 0; i < 100; i++) logs.append('fn-1', 'stdout', 'x'.repeat(1000));
    const kept = logs.snapshot().length;
    assert.ok(kept >= 1 && kept <= 10, `kept ${kept} lines of 1000 bytes under a 10000 byte bound`);
  });

  it('follow gets history then new lines, and ends on abort', async () => {
    const logs = new LogBuffer('fn');
    logs.append('fn-1', 'stdout', 'old');
    const controller = new AbortController();
    const it = logs.read({ follow: true }, controller.signal)[Symbol.asyncIterator]();
    assert.equal((await it.next()).value?.text, 'old');
    const next = it.next();
    logs.append('fn-1', 'stderr', 'new');
    assert.equal((await next).value?.text, 'new');
    const pending = it.next();
    controller.abort();
    assert.equal((await pending).done, true);
  });

  it('follow ends when the buffer closes, after what it had queued', async () => {
    const logs = new LogBuffer('fn');
    const lines = collect(logs.read({ follow: true }, new AbortController().signal));
    await Promise.resolve();
    logs.append('fn-1', 'stdout', 'a');
    logs.close();
    logs.append('fn-1', 'stdout', 'after close');
    assert.deepEqual((await lines).map((l) => l.text), ['a']);
  });

  it('a follower that falls behind loses the oldest lines and is told so', async () => {
    const logs = new LogBuffer('fn', { followerMaxLines: 10 });
    const controller = new AbortController();
    const it = logs.read({ follow: true, tail: 0 }, controller.signal)[Symbol.asyncIterator]();
    const first = it.next();
    logs.append('fn-1', 'stdout', 'line 0');
    assert.equal((await first).value?.text, 'line 0');
    for (let i = 1; i <= 100; i++) logs.append('fn-1', 'stdout', `line ${i}`);
    const marker = (await it.next()).value as LogLine;
    assert.equal(marker.stream, 'system');
    assert.match(marker.text, /^90 log lines dropped/);
    const rest: string[] = [];
    for (let i = 0; i < 10; i++) rest.push(((await it.next()).value as LogLine).text);
    assert.deepEqual(rest, Array.from({ length: 10 }, (_, i) => `line ${91 + i}`));
    controller.abort();
    assert.equal((await it.next()).done, true);
  });
});
