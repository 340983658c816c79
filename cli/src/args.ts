// Parsers for option values (K=V pairs, counts, durations); each bad value is a usage error naming the option.

import { parseDuration, parseQuantity } from '@kubefn/platform/core';
import { usageError } from './errors.js';

/** Commander reducer for repeatable options: `--env A=1 --env B=2` -> ['A=1', 'B=2']. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** "K=V" (or "K:V" with sep ':') -> [K, V]; the value may contain the separator. */
export function splitPair(text: string, sep: '=' | ':', option: string, example: string): [string, string] {
  const at = text.indexOf(sep);
  const key = at > 0 ? text.slice(0, at).trim() : '';
  if (!key) throw usageError(`${option} expects ${example}, got ${JSON.stringify(text)}`, `e.g. ${option} ${example}`);
  const value = text.slice(at + 1);
  return [key, sep === ':' ? value.trim() : value];
}

export function pairs(values: readonly string[] | undefined, sep: '=' | ':', option: string, example: string): [string, string][] {
  return (values ?? []).map((v) => splitPair(v, sep, option, example));
}

/** A whole number in [min, max]; `what` names the option or argument in the error. */
export function parseCount(text: string, what: string, min = 0, max = 1000): number {
  const n = /^\s*\d+\s*$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw usageError(`${what} must be a whole number from ${min} to ${max}, got ${JSON.stringify(text)}`);
  }
  return n;
}

/** "10m", "1h30m", "500ms" -> milliseconds. */
export function parseDurationArg(text: string, what: string): number {
  try {
    return parseDuration(text.trim());
  } catch {
    throw usageError(`${what} must be a duration like "30s", "10m" or "1h30m", got ${JSON.stringify(text)}`);
  }
}

/**
 * `--since`: a duration back from now ("10m") or an RFC 3339 time ("2026-01-02T15:04:05Z").
 * Worked example: now = 12:00:00Z, "10m" -> 11:50:00Z.
 */
export function parseSince(text: string, nowMs: number): Date {
  if (/^\d{4}-\d{2}-\d{2}T/.test(text)) {
    const t = Date.parse(text);
    if (!Number.isNaN(t)) return new Date(t);
    throw usageError(`--since must be a duration like "10m" or an RFC 3339 time, got ${JSON.stringify(text)}`);
  }
  return new Date(nowMs - parseDurationArg(text, '--since'));
}

/** "1Mi", "500k", "1048576" -> bytes (Kubernetes quantity suffixes), from 1 KiB to 1 GiB. */
export function parseSize(text: string, what: string): number {
  let n: number;
  try {
    n = parseQuantity(text.trim());
  } catch {
    throw usageError(`${what} must be a size like 1Mi, 512Ki or 1048576, got ${JSON.stringify(text)}`);
  }
  if (!Number.isSafeInteger(n) || n < 1024 || n > 2 ** 30) throw usageError(`${what} must be from 1Ki to 1Gi, got ${JSON.stringify(text)}`);
  return n;
}
