// The long-run stability plot: error per pass (top panel) and per domain within the passes (bottom
// panel, one point per pass x domain, passes separated by grid lines), one line per model x method.
// Built as SVG text and rasterised to PNG by sharp (librsvg).
import { writeFile } from 'node:fs/promises';
import sharp from 'sharp';
import { TtaqError } from '../errors/index.ts';
import type { EvalRow } from './run.ts';

export interface PlotOptions {
  readonly title?: string;
  readonly width?: number;
  readonly height?: number;
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'];

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const fmt = (x: number): string => (Math.round(x * 10) / 10).toFixed(1);

/** A nice step for about `n` ticks over [lo, hi]. */
function tickStep(lo: number, hi: number, n: number): number {
  const raw = Math.max(1e-9, (hi - lo) / n);
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}

interface Panel { x: number; y: number; w: number; h: number }

function panel(p: Panel, series: { label: string; ys: readonly number[]; color: string }[], xLabels: (i: number) => string | null, yTitle: string, separators: readonly number[], markers: boolean): string {
  const all = series.flatMap((s) => s.ys).filter(Number.isFinite);
  let lo = Math.min(...all);
  let hi = Math.max(...all);
  if (!(hi > lo)) { lo -= 1; hi += 1; }
  const pad = (hi - lo) * 0.08;
  const step = tickStep(lo - pad, hi + pad, 5);
  lo = Math.floor((lo - pad) / step) * step;
  hi = Math.ceil((hi + pad) / step) * step;
  const n = Math.max(...series.map((s) => s.ys.length));
  const X = (i: number): number => p.x + (n <= 1 ? p.w / 2 : (i * p.w) / (n - 1));
  const Y = (v: number): number => p.y + p.h - ((v - lo) / (hi - lo)) * p.h;
  const out: string[] = [];
  out.push(`<rect x="${p.x}" y="${p.y}" width="${p.w}" height="${p.h}" fill="none" stroke="#888"/>`);
  for (let v = lo; v <= hi + step / 2; v += step) {
    out.push(`<line x1="${p.x}" x2="${p.x + p.w}" y1="${Y(v).toFixed(1)}" y2="${Y(v).toFixed(1)}" stroke="#e4e4e4"/>`);
    out.push(`<text x="${p.x - 6}" y="${(Y(v) + 4).toFixed(1)}" text-anchor="end" font-size="12">${fmt(v)}</text>`);
  }
  for (const sx of separators) out.push(`<line x1="${X(sx).toFixed(1)}" x2="${X(sx).toFixed(1)}" y1="${p.y}" y2="${p.y + p.h}" stroke="#cfcfcf" stroke-dasharray="3,3"/>`);
  for (let i = 0; i < n; i++) {
    const t = xLabels(i);
    if (t !== null) out.push(`<text x="${X(i).toFixed(1)}" y="${p.y + p.h + 16}" text-anchor="middle" font-size="12">${esc(t)}</text>`);
  }
  out.push(`<text x="${p.x - 44}" y="${p.y + p.h / 2}" text-anchor="middle" font-size="13" transform="rotate(-90 ${p.x - 44} ${p.y + p.h / 2})">${esc(yTitle)}</text>`);
  for (const s of series) {
    const pts = s.ys.map((v, i) => `${X(i).toFixed(1)},${Y(v).toFixed(1)}`).join(' ');
    out.push(`<polyline points="${pts}" fill="none" stroke="${s.color}" stroke-width="${markers ? 2 : 1.3}"/>`);
    if (markers) for (let i = 0; i < s.ys.length; i++) out.push(`<circle cx="${X(i).toFixed(1)}" cy="${Y(s.ys[i]!).toFixed(1)}" r="3" fill="${s.color}"/>`);
  }
  return out.join('\n');
}

/** The SVG text of the stability plot for rows of one protocol run (any number of passes). */
export function stabilitySvg(rows: readonly EvalRow[], o: PlotOptions = {}): string {
  if (rows.length === 0) throw new TtaqError('CLI_USAGE', 'nothing to plot: the evaluation produced no rows');
  const W = o.width ?? 960;
  const H = o.height ?? 720;
  const left = 80;
  const right = 40;
  const multiModel = new Set(rows.map((r) => r.model)).size > 1;
  const label = (r: EvalRow): string => `${multiModel ? `${r.model} ` : ''}${r.method}`;
  const passes = Math.max(...rows.map((r) => r.passMeans.length));
  const D = rows[0]!.domains.length;
  const color = (i: number): string => COLORS[i % COLORS.length]!;
  const top: Panel = { x: left, y: 70, w: W - left - right, h: (H - 170) * 0.42 };
  const bottom: Panel = { x: left, y: top.y + top.h + 60, w: W - left - right, h: (H - 170) * 0.58 };
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="DejaVu Sans, Arial, Helvetica, sans-serif">`);
  parts.push(`<rect width="${W}" height="${H}" fill="#fff"/>`);
  const title = o.title ?? `${rows[0]!.protocol}: error per pass (top) and per domain within passes (bottom), batch ${rows[0]!.batch}`;
  parts.push(`<text x="${W / 2}" y="24" text-anchor="middle" font-size="16">${esc(title)}</text>`);
  // Legend: label, first pass, last pass, last - first.
  rows.forEach((r, i) => {
    const first = r.passMeans[0]!;
    const last = r.passMeans[r.passMeans.length - 1]!;
    const d = last - first;
    const x = left + i * Math.min(300, (W - left - right) / rows.length);
    parts.push(`<rect x="${x}" y="38" width="14" height="4" fill="${color(i)}"/>`);
    parts.push(`<text x="${x + 20}" y="45" font-size="12">${esc(`${label(r)}: ${fmt(first)} → ${fmt(last)} (${d >= 0 ? '+' : ''}${fmt(d)})`)}</text>`);
  });
  parts.push(panel(top, rows.map((r, i) => ({ label: label(r), ys: r.passMeans, color: color(i) })), (i) => `pass ${i + 1}`, 'mean error (%)', [], true));
  parts.push(panel(
    bottom,
    rows.map((r, i) => ({ label: label(r), ys: r.passErrors.flat(), color: color(i) })),
    (i) => (i % D === Math.floor(D / 2) ? `pass ${Math.floor(i / D) + 1}` : null),
    'error per domain (%)',
    Array.from({ length: Math.max(0, passes - 1) }, (_, p) => (p + 1) * D - 0.5),
    passes * D <= 30,
  ));
  parts.push('</svg>');
  return parts.join('\n');
}

/** Renders the stability plot to a PNG file; returns the SVG text. */
export async function writeStabilityPng(path: string, rows: readonly EvalRow[], o: PlotOptions = {}): Promise<string> {
  const svg = stabilitySvg(rows, o);
  let png: Buffer;
  try {
    png = await sharp(Buffer.from(svg)).png().toBuffer();
  } catch (e) {
    throw new TtaqError('EVAL_PLOT_FAILED', `--plot ${path}: rendering the plot failed (${(e as Error).message}); the table is unaffected, write JSON with --out x.json and plot it elsewhere`, undefined, { cause: e });
  }
  try {
    await writeFile(path, png);
  } catch (e) {
    throw new TtaqError('EVAL_PLOT_FAILED', `--plot ${path}: cannot write the PNG (${(e as Error).message}); check that the folder exists and is writable`, undefined, { cause: e });
  }
  return svg;
}
