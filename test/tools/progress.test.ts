// The progress printer's ETA comes from the current stage's own pace.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { progressPrinter, stageEta } from '../../tools/lib/progress.ts';

test('stageEta: nothing until a second of the stage has passed, then the stage pace', () => {
  assert.equal(stageEta(1, 500, 0), undefined);
  assert.equal(stageEta(0, 500, 5), undefined);
  assert.equal(stageEta(250, 500, 10), 10);
  assert.equal(stageEta(500, 500, 10), 0);
});

test('a new stage starts its own clock: no hour-long ETA for a block that takes seconds', () => {
  let clock = 0;
  const lines: string[] = [];
  const stream = { isTTY: false, write: (s: string) => { lines.push(s.trim()); return true; } } as unknown as NodeJS.WriteStream;
  const p = progressPrinter(stream, false, () => clock);
  clock = 60_000; // a minute into the job, the next block starts
  p({ stage: 'block 5/11 layer2.0', done: 1, total: 500 });
  clock = 66_000;
  p({ stage: 'block 5/11 layer2.0', done: 300, total: 500 });
  clock = 70_000;
  p({ stage: 'block 5/11 layer2.0', done: 500, total: 500 });
  assert.deepEqual(lines, [
    'block 5/11 layer2.0 1/500 0% 60s eta -',
    'block 5/11 layer2.0 300/500 60% 66s eta 4s',
    'block 5/11 layer2.0 500/500 100% 70s eta 0s',
  ]);
});
