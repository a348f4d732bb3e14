// A cheap fingerprint of an evaluation's data folder, for the resume journal: every file's path,
// size and modification time, hashed. Reading the bytes would cost as much as the evaluation's own
// read; size and mtime change whenever a tool rewrites a file (ttaq corrupt, a copy, an unpacked
// archive), which is the case to catch: rows computed on the old data must not be reused.
import { createHash } from 'node:crypto';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** sha256 over (relative path, size, mtime) of every file under `dir`, in sorted path order. */
export function dataFingerprint(dir: string): string {
  const h = createHash('sha256');
  const names = (readdirSync(dir, { recursive: true }) as string[]).sort();
  for (const rel of names) {
    let line: string;
    try {
      const st = statSync(join(dir, rel));
      if (st.isDirectory()) continue;
      line = `${rel}\t${st.size}\t${st.mtimeMs}`;
    } catch {
      // a broken link: the reader refuses it, but its presence still belongs to the data's state
      line = `${rel}\tunreadable`;
    }
    h.update(line + '\n');
  }
  return h.digest('hex');
}
