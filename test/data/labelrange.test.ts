// Labels checked against the model's classes before a protocol orders or scores them.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkLabelRange, DataRng, orderByLabels } from '../../sdk/data/index.ts';
import { isTtaqError } from '../../sdk/errors/index.ts';

test('labels in [0, classes) pass; the first one outside is named with its index and the range', () => {
  assert.deepEqual(checkLabelRange(Uint8Array.from([0, 9, 3]), 10, 'a'), { ok: true, value: undefined });
  const r = checkLabelRange(Uint8Array.from([0, 1, 12, 200]), 10, 'x.idx');
  assert.ok(!r.ok);
  assert.equal(r.error.code, 'DATA_BAD_FORMAT');
  assert.match(r.error.message, /^x\.idx: label 12 at index 2 is not a class of the model \(valid labels 0 to 9: the model has 10 classes\)/);
  assert.doesNotMatch(r.error.message, /1-based/);
  const neg = checkLabelRange(Int32Array.from([0, -1]), 10, 'y');
  assert.ok(!neg.ok && /label -1 at index 1/.test(neg.error.message));
});

test('labels 1..K (no 0) get the 1-based hint', () => {
  const r = checkLabelRange(Uint8Array.from([3, 10, 1]), 10, 'z');
  assert.ok(!r.ok);
  assert.match(r.error.message, /label 10 at index 1 .*the labels run 1 to 10, which looks 1-based: subtract 1/);
});

test('orderByLabels refuses a label outside [0, k) with a data error, not a TypeError', () => {
  const labels = [0, 1, 5, 1];
  for (const order of [{ kind: 'dirichlet', alpha: 0.1, segment: 4 }, { kind: 'runs', meanRun: 2 }] as const) {
    assert.throws(() => orderByLabels([0, 1, 2, 3], (i) => labels[i]!, 2, order, new DataRng(0)),
      (e: unknown) => isTtaqError(e) && e.code === 'DATA_BAD_FORMAT' && /item 2 has label 5, outside the 2 classes \(0 to 1\)/.test(e.message));
  }
  // in range: every id once
  assert.deepEqual(orderByLabels([0, 1, 3], (i) => labels[i]!, 2, { kind: 'runs', meanRun: 2 }, new DataRng(0)).sort(), [0, 1, 3]);
});
