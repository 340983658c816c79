// Where a process's CPU time went, from the .cpuprofile files `node --cpu-prof` writes: the
// functions with the most self time, the functions with the most time including what they
// called, and the time by area (a package under node_modules, a kubefn package, Node's own code,
// garbage collection, idle). For the benchmarks' BENCH_CPU_PROF.

import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  /** µs between samples. */
  timeDeltas: number[];
}

/** "node_modules/<package>", "kubefn/<workspace>", "node:internals", or the V8 pseudo-frame ("(garbage collector)"…). */
export function areaOf(url: string, functionName: string): string {
  if (!url) return functionName.startsWith('(') ? functionName : '(native)';
  if (url.startsWith('node:')) return 'node:internals';
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + '/node_modules/'.length).split('/');
    return `node_modules/${rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]}`;
  }
  const m = /\/(platform|runtime-node|builder|autoscaler|gateway|server|cli|tests)\/(dist|bin)\//.exec(url);
  return m ? `kubefn/${m[1]}` : url;
}

export interface ProfileSummary {
  file: string;
  totalMs: number;
  idleMs: number;
  areas: { area: string; ms: number }[];
  self: { fn: string; ms: number }[];
  inclusive: { fn: string; ms: number }[];
}

export function summarizeProfile(file: string, profile: CpuProfile, top = 25): ProfileSummary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  profile.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const keyOf = (n: ProfileNode) => `${n.callFrame.functionName || '(anonymous)'} ${areaOf(n.callFrame.url, n.callFrame.functionName)}${n.callFrame.url ? `:${path.basename(n.callFrame.url)}:${n.callFrame.lineNumber + 1}` : ''}`;

  const self = new Map<string, number>();
  const areas = new Map<string, number>();
  const inclusive = new Map<string, number>();
  const add = (m: Map<string, number>, k: string, us: number) => m.set(k, (m.get(k) ?? 0) + us);
  // Depth first from the root; each sample counts once for every distinct function on its stack.
  const root = profile.nodes[0]!;
  const stack: { node: ProfileNode; above: ReadonlySet<string> }[] = [{ node: root, above: new Set() }];
  while (stack.length) {
    const { node, above } = stack.pop()!;
    const key = keyOf(node);
    const here = new Set(above).add(key);
    const us = selfUs.get(node.id) ?? 0;
    if (us) {
      add(self, key, us);
      add(areas, areaOf(node.callFrame.url, node.callFrame.functionName), us);
      for (const k of here) add(inclusive, k, us);
    }
    for (const c of node.children ?? []) stack.push({ node: byId.get(c)!, above: here });
  }
  const total = profile.timeDeltas.reduce((a, b) => a + b, 0);
  const sorted = (m: Map<string, number>, n: number, skip: (k: string) => boolean = () => false) =>
    [...m].filter(([k]) => !skip(k)).sort((a, b) => b[1] - a[1]).slice(0, n).map(([k, us]) => [k, Math.round(us / 100) / 10] as const);
  const pseudo = (k: string) => /^\((root|program|idle)\)/.test(k);
  return {
    file,
    totalMs: Math.round(total / 1000),
    idleMs: Math.round((areas.get('(idle)') ?? 0) / 1000),
    areas: sorted(areas, 20).map(([area, ms]) => ({ area, ms })),
    self: sorted(self, top).map(([fn, ms]) => ({ fn, ms })),
    inclusive: sorted(inclusive, top, pseudo).map(([fn, ms]) => ({ fn, ms })),
  };
}

/** A readable summary of every .cpuprofile in `dir`. */
export async function summarizeCpuProfiles(dir: string): Promise<string> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.cpuprofile')).sort();
  const out: string[] = [];
  for (const f of files) {
    const s = summarizeProfile(f, JSON.parse(await readFile(path.join(dir, f), 'utf8')) as CpuProfile);
    const busy = s.totalMs - s.idleMs;
    const pct = (ms: number) => `${((100 * ms) / Math.max(1, busy)).toFixed(1)}%`;
    out.push(`CPU profile ${path.join(dir, f)}: ${s.totalMs} ms sampled, ${busy} ms busy (percentages of busy time)`);
    out.push('by area:', ...s.areas.map((a) => `  ${pct(a.ms).padStart(6)}  ${a.ms} ms  ${a.area}`));
    out.push('self time:', ...s.self.map((x) => `  ${pct(x.ms).padStart(6)}  ${x.ms} ms  ${x.fn}`));
    out.push('including callees:', ...s.inclusive.map((x) => `  ${pct(x.ms).padStart(6)}  ${x.ms} ms  ${x.fn}`));
  }
  return out.join('\n');
}
