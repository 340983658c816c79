// The live autoscaler config: a changed file is applied, a bad one refused with the last good one
// kept, and a file replaced by a rename (as editors save) is read again.

import assert from 'node:assert/strict';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { waitFor } from '@kubefn/platform/testing';
import { autoscalerConfigChanges, defaultAutoscalerConfig, loadAutoscalerConfig, type AutoscalerConfig } from './config.js';
import { LiveAutoscalerConfig, watchAutoscalerConfigFile, type ConfigFileWatch } from './live-config.js';

interface Line {
  level: 'info' | 'warn';
  msg: string;
  fields: Record<string, unknown> | undefined;
}

function recorder() {
  const lines: Line[] = [];
  const applied: (AutoscalerConfig | undefined)[] = [];
  const logger = {
    info: (msg: string, fields?: Record<string, unknown>) => lines.push({ level: 'info', msg, fields }),
    warn: (msg: string, fields?: Record<string, unknown>) => lines.push({ level: 'warn', msg, fields }),
  };
  return { lines, applied, logger };
}

describe('autoscalerConfigChanges', () => {
  it('names each changed key in the file’s terms, and nothing for the same config', () => {
    const next = { ...defaultAutoscalerConfig, stableWindowMs: 30_000, containerConcurrencyTargetDefault: 10 };
    assert.deepEqual(autoscalerConfigChanges(undefined, next), [
      { key: 'container-concurrency-target-default', from: 100, to: 10 },
      { key: 'stable-window', from: '1m', to: '30s' },
    ]);
    assert.deepEqual(autoscalerConfigChanges(next, { ...next }), []);
    assert.deepEqual(autoscalerConfigChanges(undefined, { ...defaultAutoscalerConfig }), [], 'the defaults written out are the defaults');
  });
});

describe('LiveAutoscalerConfig', () => {
  it('applies a config that differs with one info line, skips one that does not, and falls back to the defaults on undefined', () => {
    const r = recorder();
    const live = new LiveAutoscalerConfig({ initial: undefined, apply: (c) => r.applied.push(c), logger: r.logger });
    const config = { ...defaultAutoscalerConfig, stableWindowMs: 20_000 };
    assert.equal(live.offer(config, 'a.yaml'), true);
    assert.equal(live.offer({ ...config }, 'a.yaml'), false, 'the same values again apply nothing');
    assert.deepEqual(r.applied, [config]);
    assert.deepEqual(r.lines, [{ level: 'info', msg: 'autoscaler config applied', fields: { source: 'a.yaml', changed: { 'stable-window': '1m -> 20s' } } }]);
    assert.equal(live.offer(undefined, 'ConfigMap kubefn/kubefn-autoscaler'), true);
    assert.equal(r.applied.at(-1), undefined);
    assert.equal(r.lines.at(-1)?.fields?.config, 'built-in defaults');
  });

  it('takes a ConfigMap’s data: valid applied, invalid refused naming the key with the last good kept, deleted back to the defaults', () => {
    const r = recorder();
    const live = new LiveAutoscalerConfig({ initial: undefined, apply: (c) => r.applied.push(c), logger: r.logger });
    const source = 'ConfigMap kubefn/kubefn-autoscaler';
    assert.equal(live.offerData({ 'stable-window': '30s' }, source), true);
    assert.equal(live.offerData({ 'stable-window': 'soon' }, source), false);
    const warning = r.lines.at(-1);
    assert.equal(warning?.level, 'warn');
    assert.match(String((warning?.fields?.fields as string[])[0]), /^stable-window: must be a duration/);
    assert.equal(live.current?.stableWindowMs, 30_000, 'the last good config stays');
    assert.equal(live.offerData(undefined, source), true);
    assert.equal(live.current, undefined);
    assert.deepEqual(r.applied.map((c) => c?.stableWindowMs), [30_000, undefined]);
  });
});

describe('watchAutoscalerConfigFile', () => {
  let dir: string;
  let file: string;
  let watch: ConfigFileWatch | undefined;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'kubefn-live-config-'));
    file = path.join(dir, 'autoscaler.yaml');
  });
  after(async () => {
    watch?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('applies a good rewrite, refuses a bad one keeping the last good, and reads a file replaced by rename', async () => {
    await writeFile(file, 'stable-window: 60s\n');
    const r = recorder();
    const live = new LiveAutoscalerConfig({ initial: await loadAutoscalerConfig(file), apply: (c) => r.applied.push(c), logger: r.logger });
    watch = watchAutoscalerConfigFile(file, live, { debounceMs: 50 });

    // Good: applied.
    await writeFile(file, 'stable-window: 30s\ncontainer-concurrency-target-default: "10"\n');
    await waitFor(() => r.applied.length === 1, { what: 'the rewritten config applied', timeoutMs: 10_000 });
    assert.equal(r.applied[0]?.stableWindowMs, 30_000);
    assert.equal(live.current?.containerConcurrencyTargetDefault, 10);
    const info = r.lines.find((l) => l.msg === 'autoscaler config applied');
    assert.deepEqual(info?.fields?.changed, { 'container-concurrency-target-default': '100 -> 10', 'stable-window': '1m -> 30s' });

    // Bad: refused, naming the key; the last good config stays.
    await writeFile(file, 'stable-window: 2s\n');
    const warning = await waitFor(() => r.lines.find((l) => l.level === 'warn'), { what: 'the bad config refused', timeoutMs: 10_000 });
    assert.equal(warning.msg, 'autoscaler config refused; keeping the last good one');
    assert.match(String((warning.fields?.fields as string[] | undefined)?.[0]), /^stable-window: must be between 6s and 1h/);
    assert.equal(r.applied.length, 1, 'nothing applied');
    assert.equal(live.current?.stableWindowMs, 30_000);

    // Replaced by rename, as editors save: a new inode under the same name.
    const tmp = path.join(dir, '.autoscaler.yaml.swp');
    await writeFile(tmp, 'stable-window: 45s\n');
    await rename(tmp, file);
    await waitFor(() => r.applied.length === 2, { what: 'the renamed-over config applied', timeoutMs: 10_000 });
    assert.equal(live.current?.stableWindowMs, 45_000);
    assert.equal(live.current?.containerConcurrencyTargetDefault, 100, 'keys left out are back at their defaults');

    // And it keeps watching the new file.
    await writeFile(file, 'stable-window: 50s\n');
    await waitFor(() => r.applied.length === 3, { what: 'a later write to the new file applied', timeoutMs: 10_000 });
    assert.equal(live.current?.stableWindowMs, 50_000);
  });
});
