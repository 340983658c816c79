// The cluster autoscaler defaults while the platform runs: a config file (fn up) or a ConfigMap
// (a cluster) that changes is validated and applied without a restart; a bad one is refused and
// the last good one stays.

import { watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import { isKubefnError } from '@kubefn/platform';
import { autoscalerConfigChanges, loadAutoscalerConfig, parseAutoscalerConfig, type AutoscalerConfig } from './config.js';

export interface LiveConfigLogger {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
}

/**
 * The config in effect, and where new ones are offered. `apply` (the autoscaler's setConfig, the
 * gateway's scale defaults) is called with each new config that differs from the current one;
 * undefined stands for the built-in defaults (no file, a deleted ConfigMap).
 */
export class LiveAutoscalerConfig {
  #current: AutoscalerConfig | undefined;
  readonly #apply: (config: AutoscalerConfig | undefined) => void;
  readonly #log: LiveConfigLogger | undefined;

  constructor(options: { initial: AutoscalerConfig | undefined; apply: (config: AutoscalerConfig | undefined) => void; logger?: LiveConfigLogger }) {
    this.#current = options.initial;
    this.#apply = options.apply;
    this.#log = options.logger;
  }

  /** The last good config (undefined: the built-in defaults). */
  get current(): AutoscalerConfig | undefined {
    return this.#current;
  }

  /**
   * A valid config read from `source`: applied and logged with what changed, unless it is the
   * same as the current one (an editor's save with nothing changed, a watch that re-listed).
   * Returns whether it was applied.
   */
  offer(config: AutoscalerConfig | undefined, source: string): boolean {
    const changes = autoscalerConfigChanges(this.#current, config);
    if (changes.length === 0) return false;
    this.#current = config;
    this.#apply(config);
    this.#log?.info('autoscaler config applied', {
      source,
      ...(config ? {} : { config: 'built-in defaults' }),
      changed: Object.fromEntries(changes.map((c) => [c.key, `${String(c.from)} -> ${String(c.to)}`])),
    });
    return true;
  }

  /**
   * A ConfigMap's data (undefined: the ConfigMap was deleted, so the built-in defaults): validated,
   * then offered, or refused with its errors.
   */
  offerData(data: Record<string, string> | undefined, source: string): boolean {
    if (data === undefined) return this.offer(undefined, source);
    let config: AutoscalerConfig;
    try {
      config = parseAutoscalerConfig(data, source);
    } catch (err) {
      this.refuse(err, source);
      return false;
    }
    return this.offer(config, source);
  }

  /** A config from `source` that did not validate: logged with its errors; the last good one stays. */
  refuse(err: unknown, source: string): void {
    const fields = isKubefnError(err) && err.fields?.length ? err.fields.map((f) => `${f.field}: ${f.message}`) : undefined;
    this.#log?.warn('autoscaler config refused; keeping the last good one', {
      source,
      error: err instanceof Error ? err.message : String(err),
      ...(fields ? { fields } : {}),
    });
  }
}

export interface ConfigFileWatch {
  /** Stops watching; a check already running finishes but applies nothing. Idempotent. */
  close(): void;
}

/**
 * Watches `file` and offers each new version to `live` (loadAutoscalerConfig: a bad one is
 * refused). The directory is watched, not the file: editors that save by writing a new file and
 * renaming it over the old one replace the inode a file watch would follow. Events within
 * `debounceMs` (default 200) of each other are read once, so a save seen as several writes is
 * not read half-written; a file that is gone for a moment (between an unlink and a rename) is
 * refused with a warning and the next event reads it again. The file is read once at the start
 * too (the same config as `live` holds applies nothing).
 */
export function watchAutoscalerConfigFile(file: string, live: LiveAutoscalerConfig, options: { debounceMs?: number } = {}): ConfigFileWatch {
  const dir = path.dirname(path.resolve(file));
  const base = path.basename(file);
  const debounceMs = options.debounceMs ?? 200;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();
  let closed = false;
  const check = async (): Promise<void> => {
    try {
      const config = await loadAutoscalerConfig(file);
      if (!closed) live.offer(config, file);
    } catch (err) {
      if (!closed) live.refuse(err, file);
    }
  };
  const due = (): void => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      timer = undefined;
      // One check at a time, in order: the last event's check reads the file last.
      running = running.then(check);
    }, debounceMs);
  };
  const watcher: FSWatcher = watch(dir, { persistent: false }, (_event, name) => {
    // Some platforms give no file name: any change in the directory may be ours.
    if (!closed && (name === null || name === base)) due();
  });
  watcher.on('error', (err) => live.refuse(err, file));
  // Once now: a change made after the caller read the file, before this watch began, is not missed.
  due();
  return {
    close: () => {
      closed = true;
      clearTimeout(timer);
      watcher.close();
    },
  };
}
