// Result tables in the papers' style: one row per model x method, error (%) per domain and the
// mean; for multi-pass runs, the mean error of every pass and last - first.
import type { EvalRow } from './run.ts';
import { parseIdxName, SHORT_DOMAIN } from './protocols.ts';

const fmt = (x: number): string => (Number.isFinite(x) ? x.toFixed(1) : 'n/a');

/**
 * Column heads for domain names: a corruption's short name (gauss for gaussian_noise, also for
 * `ttaq corrupt`'s gaussian_noise-5), keeping the severity (gauss-3) when the domains are at more
 * than one severity, so that no two columns read the same.
 */
export function domainHeads(domains: readonly string[]): string[] {
  const parts = domains.map(parseIdxName);
  const severities = new Set(parts.map((p) => p.s).filter((s) => s !== undefined));
  return parts.map((p) => {
    const short = SHORT_DOMAIN[p.c];
    if (!short) return p.n;
    return p.s !== undefined && severities.size > 1 ? `${short}-${p.s}` : short;
  });
}

/** Markdown: `| model | method | d1 | ... | mean |`, then (several passes) a per-pass table. */
export function markdownTable(rows: readonly EvalRow[]): string {
  if (rows.length === 0) return '(no results)\n';
  const domains = rows[0]!.domains;
  const head = ['model', 'method', ...domainHeads(domains), 'mean'];
  const lines = [
    `| ${head.join(' | ')} |`,
    `| ${head.map((_, i) => (i < 2 ? '---' : '---:')).join(' | ')} |`,
    ...rows.map((r) => `| ${[r.model, r.method, ...r.errors.map(fmt), `**${fmt(r.mean)}**`].join(' | ')} |`),
  ];
  const passes = Math.max(...rows.map((r) => r.passMeans.length));
  if (passes > 1) {
    const ph = ['model', 'method', ...Array.from({ length: passes }, (_, i) => `pass ${i + 1}`), 'last - first'];
    lines.push('', `| ${ph.join(' | ')} |`, `| ${ph.map((_, i) => (i < 2 ? '---' : '---:')).join(' | ')} |`);
    for (const r of rows) {
      const pm = r.passMeans;
      lines.push(`| ${[r.model, r.method, ...pm.map(fmt), fmt(pm[pm.length - 1]! - pm[0]!)].join(' | ')} |`);
    }
  }
  return lines.join('\n') + '\n';
}

/** One line per row: what ran, how long, how many resets. */
export function runSummary(rows: readonly EvalRow[]): string {
  return rows.map((r) => `${r.model} ${r.method} (${r.protocol}, batch ${r.batch}): mean error ${fmt(r.mean)}%, ${r.images} images in ${r.seconds.toFixed(0)} s, ${r.counters.updates} updates, ${r.counters.skipped} skipped, resets: ${r.counters.collapseResets} collapse / ${r.counters.nonFiniteResets} non-finite`).join('\n') + '\n';
}
