// The cluster autoscaler config: the shipped example is the defaults, bad keys are all named at once, and the spec wins over the file.

import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { isKubefnError, parseFunctionSpec, type KubefnError, type ScaleSpec } from '@kubefn/platform';
import { isMap, isScalar, parseDocument } from 'yaml';
import { autoscalerConfigKeys, defaultAutoscalerConfig, loadAutoscalerConfig, parseAutoscalerConfig, type AutoscalerConfig } from './config.js';
import { clusterScaleDefaults, settingsFromSpec } from './settings.js';

/** The example shipped at the repository root; this file runs from autoscaler/dist. */
const shipped = fileURLToPath(new URL('../../deploy/autoscaler-config.yaml', import.meta.url));

function invalid(fn: () => unknown): KubefnError {
  try {
    fn();
  } catch (err) {
    assert.ok(isKubefnError(err, 'INVALID_SPEC'), `expected INVALID_SPEC, got ${String(err)}`);
    return err;
  }
  assert.fail('expected an INVALID_SPEC error');
}

const scale = (input: Partial<ScaleSpec> = {}): ScaleSpec => parseFunctionSpec({ name: 'f', scale: input }).scale;

describe('the shipped deploy/autoscaler-config.yaml', () => {
  it('loads to exactly the built-in defaults', async () => {
    assert.deepEqual(await loadAutoscalerConfig(shipped), { ...defaultAutoscalerConfig });
  });

  it('is a ConfigMap kubefn-autoscaler in kubefn listing every supported key as a string, each with a comment', async () => {
    const doc = parseDocument(await readFile(shipped, 'utf8'));
    const manifest = doc.toJS() as { apiVersion: string; kind: string; metadata: { name: string; namespace: string }; data: Record<string, unknown> };
    assert.equal(manifest.apiVersion, 'v1');
    assert.equal(manifest.kind, 'ConfigMap');
    assert.deepEqual(manifest.metadata, { name: 'kubefn-autoscaler', namespace: 'kubefn' });
    assert.deepEqual(Object.keys(manifest.data), [...autoscalerConfigKeys]);
    for (const [key, value] of Object.entries(manifest.data)) assert.equal(typeof value, 'string', `${key} must be a string for a ConfigMap`);
    const data = doc.get('data');
    assert.ok(isMap(data));
    data.items.forEach((pair, i) => {
      assert.ok(isScalar(pair.key));
      // The yaml package files the comment above a map's first key on the map itself.
      const comment = i === 0 ? (pair.key.commentBefore ?? data.commentBefore) : pair.key.commentBefore;
      assert.ok(comment?.trim(), `${String(pair.key.value)} has no comment`);
    });
  });
});

describe('parseAutoscalerConfig', () => {
  it('reads a flat map of Knative keys, strings or numbers, over the defaults', () => {
    const config = parseAutoscalerConfig(
      { 'stable-window': '2m', 'max-scale-down-rate': 4, 'container-concurrency-target-percentage': '85.5', 'enable-scale-to-zero': false },
      'flat.yaml',
    );
    assert.deepEqual(config, {
      ...defaultAutoscalerConfig,
      stableWindowMs: 120_000,
      maxScaleDownRate: 4,
      containerConcurrencyTargetPercentage: 85.5,
      enableScaleToZero: false,
    });
  });

  it('reads the data of a ConfigMap manifest', () => {
    const config = parseAutoscalerConfig(
      { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'kubefn-autoscaler' }, data: { metric: 'rps', 'scale-to-zero-grace-period': '1m30s' } },
      'cm.yaml',
    );
    assert.deepEqual(config, { ...defaultAutoscalerConfig, metric: 'rps', scaleToZeroGracePeriodMs: 90_000 });
  });

  it('names every bad key in one error, with the file name', () => {
    const err = invalid(() =>
      parseAutoscalerConfig(
        {
          kind: 'ConfigMap',
          data: {
            'stable-window': '2s',
            'panic-threshold-percentage': '105',
            'max-scale-up-rate': '1',
            'container-concurrency-target-percentage': 'lots',
            'scale-down-delay': '30',
            'enable-scale-to-zero': 'yes',
            metric: 'cpu',
            'panic-window-percentage': '50',
          },
        },
        'clusters/prod/autoscaler.yaml',
      ),
    );
    assert.deepEqual(err.fields?.map((f) => f.field).sort(), [
      'container-concurrency-target-percentage',
      'enable-scale-to-zero',
      'max-scale-up-rate',
      'metric',
      'panic-threshold-percentage',
      'scale-down-delay',
      'stable-window',
    ]);
    assert.match(err.message, /clusters\/prod\/autoscaler\.yaml/);
    const message = (field: string) => err.fields?.find((f) => f.field === field)?.message ?? '';
    assert.match(message('stable-window'), /between 6s and 1h/);
    assert.match(message('panic-threshold-percentage'), /between 110 and 1000/);
    assert.match(message('max-scale-up-rate'), /greater than 1/);
    assert.match(message('scale-down-delay'), /duration/);
  });

  it('checks the panic window against the stable window', () => {
    const err = invalid(() => parseAutoscalerConfig({ 'stable-window': '6s', 'panic-window-percentage': '10' }, 'a.yaml'));
    assert.deepEqual(err.fields?.map((f) => f.field), ['panic-window-percentage']);
    assert.match(err.fields?.[0]?.message ?? '', /600ms; it must be at least 1s/);
    assert.equal(parseAutoscalerConfig({ 'stable-window': '10s', 'panic-window-percentage': '10' }, 'a.yaml').stableWindowMs, 10_000);
  });

  it('names an unknown key and the closest known one', () => {
    const err = invalid(() =>
      parseAutoscalerConfig({ 'stable-windows': '60s', panicThresholdPercentage: '200', 'scale-down': '1s', 'min-scale': '1', colour: 'blue' }, 'a.yaml'),
    );
    const byField = new Map(err.fields?.map((f) => [f.field, f.message]));
    assert.match(byField.get('stable-windows') ?? '', /did you mean "stable-window"\?/);
    assert.match(byField.get('panicThresholdPercentage') ?? '', /did you mean "panic-threshold-percentage"\?/);
    assert.match(byField.get('scale-down') ?? '', /did you mean "scale-down-delay"\?/);
    assert.match(byField.get('min-scale') ?? '', /scale\.min in the function spec/);
    assert.match(byField.get('colour') ?? '', /unknown key; the known keys are container-concurrency-target-default, /);
    assert.equal(byField.size, 5);
  });

  it('refuses what is not a mapping or not a ConfigMap', () => {
    assert.deepEqual(invalid(() => parseAutoscalerConfig('stable-window: 60s', 'a.yaml')).fields?.map((f) => f.field), ['']);
    assert.deepEqual(invalid(() => parseAutoscalerConfig({ kind: 'Secret', data: {} }, 'a.yaml')).fields?.map((f) => f.field), ['kind']);
  });
});

describe('loadAutoscalerConfig', () => {
  it('points at the line of each bad key', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'kubefn-autoscaler-config-'));
    try {
      const file = path.join(dir, 'autoscaler.yaml');
      await writeFile(file, 'kind: ConfigMap\ndata:\n  stable-window: "60s"\n  max-scale-down-rate: "1"\n');
      await assert.rejects(loadAutoscalerConfig(file), (err: KubefnError) => {
        assert.equal(err.code, 'INVALID_SPEC');
        assert.deepEqual(err.fields?.map((f) => f.field), ['max-scale-down-rate']);
        assert.match(err.fields?.[0]?.message ?? '', /autoscaler\.yaml:4:3\]$/);
        return true;
      });
      await assert.rejects(loadAutoscalerConfig(path.join(dir, 'missing.yaml')), { code: 'NOT_FOUND' });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('settingsFromSpec with a cluster config', () => {
  const config: AutoscalerConfig = {
    ...defaultAutoscalerConfig,
    stableWindowMs: 120_000,
    containerConcurrencyTargetDefault: 50,
    requestsPerSecondTargetDefault: 40,
    containerConcurrencyTargetPercentage: 50,
    scaleToZeroGracePeriodMs: 5000,
  };

  it('takes a knob from the spec when it is set', () => {
    const s = settingsFromSpec(scale({ stableWindow: '30s', target: 10, scaleToZeroGrace: '0s' }), config);
    assert.equal(s.stableWindowMs, 30_000);
    assert.equal(s.panicWindowMs, 3000);
    assert.equal(s.targetPerReplica, 5);
    assert.equal(s.scaleToZeroGraceMs, 0);
  });

  it('takes it from the config when the spec is silent', () => {
    const s = settingsFromSpec(scale(), config);
    assert.equal(s.metric, 'concurrency');
    assert.equal(s.stableWindowMs, 120_000);
    assert.equal(s.panicWindowMs, 12_000);
    assert.equal(s.targetPerReplica, 25);
    assert.equal(s.scaleToZeroGraceMs, 5000);
    assert.equal(s.minScale, 0);
  });

  it('defaults the target by metric: requests-per-second-target-default for rps', () => {
    assert.equal(settingsFromSpec(scale({ metric: 'rps' }), config).targetPerReplica, 20);
    assert.equal(settingsFromSpec(scale(), { ...config, metric: 'rps' }).targetPerReplica, 20);
    assert.equal(settingsFromSpec(scale({ metric: 'rps' })).targetPerReplica, 140);
  });

  it('takes pendingTarget from the spec, else pending-target-default, with no utilisation applied', () => {
    const fromFile = parseAutoscalerConfig({ 'pending-target-default': '25' }, 'a.yaml');
    assert.equal(fromFile.pendingTargetDefault, 25);
    assert.equal(settingsFromSpec(scale(), fromFile).pendingTarget, 25);
    assert.equal(settingsFromSpec(scale({ pendingTarget: 4 }), fromFile).pendingTarget, 4);
    assert.equal(settingsFromSpec(scale()).pendingTarget, 10, "KEDA's lagThreshold");
    const err = invalid(() => parseAutoscalerConfig({ 'pending-target-default': '0.5' }, 'a.yaml'));
    assert.match(err.fields?.[0]?.message ?? '', /between 1 and 100000/);
  });

  it('caps the concurrency target at containerConcurrency', () => {
    assert.equal(settingsFromSpec(scale({ containerConcurrency: 10 }), config).targetPerReplica, 5);
  });

  it('keeps one replica when enable-scale-to-zero is false', () => {
    assert.equal(settingsFromSpec(scale(), { ...config, enableScaleToZero: false }).minScale, 1);
    assert.equal(settingsFromSpec(scale({ min: 3 }), { ...config, enableScaleToZero: false }).minScale, 3);
  });

  it('with one argument uses Knative defaults, as the spec used to', () => {
    assert.deepEqual(settingsFromSpec(scale()), {
      minScale: 0,
      maxScale: 10,
      metric: 'concurrency',
      targetPerReplica: 70,
      pendingTarget: 10,
      stableWindowMs: 60_000,
      panicWindowMs: 6000,
      panicThreshold: 2,
      maxScaleUpRate: 1000,
      maxScaleDownRate: 2,
      scaleDownDelayMs: 0,
      scaleToZeroGraceMs: 30_000,
    });
  });

  it('clusterScaleDefaults spells the config in spec terms, and those values parse', () => {
    const knobs = clusterScaleDefaults(config);
    assert.equal(knobs.stableWindow, '120s');
    assert.equal(knobs.target, 50);
    assert.deepEqual(settingsFromSpec(scale(knobs)), settingsFromSpec(scale(), config));
  });
});
