// Durations as people write them in fn.yaml ("500ms", "30s", "2m", "1h30m") <-> milliseconds.

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;

/** Pattern the spec schema uses for duration strings. */
export const durationPattern = '^([0-9]+(ms|s|m|h))+$';

const whole = new RegExp(durationPattern);
const part = /([0-9]+)(ms|s|m|h)/g;

/** Parses "1m30s" into 90000. Throws on anything else; validate with the schema first. */
export function parseDuration(text: string): number {
  if (!whole.test(text)) throw new Error(`not a duration: ${JSON.stringify(text)}`);
  let ms = 0;
  for (const m of text.matchAll(part)) ms += Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
  return ms;
}

/** Formats 90000 as "1m30s"; whole milliseconds only. */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  let rest = Math.round(ms);
  let out = '';
  for (const [unit, size] of [['h', 3_600_000], ['m', 60_000], ['s', 1000], ['ms', 1]] as const) {
    const n = Math.floor(rest / size);
    if (n > 0) out += `${n}${unit}`;
    rest -= n * size;
  }
  return out;
}
