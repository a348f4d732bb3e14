// Progress for long jobs: a redrawn bar on a terminal, plain periodic lines otherwise (CI logs,
// pipes). SDK functions report through a callback; only tools render.

import type { ProgressFn } from '../../sdk/progress/index.ts';

export type { ProgressEvent, ProgressFn } from '../../sdk/progress/index.ts';

export function progressPrinter(stream: NodeJS.WriteStream = process.stderr, quiet = false): ProgressFn {
  if (quiet) return () => {};
  let lastLine = 0;
  let lastStage = '';
  const started = Date.now();
  return (e) => {
    const frac = e.total > 0 ? Math.min(1, e.done / e.total) : 0;
    const elapsed = (Date.now() - started) / 1000;
    const eta = frac > 0 ? elapsed / frac - elapsed : 0;
    const text = `${e.stage} ${e.done}/${e.total} ${(frac * 100).toFixed(0)}% ${elapsed.toFixed(0)}s eta ${eta.toFixed(0)}s${e.info ? ' ' + e.info : ''}`;
    if (stream.isTTY) {
      const width = 24;
      const filled = Math.round(frac * width);
      stream.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${text}`.slice(0, (stream.columns ?? 120) - 1).padEnd(Math.min(stream.columns ?? 120, 120) - 1));
      if (e.done >= e.total) stream.write('\n');
    } else {
      const now = Date.now();
      if (e.stage !== lastStage || now - lastLine > 5000 || e.done >= e.total) {
        stream.write(text + '\n');
        lastLine = now;
        lastStage = e.stage;
      }
    }
  };
}
