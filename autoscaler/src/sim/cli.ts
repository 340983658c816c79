// `npm run sim`: runs scenarios (or a CSV trace), writes per-run CSV and SVG, prints a summary.

import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, extname, join } from 'node:path';
import { KubefnError, ScaleSchema } from '@kubefn/platform';
import { defaultDecider, deciders } from './deciders.js';

/** What a run compares without --decider: the default first, then Knative's. */
const defaultComparison = [defaultDecider, 'knative'];
import { defaultFailedScrape, failedScrapePolicies, parseBlackouts, parseStartup } from './faults.js';
import { parseTrace, scenarios, type Scenario } from './scenarios.js';
import { simulate, type SimOptions, type SimResult } from './simulate.js';
import { idealReplicas, summarize, summaryMarkdown, toCsv, type Summary } from './summary.js';
import { chartSvg, compareSvg } from './svg.js';

export const usage = `usage: npm run sim -- [options] [scale overrides]
  --scenario a,b      scenarios to run: ${Object.keys(scenarios).join(', ')} (default: all, or none with --trace)
  --trace file.csv    replay a trace of "second,rps" rows
  --out dir           where to write <name>.csv, <name>.svg, summary.{md,json} (default sim-results)
  --seed n            PRNG seed (default 1)
  --startup-ms d      scale call to ready replica, ms, drawn per replica (default 500): "2000" (always),
                      "1500..2500" (uniform), "p50=800,p99=2000" (log-normal with that median and p99)
  --service-ms n      mean service time (default 100)
  --service fixed|exp service time distribution (default fixed)
  --capacity n        requests one replica serves at once (default containerConcurrency, else 100 for the scenarios, 10 for a trace)
  --queue-depth n     gateway queue bound (default 10000)
  --decide-every-ms n how often the autoscaler decides (default: the decider's own, demand 1000, knative 2000)
  --gateways n        gateways, each with its own queue (--queue-depth each) and stats; the load is split evenly (default 1)
  --restart-at s[,s]  restart the autoscaler at second s: its windows and decider state start empty
  --blackout A..B[:g] every scrape (of gateway g only, from 1) at seconds A <= t < B fails; several comma-separated
  --failed-scrape p   what a failed scrape contributes (default ${defaultFailedScrape}):
${Object.entries(failedScrapePolicies).map(([k, v]) => `                        ${k}: ${v.description}`).join('\n')}
  --node-capacity n   replicas the nodes hold; those beyond n never become ready (default unlimited)
  --decider a,b       the autoscalers to run, each scenario under each, side by side (default ${defaultComparison.join(',')}):
${Object.entries(deciders).map(([k, v]) => `                        ${k}: ${v.description}`).join('\n')}
Any other --kebab-name value sets scale.kebabName in the function spec, e.g.
  --target 50 --stable-window 30s --metric rps --max 20 --panic-threshold-percent 300`;

export interface CliArgs {
  scenarios: Scenario[];
  /** Each scenario runs under each of these, side by side. */
  deciders: string[];
  out: string;
  options: Partial<SimOptions> & { scale: Record<string, unknown> };
}

const bad = (message: string) => new KubefnError('BAD_REQUEST', message, { hint: 'see npm run sim -- --help' });
const camel = (s: string) => s.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

function number(flag: string, v: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw bad(`${flag} needs a number (got ${JSON.stringify(v)})`);
  return n;
}

function whole(flag: string, v: string): number {
  const n = number(flag, v);
  if (!Number.isInteger(n) || n < 1) throw bad(`${flag} needs whole seconds >= 1 (got ${JSON.stringify(v)})`);
  return n;
}

export async function parseArgs(argv: string[]): Promise<CliArgs> {
  const flags = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) throw bad(`unexpected argument ${JSON.stringify(a)}`);
    const eq = a.indexOf('=');
    const [name, value] = eq > 0 ? [a.slice(2, eq), a.slice(eq + 1)] : [a.slice(2), argv[++i]];
    if (value === undefined) throw bad(`--${name} needs a value`);
    flags.set(name, value);
  }
  const take = (name: string) => {
    const v = flags.get(name);
    flags.delete(name);
    return v;
  };
  const options: CliArgs['options'] = { scale: {} };
  const numeric: [string, keyof SimOptions][] = [
    ['seed', 'seed'], ['service-ms', 'serviceMs'], ['capacity', 'capacity'], ['queue-depth', 'queueDepth'],
    ['decide-every-ms', 'decideEveryMs'], ['gateways', 'gateways'], ['node-capacity', 'nodeCapacity'],
  ];
  for (const [flag, key] of numeric) {
    const v = take(flag);
    if (v !== undefined) (options as Record<string, unknown>)[key] = number(`--${flag}`, v);
  }
  for (const flag of ['gateways', 'node-capacity'] as const) {
    const v = (options as Record<string, unknown>)[camel(flag)] as number | undefined;
    const min = flag === 'gateways' ? 1 : 0;
    if (v !== undefined && !(Number.isInteger(v) && v >= min && v <= (flag === 'gateways' ? 100 : 100_000))) {
      throw bad(`--${flag} needs a whole number from ${min} to ${flag === 'gateways' ? 100 : 100_000} (got ${v})`);
    }
  }
  const startup = take('startup-ms');
  if (startup !== undefined) options.startup = parseStartup(startup);
  const restart = take('restart-at');
  if (restart !== undefined) options.restartAtS = restart.split(',').map((v) => whole('--restart-at', v));
  const blackout = take('blackout');
  if (blackout !== undefined) options.blackouts = parseBlackouts(blackout);
  const failed = take('failed-scrape');
  if (failed !== undefined) {
    if (!failedScrapePolicies[failed]) throw bad(`--failed-scrape is one of ${Object.keys(failedScrapePolicies).join(', ')} (got ${JSON.stringify(failed)})`);
    options.failedScrape = failed;
  }
  const deciderList = take('decider')?.split(',').map((d) => d.trim()) ?? defaultComparison;
  for (const d of deciderList) {
    if (!deciders[d]) throw bad(`--decider is one or more of ${Object.keys(deciders).join(', ')}, comma-separated (got ${JSON.stringify(d)})`);
  }
  const service = take('service');
  if (service !== undefined) {
    if (service !== 'fixed' && service !== 'exp') throw bad(`--service is fixed or exp (got ${JSON.stringify(service)})`);
    options.serviceDist = service;
  }

  const runs: Scenario[] = [];
  const trace = take('trace');
  const names = take('scenario');
  for (const name of names?.split(',') ?? (trace ? [] : Object.keys(scenarios))) {
    const s = scenarios[name.trim()];
    if (!s) throw bad(`no scenario ${JSON.stringify(name)}; there are ${Object.keys(scenarios).join(', ')}`);
    runs.push(s);
  }
  if (trace) runs.push(parseTrace(await readFile(trace, 'utf8'), basename(trace, extname(trace))));
  const out = take('out') ?? 'sim-results';

  // The rest are scale fields; parseFunctionSpec validates them (and names unknown ones).
  const props = ScaleSchema.properties as Record<string, { type?: string } | undefined>;
  for (const [flag, v] of flags) {
    const key = camel(flag);
    const type = props[key]?.type;
    options.scale[key] = type === 'number' || type === 'integer' ? number(`--${flag}`, v) : v;
  }
  return { scenarios: runs, deciders: [...new Set(deciderList)], out, options };
}

export async function main(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(usage);
    return 0;
  }
  try {
    const args = await parseArgs(argv);
    await mkdir(args.out, { recursive: true });
    const summaries: Summary[] = [];
    for (const scenario of args.scenarios) {
      const results: SimResult[] = [];
      for (const decider of args.deciders) {
        const result = await simulate(scenario, { ...args.options, decider });
        const { settings, capacity } = result;
        if (decider === args.deciders[0] && settings.metric === 'concurrency' && capacity < settings.targetPerReplica) {
          console.warn(
            `warning: ${scenario.name}: capacity ${capacity} per replica is below the target of ${settings.targetPerReplica}: ` +
              'replicas fill up before the autoscaler adds more, so a standing queue makes up the difference; ' +
              'set --container-concurrency or --capacity at or above the target',
          );
        }
        const file = args.deciders.length > 1 ? `${scenario.name}.${decider}` : scenario.name;
        await writeFile(join(args.out, `${file}.csv`), toCsv(result.rows));
        await writeFile(join(args.out, `${file}.svg`), chartSvg(result));
        summaries.push(summarize(result));
        results.push(result);
      }
      if (results.length > 1) await writeFile(join(args.out, `${scenario.name}.compare.svg`), compareSvg(results, (r) => r.rows.map((row) => idealReplicas(r, row))));
    }
    const command = ['npm run sim', ...(argv.length ? ['--', ...argv] : [])].join(' ');
    const md = `Command: \`${command}\`\n\n${summaryMarkdown(summaries)}`;
    await writeFile(join(args.out, 'summary.md'), md);
    await writeFile(join(args.out, 'summary.json'), JSON.stringify({ command, options: args.options, summaries }, null, 2) + '\n');
    console.log(md);
    console.log(`wrote ${summaries.length} runs (CSV + SVG${args.deciders.length > 1 ? ', and a comparison SVG per scenario' : ''}) and summary.{md,json} to ${args.out}/`);
    return 0;
  } catch (err) {
    // Match on code, not instanceof: one error catalogue for the whole of kubefn.
    const e = err as Partial<KubefnError>;
    if (typeof e.code === 'string') {
      console.error(`error: ${e.message}${e.hint ? `\n${e.hint}` : ''}`);
      return 1;
    }
    throw err;
  }
}
