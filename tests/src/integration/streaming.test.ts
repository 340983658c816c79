// Bodies stream through the gateway both ways with bounded memory, on the real embedded platform
// (`fn up`): a 1 GiB upload and a 1 GiB answer pass while the platform's resident memory stays
// within 50 MiB of what it was before, and server-sent events and a chunked answer arrive as the
// function writes them, not when it is done.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { waitFor } from '@kubefn/platform/testing';
import { Api } from '../support/api.js';
import { newHome, repoRoot, startPlatform, type RunningPlatform } from '../support/platform-process.js';

const fixture = path.join(repoRoot, 'tests', 'fixtures', 'stream');
const GiB = 1024 * 1024 * 1024;
const MiB = 1024 * 1024;

/** Resident memory of `pid`, bytes. */
function rss(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0) * 1024;
}

/** The largest resident size of `pid` while `work` runs, sampled every 20 ms. */
async function peakRss<T>(pid: number, work: () => Promise<T>): Promise<{ result: T; peak: number }> {
  let peak = rss(pid);
  const timer = setInterval(() => (peak = Math.max(peak, rss(pid))), 20);
  try {
    const result = await work();
    return { result, peak: Math.max(peak, rss(pid)) };
  } finally {
    clearInterval(timer);
  }
}

/** `total` bytes in 64 KiB chunks, made as they are read. */
function generated(total: number): Readable {
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  return Readable.from(
    (function* () {
      for (let left = total; left > 0; left -= chunk.length) yield left >= chunk.length ? chunk : chunk.subarray(0, left);
    })(),
    { objectMode: false },
  );
}

/** Reads a streamed answer, noting when each `separator`-ended piece arrived (ms since `t0`). */
async function arrivals(body: AsyncIterable<Buffer>, separator: string, t0: number): Promise<{ text: string; at: number }[]> {
  const out: { text: string; at: number }[] = [];
  let buffered = '';
  for await (const part of body) {
    buffered += part.toString('utf8');
    let i: number;
    while ((i = buffered.indexOf(separator)) >= 0) {
      out.push({ text: buffered.slice(0, i), at: performance.now() - t0 });
      buffered = buffered.slice(i + separator.length);
    }
  }
  return out;
}

describe('streaming through the gateway (fn up)', () => {
  let platform: RunningPlatform;
  let api: Api;
  let idle: number;
  let pid: number;

  before(async () => {
    platform = await startPlatform(await newHome(), { args: ['--max-body', '1Gi'] });
    api = new Api(platform.url, platform.token);
    pid = platform.child.pid!;
    const image = await api.upload(fixture, 'handler.js');
    await api.deploy({ name: 'stream', image, timeout: '300s', scale: { min: 1, max: 1 } });
    await waitFor(async () => (await api.status('stream')).availableReplicas === 1, { what: 'stream ready', timeoutMs: 30_000 });
    // Warm both directions up with small bodies, then take the resident size at rest.
    for (let i = 0; i < 20; i++) {
      const up = await request(`${api.url}/function/stream/upload`, { method: 'POST', body: generated(MiB), headers: { 'content-length': String(MiB) } });
      await up.body.text();
      const down = await request(`${api.url}/function/stream/download?bytes=${MiB}`);
      await down.body.arrayBuffer();
    }
    idle = rss(pid);
  });
  after(async () => {
    await platform?.stop();
  });

  it('passes a 1 GiB upload to the function with the platform within 50 MiB of its resident size at rest', { timeout: 240_000 }, async (t) => {
    const { result, peak } = await peakRss(pid, async () => {
      const res = await request(`${api.url}/function/stream/upload`, { method: 'POST', body: generated(GiB), headers: { 'content-length': String(GiB), 'content-type': 'application/octet-stream' } });
      return { status: res.statusCode, body: await res.body.text() };
    });
    assert.equal(result.status, 200, result.body);
    assert.deepEqual(JSON.parse(result.body), { bytes: GiB });
    t.diagnostic(`platform resident size: ${Math.round(idle / MiB)} MiB at rest, ${Math.round(peak / MiB)} MiB at its peak`);
    assert.ok(peak - idle < 50 * MiB, `resident size ${Math.round(peak / MiB)} MiB at its peak, ${Math.round(idle / MiB)} MiB at rest`);
  });

  it('passes a 1 GiB answer to the caller with the platform within 50 MiB of its resident size at rest', { timeout: 240_000 }, async (t) => {
    const { result, peak } = await peakRss(pid, async () => {
      const res = await request(`${api.url}/function/stream/download?bytes=${GiB}`);
      let bytes = 0;
      for await (const part of res.body) bytes += (part as Buffer).length;
      return { status: res.statusCode, bytes };
    });
    assert.equal(result.status, 200);
    assert.equal(result.bytes, GiB);
    t.diagnostic(`platform resident size: ${Math.round(idle / MiB)} MiB at rest, ${Math.round(peak / MiB)} MiB at its peak`);
    assert.ok(peak - idle < 50 * MiB, `resident size ${Math.round(peak / MiB)} MiB at its peak, ${Math.round(idle / MiB)} MiB at rest`);
  });

  it('delivers server-sent events as the function writes them', { timeout: 60_000 }, async () => {
    const t0 = performance.now();
    const res = await request(`${api.url}/function/stream/sse?events=5&ms=300`, { headers: { accept: 'text/event-stream' } });
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['content-type'], 'text/event-stream');
    const events = await arrivals(res.body, '\n\n', t0);
    assert.deepEqual(events.map((e) => /^id: (\d+)\nevent: tick\ndata: \d+$/.exec(e.text)?.[1]), ['1', '2', '3', '4', '5']);
    // Written 300 ms apart over 1.2 s: held back until the end, they would all arrive at once.
    const span = events.at(-1)!.at - events[0]!.at;
    assert.ok(span > 600, `the events arrived over ${Math.round(span)} ms (at ${events.map((e) => Math.round(e.at)).join(', ')} ms)`);
  });

  it('delivers a chunked answer part by part', { timeout: 60_000 }, async () => {
    const t0 = performance.now();
    const res = await request(`${api.url}/function/stream/chunked?parts=4&ms=300`);
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['transfer-encoding'], 'chunked');
    const parts = await arrivals(res.body, '\n', t0);
    assert.deepEqual(parts.map((p) => p.text.split(' ').slice(0, 2).join(' ')), ['part 1', 'part 2', 'part 3', 'part 4']);
    const span = parts.at(-1)!.at - parts[0]!.at;
    assert.ok(span > 450, `the parts arrived over ${Math.round(span)} ms (at ${parts.map((p) => Math.round(p.at)).join(', ')} ms)`);
  });
});
