// Progress for long jobs: a redrawn bar on a terminal, plain periodic lines otherwise (CI logs,
// pipes). SDK functions report through a callback; only tools render.

import type { ProgressFn } from '../../sdk/progress/index.ts';

export type { ProgressEvent, ProgressFn } from '../../sdk/progress/index.ts';

/** Seconds left in a stage from its own progress; undefined until there is enough to go on. */
export function stageEta(done: number, total: number, stageSeconds: number): number | undefined {
  // A stage's first report comes at its start: extrapolating from it (or from the whole job's
  // elapsed time, as this once did) printed ETAs of hours for a block that took seconds.
  if (!(total > 0) || done <= 0 || stageSeconds < 1) return undefined;
  const frac = Math.min(1, done / total);
  return stageSeconds / frac - stageSeconds;
}

export function progressPrinter(stream: NodeJS.WriteStream = process.stderr, quiet = false, now: () => number = Date.now): ProgressFn {
  if (quiet) return () => {};
  let lastLine = 0;
  let lastStage = '';
  let currentStage = '';
  let stageStart = 0;
  const started = now();
  return (e) => {
    const t = now();
    if (e.stage !== currentStage) { currentStage = e.stage; stageStart = t; }
    const frac = e.total > 0 ? Math.min(1, e.done / e.total) : 0;
    const elapsed = (t - started) / 1000;
    const eta = stageEta(e.done, e.total, (t - stageStart) / 1000);
    const text = `${e.stage} ${e.done}/${e.total} ${(frac * 100).toFixed(0)}% ${elapsed.toFixed(0)}s eta ${eta === undefined ? '-' : `${eta.toFixed(0)}s`}${e.info ? ' ' + e.info : ''}`;
    if (stream.isTTY) {
      const width = 24;
      const filled = Math.round(frac * width);
      stream.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${text}`.slice(0, (stream.columns ?? 120) - 1).padEnd(Math.min(stream.columns ?? 120, 120) - 1));
      if (e.done >= e.total) stream.write('\n');
    } else {
      if (e.stage !== lastStage || t - lastLine > 5000 || e.done >= e.total) {
        stream.write(text + '\n');
        lastLine = t;
        lastStage = e.stage;
      }
    }
  };
}
