// Conv's backward formulations: which one each option and the automatic choice emit.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildGradientGraph, chooseConvGrad, LEGACY_CONV_GRAD, type RuleOptions } from '../../sdk/autodiff/index.ts';
import { A, GraphBuilder } from '../../sdk/onnx/builder.ts';
import type { Attribute } from '../../sdk/onnx/types.ts';
import { Rng } from '../../sdk/nn/rng.ts';
import { model, randTensor } from './helpers.ts';

const rng = new Rng(7);

async function backwardOps(x: number[], w: number[], attrs: Record<string, Attribute>, ruleOptions?: RuleOptions): Promise<string[]> {
  const b = new GraphBuilder('g');
  b.input('x', 'float32', x);
  b.initializer('w', randTensor(rng, 'float32', w));
  const y = b.op1('Conv', ['x', 'w'], attrs);
  const loss = b.op1('ReduceSum', [y], { keepdims: A.int(0) }, { outputNames: ['loss'] });
  b.output(loss, 'float32', []);
  const gg = await buildGradientGraph({ model: model(b), loss, wrt: ['x', 'w'], ...(ruleOptions ? { ruleOptions } : {}) });
  return gg.model.graph.nodes.filter((n) => n.name.includes('grad_')).map((n) => n.opType);
}

test('stride 1, 14x14: Conv input gradient and Gemm weight gradient by default; legacy on request', async () => {
  const pads = { pads: A.ints([1, 1, 1, 1]) };
  const fast = await backwardOps([2, 4, 14, 14], [4, 4, 3, 3], pads);
  assert.ok(fast.includes('Gemm') && !fast.includes('ConvTranspose'), fast.join(','));
  const old = await backwardOps([2, 4, 14, 14], [4, 4, 3, 3], pads, { conv: LEGACY_CONV_GRAD });
  assert.ok(old.includes('ConvTranspose') && !old.includes('Gemm'), old.join(','));
});

test("'gemmsplit': one Gemm per kernel offset and no patch Concat; 'gemm' on few channels: one Gemm", async () => {
  const pads = { pads: A.ints([1, 1, 1, 1]) };
  const split = await backwardOps([2, 8, 6, 6], [4, 8, 3, 3], pads, { conv: { weight: 'gemmsplit' } });
  assert.equal(split.filter((o) => o === 'Gemm').length, 9, split.join(','));
  assert.ok(!split.includes('Concat'), split.join(','));
  const one = await backwardOps([2, 3, 6, 6], [4, 3, 3, 3], pads);
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

test('strided convs keep ConvTranspose; pads beyond the kernel fall back to it when Conv is forced', async () => {
  const s2 = await backwardOps([2, 4, 8, 8], [4, 4, 3, 3], { strides: A.ints([2, 2]), pads: A.ints([1, 1, 1, 1]) });
  assert.ok(s2.includes('ConvTranspose'), s2.join(','));
  const wide = await backwardOps([1, 2, 4, 4], [2, 2, 2, 2], { pads: A.ints([2, 0, 3, 1]) }, { conv: { input: 'conv' } });
  assert.ok(wide.includes('ConvTranspose'), wide.join(','));
});

test('chooseConvGrad: per-case decisions and overrides', () => {
  const base = { group: 1, strides: [1, 1], dilations: [1, 1], padsBegin: [1, 1], padsEnd: [1, 1] };
  const r20 = { ...base, x: [128, 16, 28, 28], w: [16, 16, 3, 3], y: [128, 16, 28, 28] };
  assert.deepEqual(chooseConvGrad(r20), { input: 'conv', weight: 'shifted' });
  assert.deepEqual(chooseConvGrad({ ...r20, x: [128, 64, 7, 7], w: [64, 64, 3, 3], y: [128, 64, 7, 7] }), { input: 'conv', weight: 'shifted' });
  assert.deepEqual(chooseConvGrad({ ...r20, x: [128, 1, 28, 28] }), { input: 'conv', weight: 'gemm' });
  const s2 = { ...r20, strides: [2, 2], w: [32, 16, 3, 3], y: [128, 32, 14, 14] };
  assert.deepEqual(chooseConvGrad(s2), { input: 'convTranspose', weight: 'gemmsplit' });
  const proj = { ...base, padsBegin: [0, 0], padsEnd: [0, 0], strides: [2, 2], x: [128, 16, 28, 28], w: [32, 16, 1, 1], y: [128, 32, 14, 14] };
  assert.deepEqual(chooseConvGrad(proj), { input: 'convTranspose', weight: 'gemm' });
  const dw = { ...r20, group: 16, w: [16, 1, 3, 3] };
  assert.deepEqual(chooseConvGrad(dw), { input: 'conv', weight: 'conv' });
  assert.deepEqual(chooseConvGrad(r20, LEGACY_CONV_GRAD), { input: 'convTranspose', weight: 'conv' });
  assert.deepEqual(chooseConvGrad(dw, { weight: 'gemm' }), { input: 'conv', weight: 'gemm' });
});
