// The journal of an evaluation run: every finished (model, method) row, written as it finishes, so
// a run that is killed (a crash, a reboot, Ctrl-C) resumes with the rows it had. A row is valid
// for another run only with the same settings (protocol, data, batch, passes, seed, options);
// the settings are stored as one string and compared whole. The file is replaced atomically, so
// a kill during the write leaves the previous journal.
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { writeFileAtomicSync } from '../files/index.ts';
import type { EvalRow } from './run.ts';

const FORMAT = 'ttaq-eval-journal/1';

interface JournalFile {
  readonly format: typeof FORMAT;
  readonly settings: string;
  readonly rows: Readonly<Record<string, EvalRow>>;
}

/** Where the journal of a run writing `out` lives. */
export const journalPathFor = (out: string): string => `${out}.partial.json`;

export type JournalRead =
  | { readonly kind: 'none' }
  | { readonly kind: 'resumed'; readonly rows: ReadonlyMap<string, EvalRow> }
  /** A journal of other settings or an unreadable file: ignored, and replaced by this run's. */
  | { readonly kind: 'stale'; readonly why: string };

export function readJournal(path: string, settings: string): JournalRead {
  if (!existsSync(path)) return { kind: 'none' };
  let j: Partial<JournalFile>;
  try {
    j = JSON.parse(readFileSync(path, 'utf8')) as Partial<JournalFile>;
  } catch (e) {
    return { kind: 'stale', why: `unreadable (${(e as Error).message})` };
  }
  if (j.format !== FORMAT || typeof j.rows !== 'object' || j.rows === null) return { kind: 'stale', why: 'not a ttaq evaluation journal' };
  if (j.settings !== settings) return { kind: 'stale', why: `written with other settings${changedKeys(j.settings, settings)}` };
  return { kind: 'resumed', rows: new Map(Object.entries(j.rows)) };
}

/** " (changed: data, seed)" when both settings are JSON objects, to say why a run starts over. */
function changedKeys(before: unknown, now: string): string {
  try {
    const a = JSON.parse(String(before)) as Record<string, unknown>;
    const b = JSON.parse(now) as Record<string, unknown>;
    if (typeof a !== 'object' || a === null || typeof b !== 'object' || b === null) return '';
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k]));
    return keys.length > 0 ? ` (changed: ${keys.join(', ')})` : '';
  } catch {
    return '';
  }
}

/** Keeps the rows finished so far in `path`. */
export class EvalJournal {
  private readonly rows = new Map<string, EvalRow>();

  constructor(readonly path: string, private readonly settings: string, kept: ReadonlyMap<string, EvalRow> = new Map()) {
    for (const [k, r] of kept) this.rows.set(k, r);
  }

  add(key: string, row: EvalRow): void {
    this.rows.set(key, row);
    const file: JournalFile = { format: FORMAT, settings: this.settings, rows: Object.fromEntries(this.rows) };
    writeFileAtomicSync(this.path, JSON.stringify(file));
  }

  /** The run's results are written: the journal has served. */
  remove(): void {
    rmSync(this.path, { force: true });
  }
}
