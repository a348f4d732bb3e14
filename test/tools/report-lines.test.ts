// Lines the command-line tools print: the bench table's baseline cell and quantize's
// reconstruction line say only what is true of the run.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { figuresTable } from '../../tools/bench.ts';
import { reconstructionLine } from '../../tools/quantize.ts';

test('figuresTable: a baseline cell never starts or ends with a separator', () => {
  const rows = figuresTable([
    { bench: 'b', name: 'note only', value: 1, unit: 's', note: 'per block' },
    { bench: 'b', name: 'baseline only', value: 1, unit: 's', baseline: 'PyTorch' },
    { bench: 'b', name: 'both', value: 1, unit: 's', baseline: 'PyTorch', note: 'per block' },
    { bench: 'b', name: 'neither', value: 1, unit: 's' },
  ]).split('\n').slice(2).map((l) => l.split(' | ')[4]);
  assert.deepEqual(rows, ['per block', 'PyTorch', 'PyTorch; per block', '']);
});

test("quantize's reconstruction line names --iterations when it overrode the preset", () => {
  const rec = { preset: 'default' as const, pem: 0.1, pcr: 0.5, slices: 2 };
  assert.equal(reconstructionLine({ ...rec, iterationsPerBlock: 2000 }), 'reconstruction: 2000 iterations per block (default preset), PEM 0.1, PCR 0.5, up to 2 slices per step');
  assert.equal(reconstructionLine({ ...rec, iterationsPerBlock: 300 }), 'reconstruction: 300 iterations per block (--iterations), PEM 0.1, PCR 0.5, up to 2 slices per step');
  assert.match(reconstructionLine({ ...rec, preset: 'fast', iterationsPerBlock: 500, slices: 1 }), /500 iterations per block \(fast preset\), .*one session$/);
});
