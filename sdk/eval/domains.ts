// Where the evaluation's domains come from, each returned as one block of samples already in stream
// order (the protocol's label order applied within the domain):
//   - Fashion-MNIST test set corrupted on the fly (sdk/data streams: plan + materialise)
//   - an IDX folder with one pair per domain: <domain>-images-idx3-ubyte[.gz] with
//     <domain>-labels-idx1-ubyte[.gz] or one shared labels-idx1-ubyte[.gz]
//   - an ImageNet-C tree: <root>/<corruption>/<severity>/<class>/<image>
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import {
  classFolders, CORRUPTIONS, DataRng, listIdxNames, listImageNetC, materializeStream, orderByLabels, planStream,
  matchClassFolders, readFashionMnist, readIdxDir, readImageNetC, resolveStreamSpec, select, type Dataset, type LabelOrder,
} from '../data/index.ts';
import { TtaqError } from '../errors/index.ts';
import type { ProgressFn } from '../progress/index.ts';

export interface DomainBlock {
  readonly name: string;
  /** Samples in stream order. */
  readonly data: Dataset;
}

export interface DomainOptions {
  /** Domain names in visiting order (default: the 15 corruptions, or every domain of the folder). */
  readonly domains?: readonly string[] | undefined;
  readonly severity: number;
  readonly order: LabelOrder;
  readonly seed: number;
  /** At most this many samples per domain. */
  readonly limit?: number | undefined;
  readonly classes: number;
  /**
   * The model's labels: an ImageNet-C tree's class folders are matched to them (matchClassFolders:
   * by name or number, else in sorted order when as many; otherwise an error).
   */
  readonly labels?: readonly string[] | undefined;
  readonly onProgress?: ProgressFn | undefined;
}

/** Applies the label order to a domain's samples (and the limit). */
export function orderDomain(d: Dataset, order: LabelOrder, rng: DataRng, classes: number, limit?: number): Dataset {
  let ids = rng.shuffle(Array.from({ length: d.count }, (_, i) => i));
  if (limit !== undefined && limit < ids.length) ids = ids.slice(0, limit);
  const ordered = orderByLabels(ids, (i) => d.labels[i]!, classes, order, rng);
  return select(d, ordered);
}

/** The Fashion-MNIST test set, corrupted per domain on the fly. */
export async function corruptedFashionMnist(o: DomainOptions): Promise<DomainBlock[]> {
  const source = await readFashionMnist('test');
  const domains = o.domains ? [...o.domains] : [...CORRUPTIONS];
  const spec = resolveStreamSpec('continual', {
    domains, severity: o.severity, order: o.order, seed: o.seed,
    ...(o.limit !== undefined ? { perDomain: Math.min(o.limit, source.count) } : {}),
  });
  const plan = planStream(spec, source.labels, o.classes);
  const stream = materializeStream(plan, source, { seed: o.seed, ...(o.onProgress ? { onProgress: o.onProgress } : {}) });
  // Cut the stream into its domain blocks (blocks schedule: contiguous).
  const blocks: DomainBlock[] = [];
  let start = 0;
  for (let t = 1; t <= stream.count; t++) {
    if (t === stream.count || stream.domain[t] !== stream.domain[start]) {
      blocks.push({ name: stream.domainNames[stream.domain[start]!]!, data: select(stream, Array.from({ length: t - start }, (_, i) => start + i)) });
      start = t;
    }
  }
  return blocks;
}

/**
 * The domains of an IDX folder when none are named: corruption names (as `ttaq corrupt` writes them,
 * `<corruption>-<severity>`) at the requested severity in protocol order, else every name sorted.
 */
export function defaultIdxDomains(present: readonly string[], severity: number): string[] {
  const known: readonly string[] = CORRUPTIONS;
  const parsed = present.map((n) => { const m = /^(.*?)(?:-([1-5]))?$/.exec(n)!; return { n, c: m[1]!, s: m[2] ? Number(m[2]) : undefined }; });
  if (parsed.length === 0 || !parsed.every((p) => known.includes(p.c) || p.c === 'clean')) return [...present];
  return parsed.filter((p) => p.s === undefined || p.s === severity)
    .sort((a, b) => (a.c === 'clean' ? -1 : known.indexOf(a.c)) - (b.c === 'clean' ? -1 : known.indexOf(b.c)))
    .map((p) => p.n);
}

/** What kind of folder `dir` is. */
export function dataLayout(dir: string): 'idx' | 'imagenet-c' {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new TtaqError('DATA_NOT_FOUND', `--data ${dir} is not a folder; give a folder of IDX pairs (one per domain) or an ImageNet-C tree`);
  if (listIdxNames(dir).length > 0) return 'idx';
  const sub = readdirSync(dir).filter((f) => statSync(join(dir, f)).isDirectory());
  if (sub.some((c) => existsSync(join(dir, c)) && readdirSync(join(dir, c)).some((s) => /^[1-5]$/.test(s)))) return 'imagenet-c';
  throw new TtaqError('DATA_NOT_FOUND', `${dir} holds neither <domain>-images-idx3-ubyte[.gz] files nor <corruption>/<severity>/ folders; see 'ttaq eval --help' for the layouts`);
}

/** Domains from an external folder (IDX pairs or ImageNet-C). */
export async function folderDomains(dir: string, o: DomainOptions & { readonly height?: number; readonly width?: number; readonly channels?: 1 | 3 }): Promise<DomainBlock[]> {
  const layout = dataLayout(dir);
  // One generator per domain: a domain's subset and order do not depend on the other domains.
  const rngFor = (i: number): DataRng => new DataRng(o.seed, 0x5eed, i);
  const out: DomainBlock[] = [];
  if (layout === 'idx') {
    const present = listIdxNames(dir);
    const names = o.domains ? [...o.domains] : defaultIdxDomains(present, o.severity);
    for (const name of names) {
      if (!present.includes(name)) throw new TtaqError('DATA_NOT_FOUND', `${dir}: no domain '${name}' (files ${name}-images-idx3-ubyte[.gz]); present: ${present.join(', ')}`);
      const d = await readIdxDir(dir, name);
      out.push({ name, data: orderDomain(d, o.order, rngFor(out.length), o.classes, o.limit) });
      o.onProgress?.({ stage: 'read domains', done: out.length, total: names.length, info: name });
    }
    return out;
  }
  const found = listImageNetC(dir);
  const present = [...new Set(found.map((f) => f.corruption))];
  const known: readonly string[] = CORRUPTIONS;
  const corruptions = o.domains ? [...o.domains] : [...known.filter((c) => present.includes(c)), ...present.filter((c) => !known.includes(c))];
  let classes: readonly string[] | undefined;
  const first = found.find((f) => corruptions.includes(f.corruption) && f.severity === o.severity);
  if (o.labels && first) {
    const m = matchClassFolders(classFolders(first.path), o.labels);
    if (m.kind === 'mismatch') throw new TtaqError('DATA_BAD_FORMAT', `${first.path}: ${m.reason}; name the class folders after the labels in the model's manifest (or 0, 1, ... in label order)`);
    if (m.kind === 'names') classes = m.classes;
  }
  const read = await readImageNetC(dir, {
    corruptions, severities: [o.severity], ...(classes ? { classes } : {}),
    ...(o.channels ? { channels: o.channels } : {}),
    ...(o.height && o.width ? { height: o.height, width: o.width } : {}),
    ...(o.limit !== undefined ? { limitPerClass: Math.max(1, Math.ceil(o.limit / o.classes)) } : {}),
  });
  for (const r of read) {
    out.push({ name: r.corruption, data: orderDomain(r.data, o.order, rngFor(out.length), o.classes, o.limit) });
    o.onProgress?.({ stage: 'read domains', done: out.length, total: read.length, info: r.corruption });
  }
  return out;
}
