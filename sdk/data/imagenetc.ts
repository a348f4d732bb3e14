// The ImageNet-C layout: <root>/<corruption>/<severity>/<class>/<image>. Each (corruption,
// severity) folder is an image folder; all share one class list (the sorted class folders of the
// first domain found, unless `classes` is given), so labels agree across domains.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { TtaqError } from '../errors/index.ts';
import { classFolders, readImageFolder, type ImageFolderOptions } from './folder.ts';
import type { Dataset } from './dataset.ts';
import { isFolder } from './entries.ts';

export interface CorruptedDomain {
  readonly corruption: string;
  readonly severity: number;
  readonly data: Dataset;
}

/** The (corruption, severity) folders present under `root`, corruptions sorted, severities ascending. */
export function listImageNetC(root: string): { corruption: string; severity: number; path: string }[] {
  if (!existsSync(root)) throw new TtaqError('DATA_NOT_FOUND', `ImageNet-C root ${root} does not exist; expected <root>/<corruption>/<severity>/<class>/<image>`);
  const out: { corruption: string; severity: number; path: string }[] = [];
  for (const c of readdirSync(root).sort()) {
    const cdir = join(root, c);
    if (!isFolder(cdir)) continue;
    for (const s of readdirSync(cdir)) {
      if (!/^[1-5]$/.test(s) || !isFolder(join(cdir, s))) continue;
      out.push({ corruption: c, severity: Number(s), path: join(cdir, s) });
    }
  }
  out.sort((a, b) => (a.corruption === b.corruption ? a.severity - b.severity : a.corruption < b.corruption ? -1 : 1));
  return out;
}

export interface ImageNetCOptions extends Omit<ImageFolderOptions, 'onProgress'> {
  /** Only these corruptions (default: all present). */
  readonly corruptions?: readonly string[];
  /** Only these severities (default: all present). */
  readonly severities?: readonly number[];
}

/** Reads the selected domains of an ImageNet-C tree, in `corruptions` order when given. */
export async function readImageNetC(root: string, opts: ImageNetCOptions = {}): Promise<CorruptedDomain[]> {
  let found = listImageNetC(root);
  if (opts.corruptions) {
    const want = opts.corruptions;
    for (const c of want) if (!found.some((f) => f.corruption === c)) throw new TtaqError('DATA_NOT_FOUND', `${root}: no folder for corruption '${c}'; present: ${[...new Set(found.map((f) => f.corruption))].join(', ') || 'none'}`);
    found = found.filter((f) => want.includes(f.corruption)).sort((a, b) => want.indexOf(a.corruption) - want.indexOf(b.corruption) || a.severity - b.severity);
  }
  if (opts.severities) {
    const want = opts.severities;
    // a corruption asked for by name that lacks the severity would drop out of the results unseen
    for (const c of opts.corruptions ?? []) {
      const has = found.filter((f) => f.corruption === c).map((f) => f.severity);
      if (!has.some((s) => want.includes(s))) {
        throw new TtaqError('DATA_NOT_FOUND', `${root}: ${c} has severit${has.length > 1 ? 'ies' : 'y'} ${has.join(', ')} only, not ${want.join(', ')}; use --severity ${has.join(' or ')}, or leave ${c} out of --domains`);
      }
    }
    found = found.filter((f) => want.includes(f.severity));
  }
  if (found.length === 0) throw new TtaqError('DATA_NOT_FOUND', `${root}: no <corruption>/<severity 1-5>/ folders match the selection`);
  const classes = opts.classes ?? classFolders(found[0]!.path);
  const out: CorruptedDomain[] = [];
  for (const f of found) out.push({ corruption: f.corruption, severity: f.severity, data: await readImageFolder(f.path, { ...opts, classes }) });
  return out;
}
