// Convs with computed weights moved to onnxruntime's NCHWc layout: the same values as the plain
// graph, only eligible Convs rewritten, and gradient steps that agree with the plain layout.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildGradientGraph, DataParallelStep, executionSession, forExecution, GradientStep } from '../../sdk/autodiff/index.ts';
import { A, GraphBuilder } from '../../sdk/onnx/builder.ts';
import type { Model, Tensor } from '../../sdk/onnx/types.ts';
import { Rng } from '../../sdk/nn/rng.ts';
import { convsToNchwc, createSession, nchwcBlockSize, NCHWC_DOMAIN, NCHWC_SESSION_EXTRA } from '../../sdk/runtime/index.ts';
import { inferValueShapes } from '../../sdk/autodiff/shapes.ts';
import { model, randTensor } from '../autodiff/helpers.ts';

const rng = new Rng(5);
const block = await nchwcBlockSize();
const skip = block === undefined ? 'onnxruntime has no NCHWc kernels on this CPU' : false;

const close = (a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what: string) => {
  assert.equal(a.length, b.length, what);
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) <= tol * (1 + Math.abs(b[i]!)), `${what}[${i}]: ${a[i]} vs ${b[i]}`);
};

/** Weights fed or computed (eligible), a constant weight, a grouped conv and 12 channels (not). */
function convs(): Model {
  const b = new GraphBuilder('nchwc');
  b.input('x', 'float32', [2, 16, 8, 8]);
  b.input('w1', 'float32', [16, 16, 3, 3]);
  b.input('w2', 'float32', [32, 16, 3, 3]);
  b.initializer('bias2', randTensor(rng, 'float32', [32]));
  b.initializer('wc', randTensor(rng, 'float32', [16, 16, 1, 1]));
  b.initializer('wg', randTensor(rng, 'float32', [16, 4, 3, 3]));
  b.initializer('w12', randTensor(rng, 'float32', [12, 16, 1, 1]));
  const pad = { pads: A.ints([1, 1, 1, 1]) };
  const y1 = b.op1('Conv', ['x', b.op1('Mul', ['w1', b.scalar(0.5)])], { ...pad, kernel_shape: A.ints([3, 3]) }, { name: 'fed' });
  const y2 = b.op1('Conv', [b.op1('Relu', [y1]), 'w2', 'bias2'], { ...pad, strides: A.ints([2, 2]) }, { name: 'strided_bias' });
  const y3 = b.op1('Conv', [y1, 'wc'], {}, { name: 'constant' });
  const y4 = b.op1('Conv', [y3, b.op1('Identity', ['wg'])], { ...pad, group: A.int(4) }, { name: 'grouped' });
  const y5 = b.op1('Conv', [y4, b.op1('Identity', ['w12'])], {}, { name: 'twelve' });
  b.output(y2, 'float32', [2, 32, 4, 4]);
  b.output(y5, 'float32', [2, 12, 8, 8]);
  return model(b);
}

async function runAll(m: Model, feeds: Record<string, Tensor>): Promise<Record<string, Tensor>> {
  const s = await createSession(m, { providers: ['cpu'], intraOpThreads: 1 });
  try { return await s.run(feeds); } finally { await s.release(); }
}

test('the NCHWc block is a power of two the CPU provider reports', { skip }, () => {
  assert.ok(block === 8 || block === 16, `block ${block}`);
});

test('eligible Convs move to NCHWc and give the plain values; constant, grouped and unaligned ones stay', { skip }, async () => {
  const m = convs();
  const shapes = await inferValueShapes(m);
  const r = convsToNchwc(m, (v) => shapes.get(v)?.dims, block!);
  assert.equal(r.rewritten, 2);
  const moved = r.model.graph.nodes.filter((n) => n.domain === NCHWC_DOMAIN && n.opType === 'Conv').map((n) => n.name);
  assert.deepEqual(moved, ['fed.nchwc', 'strided_bias.nchwc']);
  assert.deepEqual(r.model.graph.nodes.filter((n) => n.opType === 'Conv' && n.domain === '').map((n) => n.name), ['constant', 'grouped', 'twelve']);
  assert.ok(r.model.opsetImports.some((o) => o.domain === NCHWC_DOMAIN));
  const feeds = { x: randTensor(rng, 'float32', [2, 16, 8, 8]), w1: randTensor(rng, 'float32', [16, 16, 3, 3]), w2: randTensor(rng, 'float32', [32, 16, 3, 3]) };
  const want = await runAll(m, feeds);
  const got = await runAll(r.model, feeds);
  for (const o of m.graph.outputs) {
    assert.deepEqual(got[o.name]!.dims, want[o.name]!.dims);
    close(got[o.name]!.data as Float32Array, want[o.name]!.data as Float32Array, 1e-4, o.name);
  }
  // without eligible Convs the model comes back as it was
  assert.equal(convsToNchwc(r.model, (v) => shapes.get(v)?.dims, block!).rewritten, 0);
});

test('a gradient step in NCHWc gives the plain layout\'s loss and gradients', { skip }, async () => {
  const b = new GraphBuilder('nchwc-step');
  b.input('x', 'float32', ['N', 16, 6, 6]);
  b.initializer('w1', randTensor(rng, 'float32', [16, 16, 3, 3], -0.3, 0.3));
  b.initializer('w2', randTensor(rng, 'float32', [16, 16, 3, 3], -0.3, 0.3));
  const pad = { pads: A.ints([1, 1, 1, 1]) };
  const h = b.op1('Relu', [b.op1('Conv', ['x', 'w1'], pad)]);
  const y = b.op1('Conv', [h, 'w2'], pad);
  // a batch mean: two slices average their losses and gradients
  b.op1('ReduceMean', [b.op1('Mul', [y, y])], { keepdims: A.int(0) }, { outputNames: ['loss'] });
  const gg = await buildGradientGraph({ model: model(b), loss: 'loss', wrt: ['w1', 'w2'] });
  const session = { providers: ['cpu' as const], intraOpThreads: 1 };
  const moved = await forExecution(gg, { session });
  assert.ok(moved.model.graph.nodes.filter((n) => n.domain === NCHWC_DOMAIN && n.opType === 'Conv').length >= 3, 'forward convs and the stride-1 input gradient');
  assert.equal(await forExecution(gg, { session, convLayout: 'plain' }), gg);
  // its session keeps the weight reorders' two fast Transposes apart (onnxruntime's transpose
  // optimizer would fuse them into one slow one), unless the caller says otherwise; a plain graph
  // gets the caller's options as they are
  const key = 'optimization.disable_specified_optimizers';
  assert.equal(executionSession(moved, session).extra?.[key], NCHWC_SESSION_EXTRA[key]);
  assert.equal(executionSession(moved, { ...session, extra: { [key]: '' } }).extra?.[key], '');
  assert.equal(executionSession(gg, session), session);
  assert.ok(moved.model.graph.nodes.some((n) => n.name.endsWith('.nchwc_w_out_last')), 'the weight reorder in two Transposes');
  const x = randTensor(rng, 'float32', [4, 16, 6, 6]);
  const res = [];
  for (const convLayout of ['plain', 'nchwc'] as const) {
    const step = await GradientStep.create(gg, { session, convLayout });
    try { res.push(await step.run(gg.params, { x })); } finally { await step.release(); }
  }
  // two slices, the worker's session built from the rewritten model
  const dp = await DataParallelStep.create(gg, { workers: 2, session });
  try { res.push(await dp.run(gg.params, { x })); } finally { await dp.release(); }
  for (const k of [1, 2]) {
    close([res[k]!.loss], [res[0]!.loss], 1e-5, `loss (${k})`);
    for (const w of ['w1', 'w2']) close(res[k]!.grads.get(w)!.data as Float32Array, res[0]!.grads.get(w)!.data as Float32Array, 1e-4, `grad ${w} (${k})`);
  }
});
