// The failures the simulator can inject, and how their flags read: start-up time distributions,
// scrape blackouts, and what a failed scrape contributes (a policy, so autoscalers that treat a
// failed scrape differently can be compared on the same run).

import { KubefnError, type FunctionSample } from '@kubefn/platform';

const bad = (message: string, hint: string) => new KubefnError('BAD_REQUEST', message, { hint });

/** A start-up time distribution, ms. */
export type Startup =
  | { kind: 'fixed'; ms: number }
  | { kind: 'uniform'; min: number; max: number }
  /** Log-normal with this median and 99th percentile. */
  | { kind: 'lognormal'; p50: number; p99: number };

const startupHint = 'a start-up is ms: "2000" (always), "1500..2500" (uniform), or "p50=800,p99=2000" (log-normal)';
const maxStartupMs = 3_600_000;

function ms(flag: string, v: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || n < 0 || n > maxStartupMs) {
    throw bad(`${flag}: ${JSON.stringify(v)} is not a time from 0 to ${maxStartupMs} ms`, startupHint);
  }
  return n;
}

/** `2000`, `1500..2500` or `p50=800,p99=2000`; throws BAD_REQUEST otherwise. */
export function parseStartup(text: string, flag = '--startup-ms'): Startup {
  const s = text.trim();
  const range = /^([^.]*)\.\.(.*)$/.exec(s);
  if (range) {
    const [min, max] = [ms(flag, range[1]!), ms(flag, range[2]!)];
    if (min > max) throw bad(`${flag}: ${JSON.stringify(text)} ends before it starts`, startupHint);
    return min === max ? { kind: 'fixed', ms: min } : { kind: 'uniform', min, max };
  }
  if (s.includes('=')) {
    const parts = new Map<string, string>();
    for (const part of s.split(',')) {
      const [k, v, ...rest] = part.split('=').map((x) => x.trim());
      if (v === undefined || rest.length > 0 || (k !== 'p50' && k !== 'p99') || parts.has(k)) {
        throw bad(`${flag}: ${JSON.stringify(text)} is not p50=ms,p99=ms`, startupHint);
      }
      parts.set(k, v);
    }
    if (!parts.has('p50') || !parts.has('p99')) throw bad(`${flag}: ${JSON.stringify(text)} needs both p50 and p99`, startupHint);
    const [p50, p99] = [ms(flag, parts.get('p50')!), ms(flag, parts.get('p99')!)];
    if (p50 <= 0 || p99 < p50) throw bad(`${flag}: ${JSON.stringify(text)} needs 0 < p50 <= p99`, startupHint);
    return p50 === p99 ? { kind: 'fixed', ms: p50 } : { kind: 'lognormal', p50, p99 };
  }
  return { kind: 'fixed', ms: ms(flag, s) };
}

/** z of the 99th percentile of the standard normal. */
const z99 = 2.3263478740408408;

/** A sampler of `startup` drawing from `random` (none for a fixed time), capped at one hour. */
export function startupSampler(startup: Startup, random: () => number): () => number {
  switch (startup.kind) {
    case 'fixed':
      return () => startup.ms;
    case 'uniform':
      return () => startup.min + (startup.max - startup.min) * random();
    case 'lognormal': {
      const mu = Math.log(startup.p50);
      const sigma = Math.log(startup.p99 / startup.p50) / z99;
      return () => {
        // Box-Muller; 1 - u is in (0, 1].
        const z = Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
        return Math.min(maxStartupMs, Math.exp(mu + sigma * z));
      };
    }
  }
}

export function describeStartup(s: Startup): string {
  return s.kind === 'fixed' ? `${s.ms} ms` : s.kind === 'uniform' ? `${s.min}..${s.max} ms` : `p50 ${s.p50} ms, p99 ${s.p99} ms`;
}

/** Scrapes at seconds [fromS, toS) fail: of every gateway, or of `gateway` (1-based) only. */
export interface Blackout {
  fromS: number;
  toS: number;
  gateway?: number;
}

const blackoutHint = 'a blackout is "A..B" (seconds; every gateway) or "A..B:G" (gateway G, from 1); several are separated by commas';

/** `100..250`, `100..250:2`, or several of them comma-separated; throws BAD_REQUEST otherwise. */
export function parseBlackouts(text: string): Blackout[] {
  return text.split(',').map((raw) => {
    const m = /^\s*(\d+(?:\.\d+)?)\s*\.\.\s*(\d+(?:\.\d+)?)\s*(?::\s*(\d+)\s*)?$/.exec(raw);
    if (!m) throw bad(`--blackout: ${JSON.stringify(raw)} is not A..B or A..B:gateway`, blackoutHint);
    const [fromS, toS] = [Number(m[1]), Number(m[2])];
    if (toS <= fromS) throw bad(`--blackout: ${JSON.stringify(raw)} ends before it starts`, blackoutHint);
    if (m[3] === undefined) return { fromS, toS };
    const gateway = Number(m[3]);
    if (gateway < 1) throw bad(`--blackout: gateways count from 1 (got ${gateway})`, blackoutHint);
    return { fromS, toS, gateway };
  });
}

/** Whether the scrape of gateway `gateway` (0-based) at `nowMs` fails. */
export function scrapeFails(blackouts: readonly Blackout[], gateway: number, nowMs: number): boolean {
  return blackouts.some((b) => nowMs >= b.fromS * 1000 && nowMs < b.toS * 1000 && (b.gateway === undefined || b.gateway === gateway + 1));
}

export const scrapeFailedCode = 'SCRAPE_FAILED';

/** Thrown by a stats source under the `error` policy; its code tells it from a bug. */
export class ScrapeFailed extends Error {
  readonly code = scrapeFailedCode;
}

export interface FailedScrapePolicy {
  description: string;
  /**
   * What the stats source reports for a gateway whose scrape failed: its samples, and whether
   * they count as that gateway's answer. `last` is what it returned for that gateway the last
   * time the scrape succeeded. It may throw ScrapeFailed.
   */
  contributes(failed: { gateway: number; last: FunctionSample[] | undefined }): { samples: FunctionSample[]; answered: boolean };
}

export const failedScrapePolicies: Record<string, FailedScrapePolicy> = {
  missing: {
    description: 'the gateway did not answer, as HttpStatsSource reports it: its seconds are unknown, a partial answer is scaled up, and under half coverage the scale holds',
    contributes: () => ({ samples: [], answered: false }),
  },
  zero: {
    description: 'no samples from that gateway, counted as an answer of zero traffic (what kubefn did before it told missing data from zero)',
    contributes: () => ({ samples: [], answered: true }),
  },
  'last-good': {
    description: "the gateway's last successful samples again, as if it had said the same",
    contributes: ({ last }) => ({ samples: last ?? [], answered: true }),
  },
  error: {
    description: 'the stats source throws: the Autoscaler counts it as a gateway that did not answer',
    contributes: ({ gateway }) => {
      throw new ScrapeFailed(`scrape of gateway ${gateway + 1} failed`);
    },
  },
};

export const defaultFailedScrape = 'missing';
