// A lock file beside an output: two long jobs writing the same files would each report success
// while the files hold the other's result. The file holds the owner's pid, so a lock left by a
// process that died (killed, crashed) is taken over instead of blocking every later run.
import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { TtaqError } from '../errors/index.ts';

/** Whether a process with this pid runs (EPERM: it does, as another user). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Takes the lock file `path` for this process: created exclusively, holding our pid. Held by a live
 * process: a coded error naming it and `what` it guards. The returned function releases it (only
 * if it is still ours); it is also released when the process exits, Ctrl-C included.
 */
export function acquireLock(path: string, what: string): () => void {
  for (let attempt = 0; ; attempt++) {
    try {
      const fd = openSync(path, 'wx');
      try { writeSync(fd, String(process.pid)); } finally { closeSync(fd); }
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new TtaqError('CLI_USAGE', `cannot create the lock file ${path} (${(e as Error).message}); choose a writable location`, { path }, { cause: e });
      }
      if (attempt > 0) throw new TtaqError('STATE_MISMATCH', `${path}: another process took the lock on ${what} at the same moment; run one at a time`, { path });
      const owner = Number.parseInt(readTextOr(path, ''), 10);
      if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && processAlive(owner)) {
        throw new TtaqError('STATE_MISMATCH', `${what} is being written by another process (pid ${owner}, lock ${path}); wait for it to finish, or choose another output`, { path, pid: owner });
      }
      // left by a process that is gone: take it over
      try { unlinkSync(path); } catch { /* removed meanwhile */ }
    }
  }
  const release = (): void => {
    process.off('exit', release);
    if (readTextOr(path, '') !== String(process.pid)) return;
    try { unlinkSync(path); } catch { /* already gone */ }
  };
  process.on('exit', release);
  return release;
}

function readTextOr(path: string, fallback: string): string {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return fallback;
  }
}
