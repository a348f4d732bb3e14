// Lines the command-line tools print: the bench table's baseline cell and quantize's
// reconstruction line say only what is true of the run.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { figureNotes, figuresTable } from '../../tools/bench.ts';
import { reconstructionLine } from '../../tools/quantize.ts';

test('figuresTable: a baseline cell never starts or ends with a separator', () => {
  const rows = figuresTable([
    { bench: 'b', name: 'note only', value: 1, unit: 's', note: 'per block' },
    { bench: 'b', name: 'baseline only', value: 1, unit: 's', baseline: 'PyTorch' },
    { bench: 'b', name: 'both', value: 1, unit: 's', baseline: 'PyTorch', note: 'per block' },
    { bench: 'b', name: 'neither', value: 1, unit: 's' },
  ]).split('\n').slice(2).map((l) => l.split(' | ')[4]);
  assert.deepEqual(rows, ['per block', 'PyTorch', 'PyTorch; per block', '']);
  // blank parts count as absent, surrounding blanks go
  assert.equal(figureNotes({ baseline: ' ', note: 'per block ' }), 'per block');
  assert.equal(figureNotes({ baseline: 'PyTorch', note: '' }), 'PyTorch');
  assert.equal(figureNotes({}), '');
});

test("quantize's reconstruction line says whether the iteration count came from --iterations or the preset", () => {
  const rec = { preset: 'default' as const, pem: 0.1, pcr: 0.5, slices: 2 };
  assert.equal(reconstructionLine({ ...rec, iterationsPerBlock: 2000 }, false), 'reconstruction: 2000 iterations per block (default preset), PEM 0.1, PCR 0.5, up to 2 slices per step');
  assert.equal(reconstructionLine({ ...rec, iterationsPerBlock: 300 }, true), 'reconstruction: 300 iterations per block (--iterations), PEM 0.1, PCR 0.5, up to 2 slices per step');
  // --iterations 2000 given explicitly is still the flag's, not the preset's, though the counts agree
  assert.match(reconstructionLine({ ...rec, iterationsPerBlock: 2000 }, true), /^reconstruction: 2000 iterations per block \(--iterations\), /);
  assert.match(reconstructionLine({ ...rec, preset: 'fast', iterationsPerBlock: 500, slices: 1 }, false), /500 iterations per block \(fast preset\), .*one session$/);
});
