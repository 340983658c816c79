// A hand-written SVG chart of one run: load and queue on top, replicas below with panic shaded.

import type { SimResult } from './simulate.js';
import { describeStartup } from './faults.js';

const W = 960;
const left = 70;
const right = W - 70;
const colours = { offered: '#1f77b4', queued: '#ff7f0e', desired: '#7f7f7f', ready: '#2ca02c', panic: '#d62728' };

interface Panel {
  top: number;
  bottom: number;
}
const loadPanel: Panel = { top: 80, bottom: 300 };
const replicaPanel: Panel = { top: 360, bottom: 560 };
const H = 620;

/** Round tick steps (1, 2, 5 x 10^k) covering [0, max] in about `count` steps. */
export function ticks(max: number, count = 5): number[] {
  if (!(max > 0)) return [0, 1];
  const raw = max / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 5, 10].find((m) => m * mag >= raw) ?? 10) * mag;
  const out: number[] = [];
  for (let v = 0; v < max + step - 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const fmt = (n: number) => (Math.abs(n) >= 10_000 ? `${n / 1000}k` : String(n));
const r1 = (n: number) => Math.round(n * 10) / 10;

export function chartSvg(r: SimResult): string {
  const { rows, settings: s, options: o } = r;
  const duration = Math.max(1, rows.length);
  const x = (t: number) => r1(left + ((right - left) * t) / duration);
  const xTicks = ticks(duration, 10).filter((t) => t <= duration);
  const out: string[] = [];
  const push = (...parts: string[]) => out.push(...parts);

  /** A y scale for a panel, its grid and tick labels on one side. */
  const axis = (p: Panel, max: number, side: 'left' | 'right', label: string, colour: string, grid: boolean) => {
    const vs = ticks(max);
    const top = vs.at(-1)!;
    const y = (v: number) => r1(p.bottom - ((p.bottom - p.top) * v) / top);
    const tx = side === 'left' ? left - 6 : right + 6;
    const anchor = side === 'left' ? 'end' : 'start';
    for (const v of vs) {
      if (grid) push(`<line x1="${left}" x2="${right}" y1="${y(v)}" y2="${y(v)}" stroke="#e5e5e5"/>`);
      push(`<text x="${tx}" y="${y(v) + 4}" text-anchor="${anchor}" fill="${colour}">${fmt(v)}</text>`);
    }
    const lx = side === 'left' ? 16 : W - 16;
    const ly = (p.top + p.bottom) / 2;
    push(`<text transform="translate(${lx} ${ly}) rotate(${side === 'left' ? -90 : 90})" text-anchor="middle" fill="${colour}">${esc(label)}</text>`);
    return y;
  };
  const line = (points: [number, number][], colour: string, extra = '') =>
    push(`<polyline fill="none" stroke="${colour}" stroke-width="1.5" ${extra} points="${points.map(([a, b]) => `${a},${b}`).join(' ')}"/>`);
  /** A value that holds over each second [t, t + 1). */
  const steps = (values: number[], y: (v: number) => number) =>
    values.flatMap((v, t): [number, number][] => [[x(t), y(v)], [x(t + 1), y(v)]]);
  const frame = (p: Panel) => {
    push(`<rect x="${left}" y="${p.top}" width="${right - left}" height="${p.bottom - p.top}" fill="none" stroke="#999"/>`);
    for (const t of xTicks) {
      push(`<line x1="${x(t)}" x2="${x(t)}" y1="${p.bottom}" y2="${p.bottom + 4}" stroke="#999"/>`);
      push(`<text x="${x(t)}" y="${p.bottom + 16}" text-anchor="middle">${t}</text>`);
    }
  };
  const legend = (y: number, items: [string, string, string?][]) => {
    let lx = left;
    for (const [name, colour, dash] of items) {
      push(`<line x1="${lx}" x2="${lx + 24}" y1="${y}" y2="${y}" stroke="${colour}" stroke-width="3" ${dash ? `stroke-dasharray="${dash}"` : ''}/>`);
      push(`<text x="${lx + 30}" y="${y + 4}">${esc(name)}</text>`);
      lx += 40 + name.length * 7;
    }
  };

  push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  push(`<rect width="${W}" height="${H}" fill="white"/>`);
  const target = s.metric === 'rps' ? `${r1(s.targetPerReplica)} req/s` : `${r1(s.targetPerReplica)} in flight`;
  push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(`${r.scenario.name}: ${r.scenario.description}`)}</text>`);
  push(
    `<text x="${W / 2}" y="42" text-anchor="middle">${esc(
      `target ${target}/replica, stable ${s.stableWindowMs / 1000} s, panic ${s.panicWindowMs / 1000} s at ${Math.round(s.panicThreshold * 100)} %, ` +
        `max ${s.maxScale || '∞'}; capacity ${r.capacity}/replica, start-up ${describeStartup(o.startup)}, service ${o.serviceMs} ms ${o.serviceDist}, seed ${o.seed}` +
        (o.gateways > 1 ? `; ${o.gateways} gateways` : '') +
        (o.nodeCapacity !== undefined ? `; nodes hold ${o.nodeCapacity}` : '') +
        (o.restartAtS.length ? `; restart at ${o.restartAtS.join(', ')} s` : '') +
        (o.blackouts.length ? `; scrapes fail ${o.blackouts.map((b) => `${b.fromS}..${b.toS} s${b.gateway ? ` (gateway ${b.gateway})` : ''}`).join(', ')} (${o.failedScrape})` : '') +
        (o.decider !== 'knative' ? `; decider ${o.decider}` : ''),
    )}</text>`,
  );

  // Top: offered load (left axis) and mean queue (right axis).
  legend(62, [['offered req/s', colours.offered], ['queued requests (mean)', colours.queued]]);
  frame(loadPanel);
  const yLoad = axis(loadPanel, Math.max(1, ...rows.map((row) => row.arrived)), 'left', 'req/s', colours.offered, true);
  const yQueue = axis(loadPanel, Math.max(1, ...rows.map((row) => row.queued)), 'right', 'queued', colours.queued, false);
  line(rows.map((row) => [x(row.t + 0.5), yLoad(row.arrived)]), colours.offered);
  line(rows.map((row) => [x(row.t + 0.5), yQueue(row.queued)]), colours.queued);

  // Bottom: panic periods, desired and ready replicas.
  const failing = rows.some((row) => row.failedScrapes > 0);
  const restarts = rows.filter((row) => row.restarted);
  legend(342, [
    ['desired', colours.desired, '5 3'],
    ['ready', colours.ready],
    ['panic', '#f4c7c7'],
    ...(failing ? [['failed scrapes', '#c9c9e8'] as [string, string]] : []),
    ...(restarts.length ? [['autoscaler restart', '#000', '2 2'] as [string, string, string]] : []),
  ]);
  const p = replicaPanel;
  // One band per run of seconds (adjacent per-second rects would leave hairline gaps): panic,
  // and failed scrapes in the lower half.
  const bands = (on: (i: number) => boolean, top: number, fill: string) => {
    for (let i = 0; i < rows.length; i++) {
      if (!on(i)) continue;
      let j = i;
      while (j + 1 < rows.length && on(j + 1)) j++;
      push(`<rect x="${x(rows[i]!.t)}" y="${top}" width="${r1(x(rows[j]!.t + 1) - x(rows[i]!.t))}" height="${r1(p.bottom - top)}" fill="${fill}"/>`);
      i = j;
    }
  };
  bands((i) => rows[i]!.panicking, p.top, '#f4c7c7');
  bands((i) => rows[i]!.failedScrapes > 0, (p.top + p.bottom) / 2, '#c9c9e8');
  // A restart takes effect at the end of its row's second.
  for (const row of restarts) push(`<line x1="${x(row.t + 1)}" x2="${x(row.t + 1)}" y1="${p.top}" y2="${p.bottom}" stroke="#000" stroke-dasharray="2 2"/>`);
  frame(p);
  // 10 % headroom, so a line at the maximum does not hide in the frame.
  const yRep = axis(p, 1.1 * Math.max(1, ...rows.map((row) => Math.max(row.desired, row.ready))), 'left', 'replicas', '#333', true);
  line(steps(rows.map((row) => row.desired), yRep), colours.desired, 'stroke-dasharray="5 3"');
  line(steps(rows.map((row) => row.ready), yRep), colours.ready);
  push(`<text x="${(left + right) / 2}" y="${H - 8}" text-anchor="middle">time (s)</text>`);
  push('</svg>');
  return out.join('\n') + '\n';
}

const deciderColours = ['#2ca02c', '#d62728', '#9467bd', '#8c564b'];

/**
 * The runs of one scenario under different deciders on one chart: the offered load on top; below,
 * each decider's ready replicas (solid) and desired (dashed), and the ideal replicas (grey).
 */
export function compareSvg(runs: SimResult[], ideal: (r: SimResult) => number[]): string {
  const first = runs[0];
  if (!first) throw new RangeError('compareSvg needs at least one run');
  const duration = Math.max(1, ...runs.map((r) => r.rows.length));
  const x = (t: number) => r1(left + ((right - left) * t) / duration);
  const out: string[] = [];
  const push = (...parts: string[]) => out.push(...parts);
  const frame = (p: Panel) => {
    push(`<rect x="${left}" y="${p.top}" width="${right - left}" height="${p.bottom - p.top}" fill="none" stroke="#999"/>`);
    for (const t of ticks(duration, 10).filter((v) => v <= duration)) {
      push(`<text x="${x(t)}" y="${p.bottom + 16}" text-anchor="middle">${t}</text>`);
    }
  };
  const scale = (p: Panel, max: number, label: string) => {
    const vs = ticks(max);
    const top = vs.at(-1)!;
    const y = (v: number) => r1(p.bottom - ((p.bottom - p.top) * v) / top);
    for (const v of vs) {
      push(`<line x1="${left}" x2="${right}" y1="${y(v)}" y2="${y(v)}" stroke="#e5e5e5"/>`);
      push(`<text x="${left - 6}" y="${y(v) + 4}" text-anchor="end">${fmt(v)}</text>`);
    }
    push(`<text transform="translate(16 ${(p.top + p.bottom) / 2}) rotate(-90)" text-anchor="middle">${esc(label)}</text>`);
    return y;
  };
  const steps = (values: number[], y: (v: number) => number, colour: string, extra = '') =>
    push(`<polyline fill="none" stroke="${colour}" stroke-width="1.5" ${extra} points="${values.flatMap((v, t) => [`${x(t)},${y(v)}`, `${x(t + 1)},${y(v)}`]).join(' ')}"/>`);

  push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  push(`<rect width="${W}" height="${H}" fill="white"/>`);
  push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(`${first.scenario.name}: ${first.scenario.description}`)}</text>`);
  const o = first.options;
  push(`<text x="${W / 2}" y="42" text-anchor="middle">${esc(`start-up ${describeStartup(o.startup)}, service ${o.serviceMs} ms, max ${first.settings.maxScale || '∞'}, seed ${o.seed}: ${runs.map((r) => r.options.decider).join(' vs ')}`)}</text>`);
  frame(loadPanel);
  const yLoad = scale(loadPanel, Math.max(1, ...first.rows.map((row) => row.arrived)), 'offered req/s');
  steps(first.rows.map((row) => row.arrived), yLoad, colours.offered);
  frame(replicaPanel);
  const yRep = scale(replicaPanel, 1.1 * Math.max(1, ...runs.flatMap((r) => r.rows.map((row) => Math.max(row.desired, row.ready)))), 'replicas');
  steps(ideal(first), yRep, '#999', 'stroke-width="3" opacity="0.6"');
  let lx = left;
  const legend = (name: string, colour: string, dash = '') => {
    push(`<line x1="${lx}" x2="${lx + 24}" y1="342" y2="342" stroke="${colour}" stroke-width="3" ${dash ? `stroke-dasharray="${dash}"` : ''}/>`);
    push(`<text x="${lx + 30}" y="346">${esc(name)}</text>`);
    lx += 40 + name.length * 7;
  };
  legend('ideal', '#999');
  runs.forEach((r, i) => {
    const colour = deciderColours[i % deciderColours.length]!;
    steps(r.rows.map((row) => row.ready), yRep, colour);
    steps(r.rows.map((row) => row.desired), yRep, colour, 'stroke-dasharray="5 3" opacity="0.7"');
    legend(`${r.options.decider} ready (desired dashed)`, colour);
  });
  push(`<text x="${(left + right) / 2}" y="${H - 8}" text-anchor="middle">time (s)</text>`);
  push('</svg>');
  return out.join('\n') + '\n';
}
