// Row feeds and the per-thread feed buffers: rows are gathered in the order given, buffers are
// reused from step to step, views of shared memory become ordinary memory, bad rows are refused.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FeedBuffers } from '../../sdk/autodiff/feeds.ts';
import { buildGradientGraph, GradientStep } from '../../sdk/autodiff/index.ts';
import { isTtaqError } from '../../sdk/errors/index.ts';
import { A, GraphBuilder } from '../../sdk/onnx/builder.ts';
import { makeTensor } from '../../sdk/onnx/tensor.ts';
import { model } from './helpers.ts';

const table = Float32Array.from({ length: 5 * 2 * 3 }, (_, i) => i); // 5 rows of [2, 3]

test('a row feed is gathered in the given order into a buffer reused by the next feed of that name', () => {
  const b = new FeedBuffers();
  const a = b.feed('x', { rowsOf: table, rowDims: [2, 3], rows: Int32Array.from([3, 0]) });
  assert.deepEqual(a.dims, [2, 2, 3]);
  assert.deepEqual(Array.from(a.data as Float32Array), [18, 19, 20, 21, 22, 23, 0, 1, 2, 3, 4, 5]);
  const c = b.feed('x', { rowsOf: table, rowDims: [2, 3], rows: Int32Array.from([4, 4]) });
  assert.equal(c.data, a.data, 'same buffer');
  assert.deepEqual(Array.from(c.data as Float32Array).slice(0, 6), [24, 25, 26, 27, 28, 29]);
  // another name, or another row count, gets a buffer of its own
  assert.notEqual(b.feed('y', { rowsOf: table, rowDims: [2, 3], rows: Int32Array.from([1, 2]) }).data, c.data);
  assert.equal(b.feed('x', { rowsOf: table, rowDims: [2, 3], rows: Int32Array.from([1]) }).data.length, 6);
});

test('views of shared memory are copied into ordinary memory; other tensors pass as they are', () => {
  const b = new FeedBuffers();
  const sab = new Uint8Array(new SharedArrayBuffer(8));
  sab.set([1, 0, 1, 1, 0, 0, 1, 0]);
  const view = makeTensor('bool', [2, 2], sab.subarray(2, 6));
  const fed = b.feed('m', view);
  assert.ok(!(fed.data.buffer instanceof SharedArrayBuffer));
  assert.deepEqual(Array.from(fed.data as Uint8Array), [1, 1, 0, 0]);
  const plain = makeTensor('float32', [2], Float32Array.of(1, 2));
  assert.equal(b.feed('p', plain), plain);
});

test('a row outside the table is refused with the row and the table size', () => {
  const b = new FeedBuffers();
  for (const r of [5, -1]) {
    assert.throws(() => b.feed('x', { rowsOf: table, rowDims: [2, 3], rows: Int32Array.from([0, r]) }),
      (e: unknown) => isTtaqError(e) && e.code === 'AUTODIFF_BAD_REQUEST' && e.message.includes(`row ${r} is outside the table's 5 rows`));
  }
});

test('GradientStep takes row feeds: the same loss and gradient as the gathered batch', async () => {
  const g = new GraphBuilder('rows');
  g.input('x', 'float32', ['N', 3]);
  g.initializer('w', makeTensor('float32', [3, 1], Float32Array.of(0.5, -1, 2)));
  const y = g.op1('MatMul', ['x', 'w']);
  g.op1('ReduceMean', [g.op1('Mul', [y, y])], { keepdims: A.int(0) }, { outputNames: ['loss'] });
  const gg = await buildGradientGraph({ model: model(g), loss: 'loss', wrt: ['w'] });
  const step = await GradientStep.create(gg, { session: { providers: ['cpu'] } });
  try {
    const rows3 = Float32Array.from({ length: 12 }, (_, i) => (i % 5) - 2); // 4 rows of 3
    const rows = Int32Array.from([2, 2, 0]);
    const gathered = makeTensor('float32', [3, 3], Float32Array.from([...rows].flatMap((r) => Array.from(rows3.subarray(r * 3, r * 3 + 3)))));
    const want = await step.run(gg.params, { x: gathered });
    const got = await step.run(gg.params, { x: { rowsOf: rows3, rowDims: [3], rows } });
    assert.ok(want.loss > 0);
    assert.equal(got.loss, want.loss);
    assert.deepEqual(Array.from(got.grads.get('w')!.data as Float32Array), Array.from(want.grads.get('w')!.data as Float32Array));
  } finally {
    await step.release();
  }
});
