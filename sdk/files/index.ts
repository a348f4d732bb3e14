// sdk/files: writing a file so that a crash never leaves half of it. The bytes go to a temporary
// file beside the target, which is then renamed over it: a rename within one folder replaces the
// target whole, so a reader (or a resumed run) sees the old file or the new one. Used by the
// training checkpoints, the quantizer's resume state and the evaluation journal.
import { renameSync, writeFileSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';

const tempFor = (path: string): string => `${path}.tmp-${process.pid}`;

export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = tempFor(path);
  await writeFile(tmp, data);
  await rename(tmp, path);
}

/** The same, for callers that cannot wait (a synchronous callback). */
export function writeFileAtomicSync(path: string, data: string | Uint8Array): void {
  const tmp = tempFor(path);
  writeFileSync(tmp, data);
  renameSync(tmp, path);
}

export { acquireLock, processAlive } from './lock.ts';
