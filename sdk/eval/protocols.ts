// The evaluation protocols (SPEC section 7) as data: how samples are ordered within a domain (a
// label order of sdk/data's streams), the default batch size, and how many passes over the domain
// sequence.
import type { LabelOrder } from '../data/index.ts';
import { TtaqError } from '../errors/index.ts';

export interface Protocol {
  readonly name: string;
  readonly description: string;
  readonly order: LabelOrder;
  readonly batch: number;
  readonly passes: number;
  /** Severity of the on-the-fly corruptions. */
  readonly severity: number;
}

export const PROTOCOLS: Readonly<Record<string, Protocol>> = {
  continual: {
    name: 'continual',
    description: '15 corruptions at severity 5 in order, one pass, no reset; shuffled within each domain',
    order: { kind: 'shuffled' },
    batch: 64,
    passes: 1,
    severity: 5,
  },
  imbalanced: {
    name: 'imbalanced',
    description: 'continual, with samples of each domain ordered by a Dirichlet(0.1) label-shift sampler (segments of 100)',
    order: { kind: 'dirichlet', alpha: 0.1, segment: 100 },
    batch: 64,
    passes: 1,
    severity: 5,
  },
  camera: {
    name: 'camera',
    description: 'small, temporally correlated batches (runs of one class, 32 frames on average) as from a camera',
    order: { kind: 'runs', meanRun: 32 },
    batch: 4,
    passes: 1,
    severity: 5,
  },
  longrun: {
    name: 'longrun',
    description: 'long-run stability: 10 passes over the 15-domain continual stream, no reset',
    order: { kind: 'shuffled' },
    batch: 64,
    passes: 10,
    severity: 5,
  },
};

export function getProtocol(name: string): Protocol {
  const p = PROTOCOLS[name];
  if (!p) throw new TtaqError('CLI_USAGE', `unknown protocol '${name}'; use one of ${Object.keys(PROTOCOLS).join(', ')}`);
  return p;
}

/** Short column names for the 15 corruptions (the papers' table headers). */
/** A domain name as `ttaq corrupt` writes it: `<corruption>[-<severity>]`. */
export const parseIdxName = (n: string): { n: string; c: string; s: number | undefined } => {
  const m = /^(.*?)(?:-([1-5]))?$/.exec(n)!;
  return { n, c: m[1]!, s: m[2] ? Number(m[2]) : undefined };
};

export const SHORT_DOMAIN: Readonly<Record<string, string>> = {
  gaussian_noise: 'gauss', shot_noise: 'shot', impulse_noise: 'impul', defocus_blur: 'defoc', glass_blur: 'glass',
  motion_blur: 'motn', zoom_blur: 'zoom', snow: 'snow', frost: 'frost', fog: 'fog', brightness: 'brit',
  contrast: 'contr', elastic_transform: 'elast', pixelate: 'pixel', jpeg_compression: 'jpeg',
};

/** How a label order arranges the samples of a domain, in words. */
export function describeOrder(order: LabelOrder): string {
  switch (order.kind) {
    case 'shuffled': return 'shuffled within each domain';
    case 'sequential': return 'in file order within each domain';
    case 'dirichlet': return `label shift within each domain (Dirichlet(${order.alpha}) sampler, segments of ${order.segment})`;
    case 'runs': return `runs of one class within each domain (${order.meanRun} on average)`;
  }
}

export interface RunDescription {
  readonly protocol: Protocol;
  /** Domain names in visiting order, as read. */
  readonly domains: readonly string[];
  /** Where the domains come from, in words. */
  readonly source: string;
  /** The severity, where it chose the data (undefined for IDX domains named by file). */
  readonly severity?: number | undefined;
  readonly batch: number;
  readonly passes: number;
  readonly limit?: number | undefined;
}

/**
 * The results header: the run that happens, not the protocol's defaults (its description names 15
 * corruptions at severity 5, which --data, --domains, --severity or --passes may all change).
 */
export function describeRun(r: RunDescription): string {
  const d = r.domains;
  const names = d.length > 6 ? `${d.slice(0, 3).join(', ')}, ..., ${d[d.length - 1]}` : d.join(', ');
  return `${r.protocol.name}: ${d.length} domain${d.length === 1 ? '' : 's'} (${names}) from ${r.source}${r.severity !== undefined ? ` at severity ${r.severity}` : ''}, ${describeOrder(r.protocol.order)}; `
    + `batch ${r.batch}, ${r.passes} pass${r.passes > 1 ? 'es' : ''}${r.limit !== undefined ? `, at most ${r.limit} samples per domain` : ''}`;
}
