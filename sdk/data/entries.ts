// Looking at one entry of a data folder. Data folders come from elsewhere (copied trees, mounted
// shares, links into a dataset cache), so an entry may be a broken link or unreadable; a raw
// ENOENT from deep in a reader does not say which entry or what to do, so the readers ask here.
import { lstatSync, statSync, type Stats } from 'node:fs';
import { TtaqError } from '../errors/index.ts';

/** Whether `path` is a folder; an entry that cannot be read is a data error that names it. */
export function isFolder(path: string): boolean {
  return entryStats(path).isDirectory();
}

/** The entry's stats (links followed), or that data error. */
export function entryStats(path: string): Stats {
  try {
    return statSync(path);
  } catch (e) {
    let link = false;
    try { link = lstatSync(path).isSymbolicLink(); } catch { /* the entry itself is gone: not a link */ }
    const why = link ? 'a symbolic link whose target does not exist' : `cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`;
    throw new TtaqError('DATA_NOT_FOUND', `${path} is ${why}; remove it from the data folder or fix it`, { path }, { cause: e });
  }
}
