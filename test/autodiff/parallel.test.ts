// Data-parallel gradient steps: slices of one batch on this thread and on worker threads give the
// full-batch loss, gradients and per-sample outputs; bad feeds and slice counts are refused with a reason.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildGradientGraph, chooseWorkers, chooseWorkersFor, DataParallelStep, GradientStep, idleStepWorkers, SLICE_MIN_SAMPLE_VALUES } from '../../sdk/autodiff/index.ts';
import { isTtaqError } from '../../sdk/errors/index.ts';
import { A, GraphBuilder } from '../../sdk/onnx/builder.ts';
import { makeTensor } from '../../sdk/onnx/tensor.ts';
import type { Tensor } from '../../sdk/onnx/types.ts';
import { Rng } from '../../sdk/nn/rng.ts';
import { meanOf } from '../../sdk/autodiff/parallel.ts';
import { model, randTensor } from './helpers.ts';

const rng = new Rng(11);

/** conv -> relu -> GAP, loss = mean over the batch of (p - target)^2 + 0.1 * sum(w^2) (a regulariser). */
function net(batch: number | 'N') {
  const b = new GraphBuilder('dp');
  b.input('x', 'float32', [batch, 2, 6, 6]);
  b.input('t', 'float32', [batch, 3]);
  b.input('scale', 'float32', []);
  b.initializer('w', randTensor(rng, 'float32', [3, 2, 3, 3]));
  const c = b.op1('Conv', ['x', 'w'], { pads: A.ints([1, 1, 1, 1]) });
  const p = b.op1('Mul', [b.op1('Flatten', [b.op1('GlobalAveragePool', [b.op1('Relu', [c])])]), 'scale'], {}, { outputNames: ['pred'] });
  const d = b.op1('Sub', [p, 't']);
  const per = b.op1('ReduceSum', [b.op1('Mul', [d, d]), b.ints([1])], { keepdims: A.int(0) });
  const mse = b.op1('ReduceMean', [per], { axes: A.ints([0]), keepdims: A.int(0) }, { outputNames: ['mse'] });
  const reg = b.op1('Mul', [b.op1('ReduceSum', [b.op1('Mul', ['w', 'w'])], { keepdims: A.int(0) }), b.scalar(0.1)]);
  b.op1('Add', [mse, reg], {}, { outputNames: ['loss'] });
  return model(b);
}

const close = (a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what: string) => {
  assert.equal(a.length, b.length, what);
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) <= tol * (1 + Math.abs(b[i]!)), `${what}[${i}]: ${a[i]} vs ${b[i]}`);
};

test('two slices give the full batch loss, outputs and gradients (symbolic and fixed batch axes)', async () => {
  const x = randTensor(rng, 'float32', [8, 2, 6, 6]);
  const t = randTensor(rng, 'float32', [8, 3]);
  const scale = makeTensor('float32', [], Float32Array.of(1.5));
  const full = await buildGradientGraph({ model: net('N'), loss: 'loss', wrt: ['w'], outputs: ['mse', 'pred'] });
  const ref = await GradientStep.create(full, { session: { providers: ['cpu'] } });
  const want = await ref.run(full.params, { x, t, scale });
  await ref.release();
  assert.ok(want.loss > 0);

  for (const g of [full, await buildGradientGraph({ model: net(4), loss: 'loss', wrt: ['w'], outputs: ['mse', 'pred'] })]) {
    const dp = await DataParallelStep.create(g, { workers: 2, concatOutputs: ['pred'], session: { providers: ['cpu'], intraOpThreads: 1 } });
    try {
      assert.equal(dp.workerCount, 2);
      // the batch in shared memory travels as views; an ordinary buffer is copied per slice
      const sx = new Float32Array(new SharedArrayBuffer(x.data.byteLength));
      sx.set(x.data as Float32Array);
      for (const xin of [x, makeTensor('float32', x.dims, sx)] as Tensor[]) {
        const got = await dp.run(full.params, { x: xin, t, scale });
        close([got.loss], [want.loss], 1e-5, 'loss');
        close(got.outputs.mse!.data as Float32Array, want.outputs.mse!.data as Float32Array, 1e-5, 'mse');
        close(got.outputs.pred!.data as Float32Array, want.outputs.pred!.data as Float32Array, 1e-5, 'pred (concatenated)');
        assert.deepEqual(got.outputs.pred!.dims, [8, 3]);
        close(got.grads.get('w')!.data as Float32Array, want.grads.get('w')!.data as Float32Array, 1e-5, 'grad w');
      }
      // the same batch as rows of a shuffled table, in shared memory (each slice gathers its own
      // rows) and in an ordinary buffer (gathered here for the worker)
      const perm = Int32Array.from([5, 0, 7, 2, 6, 1, 3, 4]);
      for (const shared of [true, false]) {
        const table = shared ? new Float32Array(new SharedArrayBuffer(4 * 2 * x.data.length)) : new Float32Array(2 * x.data.length);
        for (let i = 0; i < 8; i++) table.set((x.data as Float32Array).subarray(i * 72, (i + 1) * 72), perm[i]! * 72);
        const got = await dp.run(full.params, { x: { rowsOf: table, rowDims: [2, 6, 6], rows: perm }, t, scale });
        close([got.loss], [want.loss], 1e-5, `loss (row feed, shared ${shared})`);
        close(got.outputs.pred!.data as Float32Array, want.outputs.pred!.data as Float32Array, 1e-5, `pred (row feed, shared ${shared})`);
        close(got.grads.get('w')!.data as Float32Array, want.grads.get('w')!.data as Float32Array, 1e-5, `grad w (row feed, shared ${shared})`);
      }
      // a row outside the table, in this thread's slice, in the worker's or in both: a coded
      // error, and the next step still gets its own answers
      const table = new Float32Array(new SharedArrayBuffer(4 * x.data.length));
      table.set(x.data as Float32Array);
      for (const bad of [Int32Array.from([0, 1, 9, 3, 4, 5, 6, 7]), Int32Array.from([0, 1, 2, 3, 4, 5, 6, 8]), Int32Array.from([9, 1, 2, 3, 4, 5, 6, 8])]) {
        await assert.rejects(dp.run(full.params, { x: { rowsOf: table, rowDims: [2, 6, 6], rows: bad }, t, scale }),
          (e: unknown) => isTtaqError(e) && e.code === 'AUTODIFF_BAD_REQUEST' && /row (9|8) is outside the table's 8 rows/.test(e.message));
        const again = await dp.run(full.params, { x: { rowsOf: table, rowDims: [2, 6, 6], rows: Int32Array.from({ length: 8 }, (_, i) => i) }, t, scale });
        close([again.loss], [want.loss], 1e-5, 'loss after a failed step');
      }
      // a batch the slices cannot share
      await assert.rejects(dp.run(g.params, { x: randTensor(rng, 'float32', [7, 2, 6, 6]), t: randTensor(rng, 'float32', [7, 3]), scale }),
        (e: unknown) => isTtaqError(e) && e.code === 'AUTODIFF_BAD_REQUEST' && /input '(x|t)' has 7 rows/.test(e.message));
      await assert.rejects(dp.run(new Map(), { x, t, scale }), (e: unknown) => isTtaqError(e) && /no value for 'w'/.test(e.message));
    } finally {
      await dp.release();
    }
  }
});

test('a released step\'s worker waits in a pool and serves the next step with that step\'s graph', async () => {
  const x = randTensor(rng, 'float32', [8, 2, 6, 6]);
  const t = randTensor(rng, 'float32', [8, 3]);
  const scale = makeTensor('float32', [], Float32Array.of(0.5));
  const session = { providers: ['cpu' as const], intraOpThreads: 1 };
  const first = await DataParallelStep.create(await buildGradientGraph({ model: net('N'), loss: 'loss', wrt: ['w'] }), { workers: 2, session });
  await first.run(new Map([['w', randTensor(rng, 'float32', [3, 2, 3, 3])]]), { x, t, scale });
  await first.release();
  const idle = idleStepWorkers();
  assert.ok(idle >= 1, 'the worker went back to the pool');
  // another graph (fixed batch of 4 per slice, outputs requested): the pooled worker loads it
  const g = await buildGradientGraph({ model: net(4), loss: 'loss', wrt: ['w'], outputs: ['pred'] });
  const dp = await DataParallelStep.create(g, { workers: 2, concatOutputs: ['pred'], session });
  try {
    assert.equal(idleStepWorkers(), idle - 1, 'taken from the pool, not started anew');
    const full = await buildGradientGraph({ model: net('N'), loss: 'loss', wrt: ['w'], outputs: ['pred'] });
    const ref = await GradientStep.create(full, { session });
    const want = await ref.run(g.params, { x, t, scale });
    await ref.release();
    const got = await dp.run(g.params, { x, t, scale });
    close([got.loss], [want.loss], 1e-5, 'loss');
    close(got.outputs.pred!.data as Float32Array, want.outputs.pred!.data as Float32Array, 1e-5, 'pred');
    close(got.grads.get('w')!.data as Float32Array, want.grads.get('w')!.data as Float32Array, 1e-5, 'grad w');
  } finally {
    await dp.release();
  }
});

test('slice counts: one per core at most 2 for auto, lowered until they divide the batch', async () => {
  assert.equal(chooseWorkers(2, 32), 2);
  assert.equal(chooseWorkers(3, 32), 2);
  assert.equal(chooseWorkers(4, 12), 4);
  assert.equal(chooseWorkers(2, 31), 1);
  assert.equal(chooseWorkers(1, 32), 1);
  const auto = chooseWorkers('auto', 32);
  assert.ok(auto >= 1 && auto <= 2);
  const g = await buildGradientGraph({ model: net('N'), loss: 'loss', wrt: ['w'] });
  await assert.rejects(DataParallelStep.create(g, { workers: 1 }), (e: unknown) => isTtaqError(e) && /at least 2 slices/.test(e.message));
});

test('auto slices only steps with enough values per sample; an explicit count is kept for any size', () => {
  assert.equal(chooseWorkersFor('auto', 32, SLICE_MIN_SAMPLE_VALUES - 1), 1);
  assert.equal(chooseWorkersFor('auto', 32, SLICE_MIN_SAMPLE_VALUES), chooseWorkers('auto', 32));
  assert.equal(chooseWorkersFor(2, 32, 16), 2);
  assert.equal(chooseWorkersFor(2, 31, 1 << 20), 1);
});

test('the merge of slice results: the elementwise mean of two or more slices', () => {
  const a = Float32Array.of(1, -2, 0.5);
  const b = Float32Array.of(3, 2, 0.25);
  const c = Float32Array.of(-1, 6, 0);
  assert.deepEqual(Array.from(meanOf([a, b])), [2, 0, 0.375]);
  assert.deepEqual(Array.from(meanOf([a, b, c])), [1, 2, 0.25]);
});

test('a failed step waits for every slice before it rejects: releasing right after it does not abort the process', async () => {
  // this thread's slice fails at once (a row outside the table) while the worker's slice runs a
  // long graph; the step is released as soon as run() rejects
  const b = new GraphBuilder('slow');
  b.input('x', 'float32', ['N', 16, 48, 48]);
  b.initializer('w', randTensor(rng, 'float32', [32, 16, 3, 3]));
  let y = b.op1('Conv', ['x', 'w'], { pads: A.ints([1, 1, 1, 1]) });
  for (let i = 0; i < 6; i++) y = b.op1('Sigmoid', [b.op1('Mul', [y, y])]);
  b.op1('ReduceSum', [y], { keepdims: A.int(0) }, { outputNames: ['loss'] });
  const g = await buildGradientGraph({ model: model(b), loss: 'loss', wrt: ['w'] });
  const table = new Float32Array(new SharedArrayBuffer(4 * 16 * 16 * 48 * 48));
  for (let round = 0; round < 3; round++) {
    const dp = await DataParallelStep.create(g, { workers: 2, session: { providers: ['cpu'], intraOpThreads: 1 } });
    try {
      const rows = Int32Array.from({ length: 16 }, (_, i) => (i === 0 ? 99 : i));
      await assert.rejects(dp.run(g.params, { x: { rowsOf: table, rowDims: [16, 48, 48], rows } }), (e: unknown) => isTtaqError(e) && /row 99/.test(e.message));
    } finally {
      await dp.release();
    }
  }
});
