// Where the evaluation's domains come from, each returned as one block of samples already in stream
// order (the protocol's label order applied within the domain):
//   - Fashion-MNIST test set corrupted on the fly (sdk/data streams: plan + materialise)
//   - an IDX folder with one pair per domain: <domain>-images-idx3-ubyte[.gz] with
//     <domain>-labels-idx1-ubyte[.gz] or one shared labels-idx1-ubyte[.gz]
//   - an ImageNet-C tree: <root>/<corruption>/<severity>/<class>/<image>
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  checkLabelRange, classFolders, CORRUPTIONS, DataRng, findIdxPair, IDX_CLASSES_FILE, packLabels, readIdxClasses, isFolder, listIdxNames, listImageNetC, materializeStream, orderByLabels, planStream,
  matchClassFolders, readFashionMnist, readIdxDataset, readImageNetC, resolveStreamSpec, select, type Dataset, type LabelOrder,
} from '../data/index.ts';
import { TtaqError } from '../errors/index.ts';
import { parseIdxName } from './protocols.ts';
import type { ProgressFn } from '../progress/index.ts';
import type { Preprocess } from '../manifest/index.ts';

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
  /**
   * Says how the data was read where that was a guess or a choice the caller did not make: class
   * folders taken by order or as 1-based, corruptions skipped for lack of the severity.
   */
  readonly onNote?: ((line: string) => void) | undefined;
  /**
   * What a corruption's plain name in `domains` (fog) selects in an IDX folder written by
   * `ttaq corrupt` (fog-1 ... fog-5): 'severity' (default) its file at `severity`, 'all' each of its
   * files present, in severity order (`ttaq eval` without --severity). A file's own name (fog-3)
   * selects that file either way.
   */
  readonly plainName?: 'severity' | 'all' | undefined;
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


/** Whether every name is a corruption (or clean) as `ttaq corrupt` writes them. */
const corruptionNamed = (present: readonly string[]): boolean => {
  const known: readonly string[] = CORRUPTIONS;
  return present.length > 0 && present.map(parseIdxName).every((p) => known.includes(p.c) || p.c === 'clean');
};

/**
 * The domains of an IDX folder when none are named: corruption names (as `ttaq corrupt` writes them,
 * `<corruption>-<severity>`) at the requested severity in protocol order, else every name sorted.
 */
export function defaultIdxDomains(present: readonly string[], severity: number): string[] {
  const known: readonly string[] = CORRUPTIONS;
  if (!corruptionNamed(present)) return [...present];
  return present.map(parseIdxName).filter((p) => p.s === undefined || p.s === severity)
    .sort((a, b) => (a.c === 'clean' ? -1 : known.indexOf(a.c)) - (b.c === 'clean' ? -1 : known.indexOf(b.c)))
    .map((p) => p.n);
}

/** "fog (severity 3), snow (severities 1, 2)": what the corruptions have, for notes and errors. */
const describeSeverities = (bySeverity: ReadonlyMap<string, number[]>): string =>
  [...bySeverity].map(([c, sev]) => `${c} (severit${sev.length > 1 ? 'ies' : 'y'} ${sev.sort((a, b) => a - b).join(', ')})`).join(', ');

/** The corruptions of `names` with no domain at `severity`, with the severities they have. */
function missingSeverity(items: readonly { c: string; s: number | undefined }[], severity: number): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const { c, s } of items) if (s !== undefined && !items.some((o) => o.c === c && (o.s === severity || o.s === undefined))) out.set(c, [...(out.get(c) ?? []), s]);
  return out;
}

/**
 * The files a domain named in --domains stands for in an IDX folder: a file's own name (`fog-3`) is
 * that file; a corruption's plain name (`fog`, with `ttaq corrupt`'s `fog-1` ... `fog-5` present) is
 * its file at `severity` when `plainName` is 'severity', else each of its files present, in severity
 * order. A name that is neither is an error listing what the folder holds.
 */
export function idxDomainNames(dir: string, name: string, present: readonly string[], severity: number, plainName: 'severity' | 'all' = 'severity'): string[] {
  if (present.includes(name)) return [name];
  const files = present.map(parseIdxName).filter((p) => p.c === name && p.s !== undefined).sort((a, b) => a.s! - b.s!);
  if (plainName === 'all' && files.length > 0) return files.map((p) => p.n);
  if (present.includes(`${name}-${severity}`)) return [`${name}-${severity}`];
  if (files.length > 0) {
    const sev = files.map((p) => p.s!);
    throw new TtaqError('DATA_NOT_FOUND', `${dir}: no ${name} at severity ${severity}; it has ${name} at severit${sev.length > 1 ? 'ies' : 'y'} ${sev.join(', ')}: use --severity ${sev.join(' or ')}, or name the file in --domains (${files.map((p) => p.n).join(', ')})`);
  }
  const corruptions = [...new Set(present.map(parseIdxName).filter((p) => p.s !== undefined).map((p) => p.c))];
  throw new TtaqError('DATA_NOT_FOUND', `${dir}: no domain '${name}' (no ${name}-images-idx3-ubyte[.gz], nor ${name}-<severity>-images-idx3-ubyte[.gz]); ` +
    `name one of the files present: ${present.join(', ')}${corruptions.length > 0 ? `, or a corruption by its plain name: ${corruptions.join(', ')}` : ''}`);
}

/** What kind of folder `dir` is. */
export function dataLayout(dir: string): 'idx' | 'imagenet-c' {
  if (!existsSync(dir) || !isFolder(dir)) throw new TtaqError('DATA_NOT_FOUND', `--data ${dir} is not a folder; give a folder of IDX pairs (one per domain) or an ImageNet-C tree`);
  if (listIdxNames(dir).length > 0) return 'idx';
  const sub = readdirSync(dir).filter((f) => isFolder(join(dir, f)));
  if (sub.some((c) => readdirSync(join(dir, c)).some((s) => /^[1-5]$/.test(s)))) return 'imagenet-c';
  throw new TtaqError('DATA_NOT_FOUND', `${dir} holds neither <domain>-images-idx3-ubyte[.gz] files nor <corruption>/<severity>/ folders; see 'ttaq eval --help' for the layouts`);
}

/**
 * Refuses a domain that cannot be scored: no images (its error would read 0 %), or labels that are
 * not the model's classes (checkLabelRange).
 */
function checkDomain(d: Dataset, classes: number, name: string, source: string): void {
  if (d.count === 0) throw new TtaqError('DATA_BAD_FORMAT', `${source}: domain '${name}' holds no images, so it has no error to report; remove it or leave it out of --domains`, { source });
  const labels = checkLabelRange(d.labels, classes, source);
  if (!labels.ok) throw labels.error;
}

/**
 * The model label of each label of an IDX folder with a classes.txt sidecar (as `ttaq corrupt`
 * writes from a class-folder tree): its names matched to the model's labels like class folders.
 */
function idxLabelMap(dir: string, labels: readonly string[], note: (line: string) => void): number[] | undefined {
  const names = readIdxClasses(dir);
  if (!names) return undefined;
  const path = join(dir, IDX_CLASSES_FILE);
  const m = matchClassFolders(names, labels);
  if (m.kind === 'mismatch') throw new TtaqError('DATA_BAD_FORMAT', `${path}: the class names it lists do not match the model's labels (${m.reason}); fix the names or evaluate with a model trained on these classes`);
  if (m.note) note(`${path}: ${m.note}`);
  return names.map((n) => m.classes.indexOf(n));
}

/** Domains from an external folder (IDX pairs or ImageNet-C). */
/**
 * `fit`: the model's input layout and resize mode; an ImageNet-C tree's images of other sizes are
 * brought to it as the model's preprocessing resizes a camera frame (sdk/data fitImage).
 */
export async function folderDomains(dir: string, o: DomainOptions & { readonly fit?: Pick<Preprocess, 'height' | 'width' | 'channels' | 'resize'> }): Promise<DomainBlock[]> {
  const layout = dataLayout(dir);
  const note = o.onNote ?? ((): void => {});
  // One generator per domain: a domain's subset and order do not depend on the other domains.
  const rngFor = (i: number): DataRng => new DataRng(o.seed, 0x5eed, i);
  const out: DomainBlock[] = [];
  if (layout === 'idx') {
    const present = listIdxNames(dir);
    const names = o.domains ? o.domains.flatMap((n) => idxDomainNames(dir, n, present, o.severity, o.plainName)) : defaultIdxDomains(present, o.severity);
    if (!o.domains && corruptionNamed(present)) {
      const missing = missingSeverity(present.map(parseIdxName), o.severity);
      if (names.length === 0) {
        throw new TtaqError('DATA_NOT_FOUND', `${dir}: no domain at severity ${o.severity}; it holds ${describeSeverities(missing)}: use --severity ${[...new Set([...missing.values()].flat())].sort().join(' or ')}, or name domains with --domains (${present.join(', ')})`);
      }
      if (missing.size > 0) note(`${dir}: skipped ${describeSeverities(missing)}: no file at severity ${o.severity} (use --severity or --domains for them)`);
    }
    const toModel = o.labels ? idxLabelMap(dir, o.labels, note) : undefined;
    for (const name of names) {
      if (!present.includes(name)) throw new TtaqError('DATA_NOT_FOUND', `${dir}: no domain '${name}' (files ${name}-images-idx3-ubyte[.gz]); present: ${present.join(', ')}`);
      const files = findIdxPair(dir, name);
      let d = await readIdxDataset(files.images, files.labels);
      if (toModel) {
        const named = checkLabelRange(d.labels, toModel.length, `${files.labels} (labels index ${IDX_CLASSES_FILE})`);
        if (!named.ok) throw named.error;
        d = { ...d, labels: packLabels(Array.from(d.labels, (l) => toModel[l]!)) };
      }
      checkDomain(d, o.classes, name, d.count === 0 ? files.images : files.labels);
      out.push({ name, data: orderDomain(d, o.order, rngFor(out.length), o.classes, o.limit) });
      o.onProgress?.({ stage: 'read domains', done: out.length, total: names.length, info: name });
    }
    return out;
  }
  const found = listImageNetC(dir);
  const present = [...new Set(found.map((f) => f.corruption))];
  const known: readonly string[] = CORRUPTIONS;
  let corruptions: string[];
  if (o.domains) {
    // readImageNetC refuses a named corruption without the severity
    corruptions = [...o.domains];
  } else {
    const all = [...known.filter((c) => present.includes(c)), ...present.filter((c) => !known.includes(c))];
    const missing = missingSeverity(found.map((f) => ({ c: f.corruption, s: f.severity })), o.severity);
    corruptions = all.filter((c) => !missing.has(c));
    if (corruptions.length === 0) {
      throw new TtaqError('DATA_NOT_FOUND', `${dir}: no corruption has a severity ${o.severity} folder; it holds ${describeSeverities(missing)}: use --severity ${[...new Set([...missing.values()].flat())].sort().join(' or ')}`);
    }
    if (missing.size > 0) note(`${dir}: skipped ${describeSeverities(missing)}: no severity ${o.severity} folder (use --severity for them)`);
  }
  let classes: readonly string[] | undefined;
  const first = found.find((f) => corruptions.includes(f.corruption) && f.severity === o.severity);
  if (o.labels && first) {
    const folders = classFolders(first.path);
    if (folders.length === 0) throw new TtaqError('DATA_BAD_FORMAT', `${first.path} has no class sub-folders; an ImageNet-C tree holds its images in <corruption>/<severity>/<class>/, one folder per class named after the model's labels`);
    const m = matchClassFolders(folders, o.labels);
    if (m.kind === 'mismatch') throw new TtaqError('DATA_BAD_FORMAT', `${first.path}: ${m.reason}; name the class folders after the labels in the model's manifest (or 0, 1, ... in label order)`);
    if (m.note) note(`${first.path}: ${m.note}`);
    classes = m.classes;
  }
  const read = await readImageNetC(dir, {
    corruptions, severities: [o.severity], ...(classes ? { classes } : {}),
    ...(o.fit ? { fit: o.fit, channels: o.fit.channels } : {}),
    // `limit` images in all, spread over the class folders there are (not limit / model classes each)
    ...(o.limit !== undefined ? { limit: o.limit } : {}),
  });
  for (const r of read) {
    checkDomain(r.data, o.classes, r.corruption, join(dir, r.corruption, String(r.severity)));
    out.push({ name: r.corruption, data: orderDomain(r.data, o.order, rngFor(out.length), o.classes, o.limit) });
    o.onProgress?.({ stage: 'read domains', done: out.length, total: read.length, info: r.corruption });
  }
  return out;
}
