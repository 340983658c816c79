// Polls a condition until it holds or a deadline passes: how tests wait, instead of sleeping.

export interface WaitForOptions {
  /** Give up after this long, in ms (default 30000). */
  timeoutMs?: number;
  /** What is awaited, for the error message: "2 ready replicas". */
  what?: string;
  /** Longest pause between polls, in ms (default 250); polling starts faster. */
  maxIntervalMs?: number;
  signal?: AbortSignal;
}

/**
 * Calls `check` until it returns something other than undefined, null or false, and returns that.
 * A `check` that throws counts as "not yet"; its last error goes into the timeout message.
 */
export async function waitFor<T>(
  check: () => T | Promise<T>,
  options: WaitForOptions = {},
): Promise<Exclude<T, undefined | null | false>> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const deadline = Date.now() + timeoutMs;
  let intervalMs = 10;
  let lastError: unknown;
  for (;;) {
    options.signal?.throwIfAborted();
    try {
      const value = await check();
      if (value !== undefined && value !== null && value !== false) return value as Exclude<T, undefined | null | false>;
      lastError = undefined;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const detail = lastError === undefined ? '' : ` (last error: ${(lastError as Error)?.message ?? String(lastError)})`;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${options.what ?? 'a condition'}${detail}`, {
        cause: lastError,
      });
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(intervalMs, Math.max(0, deadline - Date.now()))));
    intervalMs = Math.min(intervalMs * 2, options.maxIntervalMs ?? 250);
  }
}
