// Terminal output: aligned tables, human ages/sizes/durations, and progress steps with a spinner that stays quiet when piped.

import { performance } from 'node:perf_hooks';
import { createSpinner } from 'nanospinner';

/** A writable the CLI prints to; `isTTY` as on process.stdout. */
export interface OutStream {
  write(chunk: string | Uint8Array): boolean;
  isTTY?: boolean;
}

/**
 * Left-aligned columns separated by three spaces, as kubectl prints them. The last column is
 * not padded, so lines carry no trailing spaces.
 */
export function formatTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    headers
      .map((_, i) => (i === headers.length - 1 ? (cells[i] ?? '') : (cells[i] ?? '').padEnd(widths[i] ?? 0)))
      .join('   ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n') + '\n';
}

/**
 * Age as kubectl shows it: the two most useful units, coarser as it grows.
 * 45s -> "45s", 150s -> "2m30s", 50m -> "50m", 5h10m -> "5h10m", 30h -> "30h", 3d4h -> "3d4h", 40d -> "40d".
 */
export function formatAge(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const m = Math.floor(s / 60);
  const h = Math.floor(m / 60);
  const d = Math.floor(h / 24);
  if (s < 120) return `${s}s`;
  if (m < 10) return s % 60 === 0 ? `${m}m` : `${m}m${s % 60}s`;
  if (h < 3) return `${m}m`;
  if (h < 8) return m % 60 === 0 ? `${h}h` : `${h}h${m % 60}m`;
  if (d < 2) return `${h}h`;
  if (d < 8) return h % 24 === 0 ? `${d}d` : `${d}d${h % 24}h`;
  if (d < 365 * 2) return `${d}d`;
  return `${Math.floor(d / 365)}y`;
}

/** Age since an RFC 3339 time, "<unknown>" when it does not parse. */
export function ageSince(iso: string | undefined, nowMs: number): string {
  const t = iso ? Date.parse(iso) : Number.NaN;
  return Number.isNaN(t) ? '<unknown>' : formatAge(nowMs - t);
}

/** 512 -> "512 B", 12_600 -> "12.3 KiB", 3_500_000 -> "3.3 MiB". */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

/** 87 -> "87ms", 1234 -> "1.2s", 95_000 -> "1m35s". */
export function formatElapsed(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)}m${s % 60}s`;
}

/**
 * Shortens digests for tables: "bundle:sha256:0123456789abcdef..." -> "bundle:0123456789ab",
 * "reg/app@sha256:abcd..." -> "reg/app@abcdef012345". Tags and other images stay as they are.
 */
export function shortImage(image: string | undefined): string {
  if (!image) return '<none>';
  return image.replace(/(^|[:@])sha256:([0-9a-f]{12})[0-9a-f]*/, '$1$2');
}

/** Reports the steps of a long command, each with how long it took. */
export interface Progress {
  /** True when steps are drawn on a terminal. */
  readonly interactive: boolean;
  /**
   * Runs `work` under a spinner showing `text`; on success shows `done(result)` (default `text`)
   * with the elapsed time, on failure marks the step failed and rethrows.
   */
  step<T>(text: string, work: () => Promise<T>, done?: (result: T) => string): Promise<T>;
}

/**
 * A spinner on `stream` (stderr) when stdout and stderr are terminals and the output is not
 * JSON; otherwise silent, so pipes and `--json` get only the command's data on stdout.
 */
export function createProgress(options: { stdout: OutStream; stderr: OutStream; json: boolean; env: Record<string, string | undefined> }): Progress {
  // nanospinner divides by the terminal width; a pseudo-terminal reporting 0 columns would make it loop forever.
  const columns = (options.stderr as { columns?: number }).columns ?? 0;
  const interactive =
    !options.json && options.stdout.isTTY === true && options.stderr.isTTY === true && columns > 0 && options.env.TERM !== 'dumb';
  if (!interactive) return silentProgress;
  const stream = options.stderr as unknown as NodeJS.WriteStream;
  return {
    interactive: true,
    async step(text, work, done) {
      const spinner = createSpinner(text, { stream }).start();
      const started = performance.now();
      try {
        const result = await work();
        const label = done ? done(result) : text;
        spinner.success({ text: `${label} (${formatElapsed(performance.now() - started)})` });
        return result;
      } catch (err) {
        spinner.error({ text: `${text} failed (${formatElapsed(performance.now() - started)})` });
        throw err;
      }
    },
  };
}

export const silentProgress: Progress = {
  interactive: false,
  step: (_text, work) => work(),
};
