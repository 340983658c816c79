// Cluster-wide autoscaler defaults: Knative's config-autoscaler keys, from a file or a ConfigMap, validated once.

import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { durationPattern, formatDuration, isKubefnError, KubefnError, parseDuration, type FieldError } from '@kubefn/platform';
import { isMap, isNode, LineCounter, parseDocument, type Document } from 'yaml';

/**
 * What a function's `scale` spec falls back to for each knob it leaves out. Knative's
 * config-autoscaler keys, camelCased, durations in ms. min/max/initial scale are not here: they
 * stay in each function's spec (with the schema's defaults), because drivers read them there.
 */
export interface AutoscalerConfig {
  /** container-concurrency-target-default: in-flight requests per replica to aim for (before utilisation). */
  containerConcurrencyTargetDefault: number;
  /** container-concurrency-target-percentage: utilisation of the target to aim for, 1..100 (%). */
  containerConcurrencyTargetPercentage: number;
  /** requests-per-second-target-default: req/s per replica to aim for with metric rps (before utilisation). */
  requestsPerSecondTargetDefault: number;
  /**
   * pending-target-default: messages waiting in a function's event triggers per replica to aim
   * for (kubefn's key; KEDA's JetStream lagThreshold, also 10). Not scaled by the utilisation
   * percentage: 45 waiting at 10 -> ceil(45 / 10) = 5 replicas.
   */
  pendingTargetDefault: number;
  /** stable-window, ms (6 s .. 1 h). */
  stableWindowMs: number;
  /** panic-window-percentage: panic window as a share of the stable window, 1..100 (%). */
  panicWindowPercentage: number;
  /** panic-threshold-percentage: panic when the panic window wants this share of the ready replicas, 110..1000 (%). */
  panicThresholdPercentage: number;
  /** max-scale-up-rate: one decision grows to at most ready replicas x this (> 1). */
  maxScaleUpRate: number;
  /** max-scale-down-rate: one decision shrinks to no fewer than ready replicas / this (> 1). */
  maxScaleDownRate: number;
  /** scale-to-zero-grace-period, ms (0 .. 1 h). */
  scaleToZeroGracePeriodMs: number;
  /** scale-down-delay, ms (0 .. 1 h). */
  scaleDownDelayMs: number;
  /** enable-scale-to-zero: false keeps at least one replica of every function. */
  enableScaleToZero: boolean;
  /** metric: what a function scales on when its spec does not say (Knative: the KPA's default, concurrency). */
  metric: 'concurrency' | 'rps';
}

/** Knative's defaults (pkg/autoscaler/config/config.go), and KEDA's lagThreshold for pending messages. */
export const defaultAutoscalerConfig: Readonly<AutoscalerConfig> = Object.freeze({
  containerConcurrencyTargetDefault: 100,
  containerConcurrencyTargetPercentage: 70,
  requestsPerSecondTargetDefault: 200,
  pendingTargetDefault: 10,
  stableWindowMs: 60_000,
  panicWindowPercentage: 10,
  panicThresholdPercentage: 200,
  maxScaleUpRate: 1000,
  maxScaleDownRate: 2,
  scaleToZeroGracePeriodMs: 30_000,
  scaleDownDelayMs: 0,
  enableScaleToZero: true,
  metric: 'concurrency',
});

type Parsed = { value: AutoscalerConfig[keyof AutoscalerConfig] } | { error: string };
type KeyParser = { field: keyof AutoscalerConfig; parse: (raw: string | number | boolean) => Parsed };

const hour = 3_600_000;

const keys: Record<string, KeyParser> = {
  'container-concurrency-target-default': number('containerConcurrencyTargetDefault', { min: 0.01, max: 100_000 }),
  'container-concurrency-target-percentage': number('containerConcurrencyTargetPercentage', { min: 1, max: 100 }),
  'requests-per-second-target-default': number('requestsPerSecondTargetDefault', { min: 0.01, max: 100_000 }),
  'pending-target-default': number('pendingTargetDefault', { min: 1, max: 100_000 }),
  'stable-window': duration('stableWindowMs', 6000, hour),
  'panic-window-percentage': number('panicWindowPercentage', { min: 1, max: 100 }),
  'panic-threshold-percentage': number('panicThresholdPercentage', { min: 110, max: 1000 }),
  'max-scale-up-rate': number('maxScaleUpRate', { above: 1 }),
  'max-scale-down-rate': number('maxScaleDownRate', { above: 1 }),
  'scale-to-zero-grace-period': duration('scaleToZeroGracePeriodMs', 0, hour),
  'scale-down-delay': duration('scaleDownDelayMs', 0, hour),
  'enable-scale-to-zero': boolean('enableScaleToZero'),
  metric: {
    field: 'metric',
    parse: (raw) => (raw === 'concurrency' || raw === 'rps' ? { value: raw } : { error: `must be "concurrency" or "rps" (got ${JSON.stringify(raw)})` }),
  },
};

/** Every key the file may set, in the order deploy/autoscaler-config.yaml lists them. */
export const autoscalerConfigKeys: readonly string[] = Object.keys(keys);

/** Knative keys with no meaning here: refused with the reason rather than "unknown key". */
const unsupportedKnativeKeys: Record<string, string> = {
  'min-scale': 'set scale.min in the function spec',
  'max-scale': 'set scale.max in the function spec',
  'initial-scale': 'set scale.initial in the function spec',
  'allow-zero-initial-scale': 'set scale.initial in the function spec',
  'max-scale-limit': 'the spec schema caps scale.max at 1000',
  'target-burst-capacity': "kubefn's gateway is always in the request path, so there is no burst capacity to tune",
  'activator-capacity': "kubefn's gateway is always in the request path, so there is no burst capacity to tune",
  'pod-autoscaler-class': 'kubefn has one autoscaler (see docs/autoscaler.md); use "metric" to choose concurrency or rps',
  'scale-to-zero-pod-retention-period': 'use scale-to-zero-grace-period',
};

/**
 * Validates autoscaler settings: a flat map of the keys above (values strings, as in a
 * ConfigMap's `data`, or numbers and booleans) or a whole ConfigMap manifest (its `data` is
 * read). Keys left out keep Knative's defaults. Throws INVALID_SPEC naming every bad key at
 * once; `source` (a file name) is put in the message.
 */
export function parseAutoscalerConfig(data: unknown, source: string): AutoscalerConfig {
  const shape = settingsOf(data);
  if ('error' in shape) throw invalid(source, [shape.error]);
  const config: AutoscalerConfig = { ...defaultAutoscalerConfig };
  const fields: FieldError[] = [];
  const set = new Set<keyof AutoscalerConfig>();
  for (const [key, raw] of Object.entries(shape.settings)) {
    // Knative's own ConfigMap keeps its documentation in an `_example` key that nothing reads.
    if (key === '_example') continue;
    const parser = Object.hasOwn(keys, key) ? keys[key] : undefined;
    if (!parser) {
      fields.push({ field: key, message: unknownKey(key) });
      continue;
    }
    if (raw === null || raw === undefined || raw === '') {
      fields.push({ field: key, message: 'needs a value (remove the key to keep the default)' });
      continue;
    }
    if (typeof raw !== 'string' && typeof raw !== 'number' && typeof raw !== 'boolean') {
      fields.push({ field: key, message: `must be a string or a number (got ${JSON.stringify(raw)})` });
      continue;
    }
    const parsed = parser.parse(raw);
    if ('error' in parsed) {
      fields.push({ field: key, message: parsed.error });
      continue;
    }
    (config as unknown as Record<string, unknown>)[parser.field] = parsed.value;
    set.add(parser.field);
  }
  // Cross-key: the metric arrives in 1 s buckets, so a shorter panic window would average nothing
  // (Knative's rule). Checked only when both values are valid; blamed on the percentage when the
  // file set it, else on the window.
  const bad = new Set(fields.map((f) => f.field));
  const panicWindowMs = (config.stableWindowMs * config.panicWindowPercentage) / 100;
  if (panicWindowMs < 1000 && !bad.has('stable-window') && !bad.has('panic-window-percentage')) {
    fields.push({
      field: set.has('panicWindowPercentage') ? 'panic-window-percentage' : 'stable-window',
      message: `the panic window is ${config.panicWindowPercentage}% of stable-window ${formatDuration(config.stableWindowMs)} = ${Math.round(panicWindowMs)}ms; it must be at least 1s`,
    });
  }
  if (fields.length > 0) throw invalid(source, fields);
  return config;
}

/**
 * Reads and validates a YAML autoscaler config (the format of deploy/autoscaler-config.yaml). Errors
 * name the file, and each bad key with its line.
 */
export async function loadAutoscalerConfig(file: string): Promise<AutoscalerConfig> {
  const shown = displayPath(file);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as { code?: string }).code !== 'ENOENT') throw err;
    throw new KubefnError('NOT_FOUND', `autoscaler config ${shown} does not exist`, {
      hint: 'pass a file like deploy/autoscaler-config.yaml from the kubefn repository, which lists every key with its default',
      cause: err,
    });
  }
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const fields = doc.errors.slice(0, 10).map((e) => {
      const pos = e.linePos?.[0];
      const message = (e.message.split('\n')[0] ?? e.message).replace(/ at line \d+, column \d+:?$/, '');
      return { field: pos ? `${shown}:${pos.line}:${pos.col}` : shown, message };
    });
    throw new KubefnError('INVALID_SPEC', `${shown} is not valid YAML`, { fields, hint: 'fix the YAML syntax at the positions above' });
  }
  try {
    return parseAutoscalerConfig(doc.toJS(), shown);
  } catch (err) {
    if (!isKubefnError(err, 'INVALID_SPEC') || !err.fields) throw err;
    const fields = err.fields.map((f) => ({ field: f.field, message: `${f.message} [${lineOf(doc, lineCounter, f.field, shown)}]` }));
    throw invalid(shown, fields);
  }
}

function invalid(source: string, fields: FieldError[]): KubefnError {
  // The one-line summary follows the parseFunctionSpec convention; the CLI prints the fields below it instead.
  const summary = fields.map((f) => `${f.field || '(root)'}: ${f.message}`).join('; ');
  return new KubefnError('INVALID_SPEC', `invalid autoscaler config in ${source}: ${summary}`, {
    fields,
    hint: `fix the keys above in ${source}; deploy/autoscaler-config.yaml lists every key with its default`,
  });
}

/** The key/value map: `data` itself, or a ConfigMap's `data`. */
function settingsOf(data: unknown): { settings: Record<string, unknown> } | { error: FieldError } {
  if (!isRecord(data)) {
    return { error: { field: '', message: 'must be a mapping of autoscaler keys (like "stable-window": "60s") or a ConfigMap manifest' } };
  }
  if (!('kind' in data)) return { settings: data };
  if (data.kind !== 'ConfigMap') return { error: { field: 'kind', message: `must be "ConfigMap" (got ${JSON.stringify(data.kind)})` } };
  if (data.data === undefined || data.data === null) return { settings: {} };
  if (!isRecord(data.data)) return { error: { field: 'data', message: 'must be a mapping of autoscaler keys to string values' } };
  return { settings: data.data };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function number(field: keyof AutoscalerConfig, range: { min?: number; max?: number; above?: number }): KeyParser {
  return {
    field,
    parse: (raw) => {
      const n = typeof raw === 'number' ? raw : typeof raw === 'string' && /^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$/.test(raw) ? Number(raw) : NaN;
      if (!Number.isFinite(n)) return { error: `must be a number (got ${JSON.stringify(raw)})` };
      if (range.above !== undefined && !(n > range.above)) return { error: `must be greater than ${range.above} (got ${n})` };
      if ((range.min !== undefined && n < range.min) || (range.max !== undefined && n > range.max)) {
        const bounds = range.max === undefined ? `at least ${range.min}` : `between ${range.min} and ${range.max}`;
        return { error: `must be ${bounds} (got ${n})` };
      }
      return { value: n };
    },
  };
}

const durationRegExp = new RegExp(durationPattern);

function duration(field: keyof AutoscalerConfig, minMs: number, maxMs: number): KeyParser {
  return {
    field,
    parse: (raw) => {
      if (typeof raw !== 'string' || !durationRegExp.test(raw)) {
        return { error: `must be a duration like "500ms", "30s", "2m" or "1m30s" (got ${JSON.stringify(raw)})` };
      }
      const ms = parseDuration(raw);
      if (ms < minMs || ms > maxMs) return { error: `must be between ${formatDuration(minMs)} and ${formatDuration(maxMs)} (got ${raw})` };
      return { value: ms };
    },
  };
}

function boolean(field: keyof AutoscalerConfig): KeyParser {
  return {
    field,
    parse: (raw) => {
      const text = String(raw).toLowerCase();
      if (text === 'true' || text === 'false') return { value: text === 'true' };
      return { error: `must be "true" or "false" (got ${JSON.stringify(raw)})` };
    },
  };
}

function unknownKey(key: string): string {
  const why = Object.hasOwn(unsupportedKnativeKeys, key) ? unsupportedKnativeKeys[key] : undefined;
  if (why) return `is a Knative key kubefn does not support: ${why}`;
  const norm = (s: string) => s.toLowerCase().replace(/[^a-z0-9]/g, '');
  let best = autoscalerConfigKeys[0] ?? '';
  let [bestDistance, bestEdits] = [Infinity, Infinity];
  for (const known of autoscalerConfigKeys) {
    const [k, n] = [norm(key), norm(known)];
    const edits = editDistance(k, n);
    // A key cut short ("panic-threshold") is as good as a typo; ties go to the fewer edits.
    const d = Math.min(edits, k.length >= 5 && (n.includes(k) || k.includes(n)) ? 1 : Infinity);
    if (d < bestDistance || (d === bestDistance && edits < bestEdits)) [best, bestDistance, bestEdits] = [known, d, edits];
  }
  // A far-off "closest" key is noise; list them all instead.
  if (bestDistance <= Math.max(2, Math.floor(norm(key).length / 3))) return `unknown key; did you mean "${best}"?`;
  return `unknown key; the known keys are ${autoscalerConfigKeys.join(', ')}`;
}

/** Levenshtein distance, one row at a time. */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length]!;
}

/** "autoscaler.yaml:12:3" for a key (under `data` in a ConfigMap), or the file alone. */
function lineOf(doc: Document, lines: LineCounter, field: string, shown: string): string {
  let map: unknown = doc.contents;
  if (isMap(map) && field !== 'kind' && field !== 'data') {
    const data = map.items.find((p) => isNode(p.key) && (p.key as { value?: unknown }).value === 'data');
    if (data && isMap(data.value)) map = data.value;
  }
  const pair = isMap(map) ? map.items.find((p) => isNode(p.key) && String((p.key as { value?: unknown }).value) === field) : undefined;
  const offset = pair && isNode(pair.key) ? pair.key.range?.[0] : undefined;
  if (offset === undefined) return shown;
  const pos = lines.linePos(offset);
  return `${shown}:${pos.line}:${pos.col}`;
}

/** Relative to the working directory when inside it, else as given. */
function displayPath(file: string): string {
  const rel = path.relative(process.cwd(), file);
  return rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : file;
}

/** One key whose value differs between two configs, in the file's terms ("60s", not 60000). */
export interface ConfigChange {
  key: string;
  from: string | number | boolean;
  to: string | number | boolean;
}

/**
 * The keys whose values differ from `before` to `after` (undefined: the built-in defaults), in
 * the order deploy/autoscaler-config.yaml lists them. Empty when they are the same.
 */
export function autoscalerConfigChanges(before: AutoscalerConfig | undefined, after: AutoscalerConfig | undefined): ConfigChange[] {
  const a = before ?? defaultAutoscalerConfig;
  const b = after ?? defaultAutoscalerConfig;
  const changes: ConfigChange[] = [];
  for (const [key, { field }] of Object.entries(keys)) {
    if (a[field] === b[field]) continue;
    const shown = (v: AutoscalerConfig[keyof AutoscalerConfig]) => (field.endsWith('Ms') ? formatDuration(v as number) : v);
    changes.push({ key, from: shown(a[field]), to: shown(b[field]) });
  }
  return changes;
}
