// Conv's backward formulations: which one each option and the automatic choice emit.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildGradientGraph, chooseConvGrad, LEGACY_CONV_GRAD, type RuleOptions } from '../../sdk/autodiff/index.ts';
import { A, GraphBuilder } from '../../sdk/onnx/builder.ts';
import type { Attribute, Tensor } from '../../sdk/onnx/types.ts';
import { Rng } from '../../sdk/nn/rng.ts';
import { createSession } from '../../sdk/runtime/index.ts';
import { model, randTensor } from './helpers.ts';

const rng = new Rng(7);

async function backwardOps(x: number[], w: number[], attrs: Record<string, Attribute>, ruleOptions?: RuleOptions, part = 'grad_'): Promise<string[]> {
  const b = new GraphBuilder('g');
  b.input('x', 'float32', x);
  b.initializer('w', randTensor(rng, 'float32', w));
  const y = b.op1('Conv', ['x', 'w'], attrs);
  const loss = b.op1('ReduceSum', [y], { keepdims: A.int(0) }, { outputNames: ['loss'] });
  b.output(loss, 'float32', []);
  const gg = await buildGradientGraph({ model: model(b), loss, wrt: ['x', 'w'], ...(ruleOptions ? { ruleOptions } : {}) });
  return gg.model.graph.nodes.filter((n) => n.name.includes(part)).map((n) => n.opType);
}

test('stride 1, 14x14: Conv input gradient and MatMul weight gradient by default; legacy on request', async () => {
  const pads = { pads: A.ints([1, 1, 1, 1]) };
  const fast = await backwardOps([2, 8, 14, 14], [4, 8, 3, 3], pads);
  assert.ok(fast.includes('MatMul') && !fast.includes('Gemm') && !fast.includes('ConvTranspose'), fast.join(','));
  const old = await backwardOps([2, 8, 14, 14], [4, 8, 3, 3], pads, { conv: LEGACY_CONV_GRAD });
  assert.ok(old.includes('ConvTranspose') && !old.includes('Gemm'), old.join(','));
});

test("'gemmsplit': one Gemm per kernel offset and no patch Concat; 'gemm': one Gemm over the concatenated patches", async () => {
  const pads = { pads: A.ints([1, 1, 1, 1]) };
  const split = await backwardOps([2, 8, 6, 6], [4, 8, 3, 3], pads, { conv: { weight: 'gemmsplit' } });
  assert.equal(split.filter((o) => o === 'Gemm').length, 9, split.join(','));
  assert.ok(!split.includes('Concat'), split.join(','));
  const one = await backwardOps([2, 3, 6, 6], [4, 3, 3, 3], pads, { conv: { weight: 'gemm' } });
  assert.equal(one.filter((o) => o === 'Gemm').length, 1, one.join(','));
  assert.ok(one.includes('Concat'), one.join(','));
});

test("'shifted': one Gemm per offset on shifted copies of X and dY, no Slice; strided convs fall back", async () => {
  const sh = { conv: { weight: 'shifted' as const } };
  const ops = await backwardOps([2, 8, 6, 5], [4, 8, 3, 3], { pads: A.ints([1, 1, 1, 1]) }, sh);
  assert.equal(ops.filter((o) => o === 'Gemm').length, 9, ops.join(','));
  assert.equal(ops.filter((o) => o === 'Pad').length, 4, ops.join(','));
  assert.ok(!ops.slice(1).includes('Slice'), ops.join(',')); // the first: the flipped weights of dX
  const s2 = await backwardOps([2, 8, 6, 6], [4, 8, 3, 3], { pads: A.ints([1, 1, 1, 1]), strides: A.ints([2, 2]) }, sh);
  assert.equal(s2.filter((o) => o === 'Gemm').length, 9, s2.join(',')); // 'gemmsplit'
});

test("'shiftmmb': the shift MatMuls contracted per sample (a batched MatMul, then a ReduceSum over the batch), no Gemm, Pad or Slice", async () => {
  const ops = await backwardOps([2, 8, 7, 7], [4, 8, 3, 3], { pads: A.ints([1, 1, 1, 1]) }, { conv: { weight: 'shiftmmb' } }, 'grad_weight');
  assert.equal(ops.filter((o) => o === 'MatMul').length, 3, ops.join(','));
  assert.ok(!ops.includes('Gemm') && !ops.includes('Pad') && !ops.includes('Slice'), ops.join(','));
  // strided: not applicable, the 'shifted' chain's fallback ('gemmsplit': one Gemm per offset)
  const s2 = await backwardOps([2, 8, 6, 6], [4, 8, 3, 3], { pads: A.ints([1, 1, 1, 1]), strides: A.ints([2, 2]) }, { conv: { weight: 'shiftmmb' } });
  assert.equal(s2.filter((o) => o === 'Gemm').length, 9, s2.join(','));
});

test("'shiftmmk': X's column shifts offset-major in one MatMul, no Transpose of the shifted X, no Gemm, Pad or Slice", async () => {
  const ops = await backwardOps([2, 8, 7, 7], [4, 8, 3, 3], { pads: A.ints([1, 1, 1, 1]) }, { conv: { weight: 'shiftmmk' } }, 'grad_weight');
  assert.equal(ops.filter((o) => o === 'MatMul').length, 3, ops.join(','));
  assert.equal(ops.filter((o) => o === 'Transpose').length, 2, ops.join(',')); // the final order only (two swaps of the last two axes)
  assert.ok(!ops.includes('Gemm') && !ops.includes('Pad') && !ops.includes('Slice'), ops.join(','));
  const s2 = await backwardOps([2, 8, 6, 6], [4, 8, 3, 3], { pads: A.ints([1, 1, 1, 1]), strides: A.ints([2, 2]) }, { conv: { weight: 'shiftmmk' } });
  assert.equal(s2.filter((o) => o === 'Gemm').length, 9, s2.join(','));
});

test("'shiftmm': two shift MatMuls and one Gemm for all offsets, no Pad or Slice", async () => {
  const ops = await backwardOps([2, 8, 7, 7], [4, 8, 3, 3], { pads: A.ints([1, 1, 1, 1]) }, { conv: { weight: 'shiftmm' } }, 'grad_weight');
  assert.equal(ops.filter((o) => o === 'Gemm').length, 1, ops.join(','));
  assert.equal(ops.filter((o) => o === 'MatMul').length, 2, ops.join(','));
  assert.ok(!ops.includes('Pad') && !ops.slice(1).includes('Slice'), ops.join(','));
  // 3-D convs keep 'shifted' when asked for 'shiftmm'
  const c3 = await backwardOps([1, 8, 4, 4, 4], [4, 8, 3, 3, 3], { pads: A.ints([1, 1, 1, 1, 1, 1]) }, { conv: { weight: 'shiftmm' } });
  assert.equal(c3.filter((o) => o === 'Gemm').length, 27, c3.join(','));
});

test("strided 3x3 by default: 'onehot' patches from a Conv, then a per-sample MatMul (>= 128 output positions) or one Gemm", async () => {
  const s2 = { strides: A.ints([2, 2]), pads: A.ints([1, 1, 1, 1]) };
  const wide = await backwardOps([2, 8, 24, 24], [4, 8, 3, 3], s2, undefined, 'grad_weight'); // 12x12 = 144 outputs
  assert.ok(wide.includes('Conv') && wide.includes('MatMul') && !wide.includes('Gemm') && !wide.includes('Slice'), wide.join(','));
  const small = await backwardOps([2, 8, 14, 14], [4, 8, 3, 3], s2, undefined, 'grad_weight'); // 7x7 = 49 outputs
  assert.ok(small.includes('Conv') && small.filter((o) => o === 'Gemm').length === 1 && !small.includes('MatMul') && !small.includes('Slice'), small.join(','));
});

test('the input gradient flips W by one MatMul and two fast Transposes, without a reversing Slice', async () => {
  const ops = await backwardOps([2, 8, 7, 7], [4, 8, 3, 3], { pads: A.ints([1, 1, 1, 1]) }, undefined, 'grad_input');
  assert.deepEqual(ops.filter((o) => o !== 'Reshape'), ['MatMul', 'Transpose', 'Transpose', 'Conv'], ops.join(','));
});

test("strided 2-D convs by default: 'phase', a Conv over dY per row phase, the column phases interleaved by a Transpose, the rows by a Concat", async () => {
  const s2 = await backwardOps([2, 4, 8, 8], [4, 4, 3, 3], { strides: A.ints([2, 2]), pads: A.ints([1, 1, 1, 1]) }, undefined, 'grad_input');
  assert.deepEqual(s2.filter((o) => o !== 'Reshape'), ['MatMul', 'Conv', 'Transpose', 'MatMul', 'Conv', 'Transpose', 'Concat'], s2.join(','));
  // strided rows only: nothing to interleave within a row
  const rows = await backwardOps([2, 4, 8, 8], [4, 4, 3, 3], { strides: A.ints([2, 1]), pads: A.ints([1, 1, 1, 1]) }, undefined, 'grad_input');
  assert.deepEqual(rows.filter((o) => o !== 'Reshape'), ['MatMul', 'Conv', 'MatMul', 'Conv', 'Concat'], rows.join(','));
  // pads beyond the taps (every phase reads dY from past its own position): the spans widen
  const far = await backwardOps([1, 2, 8, 8], [2, 2, 2, 2], { strides: A.ints([2, 2]), pads: A.ints([3, 3, 3, 3]) }, undefined, 'grad_input');
  assert.ok(far.includes('Conv') && !far.includes('ConvTranspose'), far.join(','));
});

test('strided convs outside the phase form keep ConvTranspose: depthwise, 1x1 and 1-D', async () => {
  const s2 = { strides: A.ints([2, 2]), pads: A.ints([1, 1, 1, 1]) };
  assert.ok((await backwardOps([2, 4, 8, 8], [4, 1, 3, 3], { ...s2, group: A.int(4) })).includes('ConvTranspose'));
  assert.ok((await backwardOps([2, 4, 8, 8], [4, 4, 1, 1], { strides: A.ints([2, 2]) })).includes('ConvTranspose'));
  assert.ok((await backwardOps([2, 4, 9], [4, 4, 3], { strides: A.ints([2]), pads: A.ints([1, 1]) })).includes('ConvTranspose'));
  const wide = await backwardOps([1, 2, 4, 4], [2, 2, 2, 2], { pads: A.ints([2, 0, 3, 1]) }, { conv: { input: 'conv' } });
  assert.ok(wide.includes('ConvTranspose'), wide.join(','));
});

test('chooseConvGrad: per-case decisions and overrides', () => {
  const base = { group: 1, strides: [1, 1], dilations: [1, 1], padsBegin: [1, 1], padsEnd: [1, 1] };
  const r20 = { ...base, x: [128, 16, 28, 28], w: [16, 16, 3, 3], y: [128, 16, 28, 28] };
  assert.deepEqual(chooseConvGrad(r20), { input: 'conv', weight: 'shiftmmk' });
  assert.deepEqual(chooseConvGrad({ ...r20, x: [128, 64, 7, 7], w: [64, 64, 3, 3], y: [128, 64, 7, 7] }), { input: 'conv', weight: 'shiftmmk' });
  assert.deepEqual(chooseConvGrad({ ...r20, x: [128, 32, 14, 14], w: [32, 32, 3, 3], y: [128, 32, 14, 14] }), { input: 'conv', weight: 'shiftmmk' });
  // 3-D convs: the per-offset chain
  assert.deepEqual(chooseConvGrad({ ...r20, x: [2, 16, 8, 8, 8], w: [16, 16, 3, 3, 3], y: [2, 16, 8, 8, 8], strides: [1, 1, 1], dilations: [1, 1, 1], padsBegin: [1, 1, 1], padsEnd: [1, 1, 1] }).weight, 'shifted');
  // a grayscale stem: dX as ConvTranspose (a Conv to one channel is a one-row GEMM)
  assert.deepEqual(chooseConvGrad({ ...r20, x: [128, 1, 28, 28], w: [16, 1, 3, 3] }), { input: 'convTranspose', weight: 'onehot' });
  assert.deepEqual(chooseConvGrad({ ...r20, x: [128, 4, 28, 28], w: [16, 4, 3, 3] }), { input: 'convTranspose', weight: 'onehot' });
  assert.deepEqual(chooseConvGrad({ ...r20, x: [128, 8, 28, 28], w: [16, 8, 3, 3] }), { input: 'conv', weight: 'shiftmmk' });
  const s2 = { ...r20, strides: [2, 2], w: [32, 16, 3, 3], y: [128, 32, 14, 14] };
  assert.deepEqual(chooseConvGrad(s2), { input: 'phase', weight: 'onehot' });
  assert.deepEqual(chooseConvGrad({ ...s2, x: [128, 4, 28, 28], w: [32, 4, 3, 3] }), { input: 'phase', weight: 'onehot' });
  const proj = { ...base, padsBegin: [0, 0], padsEnd: [0, 0], strides: [2, 2], x: [128, 16, 28, 28], w: [32, 16, 1, 1], y: [128, 32, 14, 14] };
  assert.deepEqual(chooseConvGrad(proj), { input: 'convTranspose', weight: 'gemm' });
  const dw = { ...r20, group: 16, w: [16, 1, 3, 3] };
  assert.deepEqual(chooseConvGrad(dw), { input: 'conv', weight: 'rowgemm' });
  assert.deepEqual(chooseConvGrad({ ...dw, strides: [2, 2], y: [128, 16, 14, 14] }), { input: 'convTranspose', weight: 'rowgemm' });
  const dwMult2 = { ...r20, group: 16, w: [32, 1, 3, 3], y: [128, 32, 28, 28] };
  assert.deepEqual(chooseConvGrad(dwMult2), { input: 'conv', weight: 'conv' });
  const g4 = { ...r20, group: 4, w: [16, 4, 3, 3] };
  assert.deepEqual(chooseConvGrad(g4), { input: 'conv', weight: 'conv' });
  assert.deepEqual(chooseConvGrad(r20, LEGACY_CONV_GRAD), { input: 'convTranspose', weight: 'conv' });
  assert.deepEqual(chooseConvGrad(dw, { weight: 'gemm' }), { input: 'conv', weight: 'gemm' });
});

test("depthwise 'rowgemm': batched MatMuls over rows and one diagonal-picking MatMul, no Conv for dW", async () => {
  const ops = await backwardOps([2, 6, 8, 7], [6, 1, 3, 3], { group: A.int(6), pads: A.ints([1, 1, 1, 1]) });
  assert.equal(ops.filter((o) => o === 'MatMul').length, 4, ops.join(',')); // 3 row offsets + the pick
  assert.equal(ops.filter((o) => o === 'Conv').length, 1, ops.join(',')); // dX only
  const mult2 = await backwardOps([2, 3, 8, 7], [6, 1, 3, 3], { group: A.int(3), pads: A.ints([1, 1, 1, 1]) }, { conv: { weight: 'rowgemm' } });
  assert.equal(mult2.filter((o) => o === 'Conv').length, 2, mult2.join(',')); // multiplier 2: the Conv form
  const sh = await backwardOps([2, 6, 8, 7], [6, 1, 3, 3], { group: A.int(6), pads: A.ints([1, 1, 1, 1]) }, { conv: { weight: 'shifted' } });
  assert.equal(sh.filter((o) => o === 'Mul').length, 9, sh.join(','));
  assert.ok(!sh.includes('MatMul') && !sh.includes('Gemm'), sh.join(','));
});

test("depthwise 'rowgemm' and 'shifted' equal the batch-transposed Conv form within 1e-4 on random data", async () => {
  const cases: [string, number[], number[], Record<string, Attribute>][] = [
    ['s1-pad1', [3, 8, 10, 9], [3, 3], { pads: A.ints([1, 1, 1, 1]) }],
    ['s2-pad1', [3, 8, 11, 10], [3, 3], { strides: A.ints([2, 2]), pads: A.ints([1, 1, 1, 1]) }],
    ['s1-dilated2', [2, 5, 9, 9], [3, 3], { dilations: A.ints([2, 2]), pads: A.ints([2, 2, 2, 2]) }],
    ['s2-dilated-asym', [2, 5, 12, 11], [3, 2], { strides: A.ints([2, 3]), dilations: A.ints([2, 2]), pads: A.ints([2, 0, 1, 2]) }],
    ['5x5-valid', [2, 4, 9, 8], [5, 5], {}],
    ['pad-only-row', [2, 3, 2, 5], [2, 2], { strides: A.ints([3, 1]), pads: A.ints([1, 0, 0, 1]) }],
  ];
  for (const [name, x, k, attrs] of cases) {
    const C = x[1]!;
    const b = new GraphBuilder('dw');
    b.input('x', 'float32', x);
    b.initializer('w', randTensor(rng, 'float32', [C, 1, ...k]));
    const y = b.op1('Conv', ['x', 'w'], { ...attrs, group: A.int(C) });
    // A nonlinear loss so that dY differs per element.
    const loss = b.op1('ReduceSum', [b.op1('Mul', [y, b.op1('Tanh', [y])])], { keepdims: A.int(0) }, { outputNames: ['loss'] });
    b.output(loss, 'float32', []);
    const m = model(b);
    const xv = randTensor(rng, 'float32', x);
    const grads: Float32Array[] = [];
    for (const weight of ['conv', 'rowgemm', 'shifted'] as const) {
      const gg = await buildGradientGraph({ model: m, loss, wrt: ['w'], ruleOptions: { conv: { weight } } });
      const s = await createSession(gg.model, { providers: ['cpu'] });
      const feeds: Record<string, Tensor> = { x: xv };
      for (const [n, t] of gg.params) feeds[n] = t;
      grads.push((await s.run(feeds))[gg.grads.get('w')!]!.data as Float32Array);
      await s.release();
    }
    const [ref, ...others] = grads as [Float32Array, ...Float32Array[]];
    const scale = Math.max(1, ...ref.map(Math.abs));
    assert.ok(ref.some((v) => Math.abs(v) > 1e-3), `${name}: reference gradient is all zero`);
    for (const [i, g] of others.entries()) {
      const diff = Math.max(...g.map((v, j) => Math.abs(v - ref[j]!)));
      assert.ok(diff <= 1e-4 * scale, `${name} ${i === 0 ? 'rowgemm' : 'shifted'}: max |diff| ${diff} (scale ${scale})`);
    }
  }
});

test("'shiftmm' on a graph with a symbolic batch equals 'shifted' at another batch size", async () => {
  const b = new GraphBuilder('sym');
  b.input('x', 'float32', ['N', 8, 7, 6]);
  b.initializer('w', randTensor(rng, 'float32', [4, 8, 3, 3]));
  const y = b.op1('Conv', ['x', 'w'], { pads: A.ints([1, 2, 1, 0]), dilations: A.ints([1, 2]) });
  const loss = b.op1('ReduceSum', [b.op1('Mul', [y, b.op1('Tanh', [y])])], { keepdims: A.int(0) }, { outputNames: ['loss'] });
  b.output(loss, 'float32', []);
  const xv = randTensor(rng, 'float32', [3, 8, 7, 6]);
  const grads: Float32Array[] = [];
  for (const weight of ['shifted', 'shiftmm'] as const) {
    const gg = await buildGradientGraph({ model: model(b), loss, wrt: ['w'], ruleOptions: { conv: { weight } } });
    assert.equal(gg.model.graph.nodes.some((n) => n.name.includes('grad_weight_xshift') && n.opType === 'MatMul'), weight === 'shiftmm');
    const s = await createSession(gg.model, { providers: ['cpu'] });
    const feeds: Record<string, Tensor> = { x: xv };
    for (const [n, t] of gg.params) feeds[n] = t;
    grads.push((await s.run(feeds))[gg.grads.get('w')!]!.data as Float32Array);
    await s.release();
  }
  const [ref, mm] = grads as [Float32Array, Float32Array];
  const scale = Math.max(1, ...ref.map(Math.abs));
  assert.ok(Math.max(...mm.map((v, j) => Math.abs(v - ref[j]!))) <= 1e-4 * scale);
});
