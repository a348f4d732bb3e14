// Every gradient rule against central finite differences (float64 where onnxruntime's CPU kernels
// take double; float32 for Conv/pools/hard activations, with a large step for the linear ops,
// whose differences are then exact up to rounding).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { A, GraphBuilder } from '../../sdk/onnx/builder.ts';
import { f32, f64 } from '../../sdk/onnx/tensor.ts';
import type { Attribute } from '../../sdk/onnx/types.ts';
import { Rng } from '../../sdk/nn/rng.ts';
import { buildGradientGraph, LEGACY_CONV_GRAD, type RuleOptions } from '../../sdk/autodiff/index.ts';
import { createSession } from '../../sdk/runtime/index.ts';
import { gradCheck, model, randAway, randTensor, type CheckCase, type FloatType } from './helpers.ts';

const rng = new Rng(20240601);
const D = 'float64' as const;
const F = 'float32' as const;

async function check(c: CheckCase): Promise<void> {
  const r = await gradCheck(c);
  if (process.env.SHOW_ERR) console.log(c.name, [...r.errors].map(([w, e]) => `${w}:${e.toExponential(1)}`).join(" "));
  for (const [w, e] of r.errors) {
    assert.ok(e <= r.rtol, `${c.name}: gradient of '${w}' has relative error ${e.toExponential(2)} > ${r.rtol}`);
  }
}

/** One-op case: inputs x0..xn fed, initializers p0..pn, all differentiated. */
function unary(name: string, op: string, dtype: FloatType, x: ReturnType<typeof randTensor>, attrs: Record<string, Attribute> = {}, extra: Partial<CheckCase> = {}): CheckCase {
  return {
    name, dtype, wrt: ['x'], feeds: { x },
    build: (b) => { b.input('x', dtype, [...x.dims]); return b.op1(op, ['x'], attrs); },
    ...extra,
  };
}

describe('elementwise rules', () => {
  const shape = [2, 3, 4];
  test('Relu', () => check(unary('relu', 'Relu', D, randAway(rng, D, shape, [0]))));
  test("Relu, 'where' form", () => check({ ...unary('relu-where', 'Relu', D, randAway(rng, D, shape, [0])), ruleOptions: { relu: 'where' } }));
  test("Relu in float32 ('step', the default there)", () => check(unary('relu-f32', 'Relu', F, randAway(rng, F, shape, [0]))));
  test("Relu's float32 step mask equals y > 0 exactly, at zero, the smallest normals, denormals and the largest floats", async () => {
    const xs = [0, -0, -1, 2 ** -126, 2 ** -125, 2 ** -100, 1e-30, 1, 1e30, 3.4e38, -3.4e38, 1e-40, -1e-40, 0.5];
    const dy = xs.map((_, i) => (i % 3) - 1.25);
    const grad = async (relu: 'step' | 'mask'): Promise<Float32Array> => {
      const b = new GraphBuilder('relu');
      b.input('x', F, [xs.length]);
      const y = b.op1('Relu', ['x']);
      const loss = b.op1('ReduceSum', [b.op1('Mul', [y, b.constant(f32([xs.length], dy), 'dy')]), b.ints([0])], { keepdims: A.int(0) }, { outputNames: ['loss'] });
      b.output(loss, F, []);
      const gg = await buildGradientGraph({ model: model(b), loss, wrt: ['x'], ruleOptions: { relu } });
      const s = await createSession(gg.model, { providers: ['cpu'] });
      try {
        return (await s.run({ x: f32([xs.length], xs) }))[gg.grads.get('x')!]!.data as Float32Array;
      } finally {
        await s.release();
      }
    };
    const [step, mask] = [await grad('step'), await grad('mask')];
    assert.deepEqual([...step], [...mask]);
    // and they are dy where x is a positive normal float, 0 elsewhere (denormals count as zero)
    assert.deepEqual([...step].map((v) => v + 0), xs.map((x, i) => (x >= 2 ** -126 ? Math.fround(dy[i]!) : 0)));
  });
  test('LeakyRelu', () => check(unary('leaky', 'LeakyRelu', D, randAway(rng, D, shape, [0]), { alpha: A.float(0.1) })));
  test('Sigmoid', () => check(unary('sigmoid', 'Sigmoid', D, randTensor(rng, D, shape, -3, 3))));
  test('Tanh', () => check(unary('tanh', 'Tanh', D, randTensor(rng, D, shape, -2, 2))));
  test('Exp', () => check(unary('exp', 'Exp', D, randTensor(rng, D, shape))));
  test('Log', () => check(unary('log', 'Log', D, randTensor(rng, D, shape, 0.2, 2))));
  test('Sqrt', () => check(unary('sqrt', 'Sqrt', D, randTensor(rng, D, shape, 0.2, 2))));
  test('Reciprocal', () => check(unary('recip', 'Reciprocal', D, randTensor(rng, D, shape, 0.5, 2))));
  test('Neg', () => check(unary('neg', 'Neg', D, randTensor(rng, D, shape))));
  test('Abs', () => check(unary('abs', 'Abs', D, randAway(rng, D, shape, [0]))));
  test('Identity', () => check(unary('identity', 'Identity', D, randTensor(rng, D, shape))));
  test('HardSigmoid (float32)', () => check(unary('hsig', 'HardSigmoid', F, randAway(rng, F, shape, [-2.5, 2.5], 0.1, -4, 4))));
  test('HardSwish (float32)', () => check(unary('hswish', 'HardSwish', F, randAway(rng, F, shape, [-3, 3], 0.1, -4, 4))));
  test('Softmax axis 1 and -1', async () => {
    await check(unary('softmax1', 'Softmax', D, randTensor(rng, D, shape), { axis: A.int(1) }));
    await check(unary('softmax-1', 'Softmax', D, randTensor(rng, D, shape)));
  });
  test('LogSoftmax', () => check(unary('logsoftmax', 'LogSoftmax', D, randTensor(rng, D, shape), { axis: A.int(1) })));
  test('Clip with min/max as differentiated initializers', () => check({
    name: 'clip', dtype: D, wrt: ['x', 'lo', 'hi'], feeds: { x: randAway(rng, D, shape, [-0.3, 0.4]) },
    build: (b) => {
      b.input('x', D, shape);
      b.initializer('lo', f64([], [-0.3])); b.initializer('hi', f64([], [0.4]));
      return b.op1('Clip', ['x', 'lo', 'hi']);
    },
  }));
  test('Clip with only a max (Relu6-like)', () => check({
    name: 'clip-max', dtype: D, wrt: ['x'], feeds: { x: randAway(rng, D, shape, [0.5], 0.05, -1, 1) },
    build: (b) => { b.input('x', D, shape); return b.op1('Clip', ['x', '', b.constant(f64([], [0.5]))]); },
  }));
  test('Pow: tensor exponent and constant exponent', async () => {
    await check({
      name: 'pow', dtype: D, wrt: ['x', 'e'], feeds: { x: randTensor(rng, D, shape, 0.3, 2) },
      build: (b) => { b.input('x', D, shape); b.initializer('e', randTensor(rng, D, [4], 0.5, 2.5)); return b.op1('Pow', ['x', 'e']); },
    });
    await check({
      name: 'pow-const', dtype: D, wrt: ['x'], feeds: { x: randTensor(rng, D, shape, -2, 2) },
      build: (b) => { b.input('x', D, shape); return b.op1('Pow', ['x', b.constant(f64([], [3]))]); },
    });
  });
  test('Where with broadcasting branches', () => check({
    name: 'where', dtype: D, wrt: ['a', 'c'], feeds: { x: randTensor(rng, D, shape) },
    build: (b) => {
      b.input('x', D, shape);
      b.initializer('a', randTensor(rng, D, [3, 1])); b.initializer('c', randTensor(rng, D, [4]));
      const cond = b.op1('Greater', ['x', b.constant(f64([], [0.1]))]);
      return b.op1('Mul', [b.op1('Where', [cond, 'a', 'c']), 'x']);
    },
  }));
  test('Cast float32 -> float64 -> float32', () => check({
    name: 'cast', dtype: F, wrt: ['x'], feeds: { x: randTensor(rng, F, shape) }, eps: 1, rtol: 1e-5,
    build: (b) => {
      b.input('x', F, shape);
      const d = b.op1('Cast', ['x'], { to: A.int(11) });
      return b.op1('Cast', [b.op1('Mul', [d, b.constant(f64([], [3]))])], { to: A.int(1) });
    },
  }));
});

describe('broadcasting binary ops', () => {
  const variants: [string, number[], number[]][] = [
    ['same', [2, 3, 4], [2, 3, 4]],
    ['trailing', [2, 3, 4], [4]],
    ['middle-one', [2, 3, 4], [3, 1]],
    ['both-ways', [2, 1, 4], [1, 3, 1]],
    ['left-smaller', [3, 4], [2, 3, 4]],
    ['scalar', [2, 3, 4], []],
  ];
  for (const op of ['Add', 'Sub', 'Mul', 'Div']) {
    test(`${op} over ${variants.length} broadcast patterns`, async () => {
      for (const [v, sa, sb] of variants) {
        await check({
          name: `${op}-${v}`, dtype: D, wrt: ['a', 'b'], feeds: {},
          build: (b) => {
            b.initializer('a', randTensor(rng, D, sa));
            b.initializer('b', op === 'Div' ? randTensor(rng, D, sb, 0.5, 2) : randTensor(rng, D, sb));
            return b.op1(op, ['a', 'b']);
          },
        });
      }
    });
  }
  test('Sum of three broadcast inputs, one used twice', () => check({
    name: 'sum3', dtype: D, wrt: ['a', 'b', 'c'], feeds: {},
    build: (b) => {
      b.initializer('a', randTensor(rng, D, [2, 3])); b.initializer('b', randTensor(rng, D, [3])); b.initializer('c', randTensor(rng, D, [2, 1]));
      return b.op1('Mul', [b.op1('Sum', ['a', 'b', 'c']), 'a']);
    },
  }));
  test('Expand', () => check({
    name: 'expand', dtype: D, wrt: ['a'], feeds: {},
    build: (b) => { b.initializer('a', randTensor(rng, D, [3, 1])); return b.op1('Expand', ['a', b.ints([2, 3, 4])]); },
  }));
});

describe('shape ops', () => {
  const x = (): ReturnType<typeof randTensor> => randTensor(rng, D, [2, 3, 4]);
  const one = (name: string, f: (b: GraphBuilder) => string, dims = [2, 3, 4]): CheckCase => ({
    name, dtype: D, wrt: ['x'], feeds: { x: randTensor(rng, D, dims) },
    build: (b) => { b.input('x', D, dims); return f(b); },
  });
  test('Reshape, Flatten, Squeeze, Unsqueeze', async () => {
    await check(one('reshape', (b) => b.op1('Reshape', ['x', b.ints([4, -1])])));
    await check(one('flatten', (b) => b.op1('Flatten', ['x'], { axis: A.int(2) })));
    await check(one('squeeze', (b) => b.op1('Squeeze', ['x', b.ints([1])]), [2, 1, 4]));
    await check(one('unsqueeze', (b) => b.op1('Unsqueeze', ['x', b.ints([0, 3])])));
  });
  test('Transpose with and without perm', async () => {
    await check(one('transpose', (b) => b.op1('Transpose', ['x'], { perm: A.ints([1, 2, 0]) })));
    await check(one('transpose-rev', (b) => b.op1('Transpose', ['x'])));
  });
  test('Concat of three inputs', () => check({
    name: 'concat', dtype: D, wrt: ['x', 'y'], feeds: { x: x() },
    build: (b) => {
      b.input('x', D, [2, 3, 4]); b.initializer('y', randTensor(rng, D, [2, 2, 4]));
      return b.op1('Concat', ['x', 'y', 'x'], { axis: A.int(1) });
    },
  }));
  test('Split with an unused output', () => check(one('split', (b) => {
    const [p, , r] = b.op('Split', ['x', b.ints([1, 1, 2])], { axis: A.int(2) }, { outputs: 3 }) as [string, string, string];
    return b.op1('Mul', [p, b.op1('ReduceSum', [r, b.ints([2])], { keepdims: A.int(1) })]);
  })));
  test('Slice: unit, strided, reversed, negative indices', async () => {
    await check(one('slice-unit', (b) => b.op1('Slice', ['x', b.ints([1, -3]), b.ints([3, 100]), b.ints([1, 2])])));
    await check(one('slice-step2', (b) => b.op1('Slice', ['x', b.ints([0, 1]), b.ints([3, 4]), b.ints([1, 2]), b.ints([2, 2])])));
    await check(one('slice-reverse', (b) => b.op1('Slice', ['x', b.ints([-1]), b.ints([-100]), b.ints([2]), b.ints([-1])])));
    await check(one('slice-rev-step', (b) => b.op1('Slice', ['x', b.ints([3, 0]), b.ints([0, 2]), b.ints([2, 0]), b.ints([-2, 1])])));
  });
  test('Pad: positive and negative pads, axes input (opset 18)', async () => {
    await check(one('pad', (b) => b.op1('Pad', ['x', b.ints([0, 1, 2, 1, 0, 1])])));
    await check(one('pad-crop', (b) => b.op1('Pad', ['x', b.ints([0, -1, 1, 0, 1, -1])])));
    await check({ ...one('pad-axes', (b) => b.op1('Pad', ['x', b.ints([1, 2]), '', b.ints([2])])), opset: 18 });
  });
});

describe('reductions', () => {
  const one = (name: string, f: (b: GraphBuilder) => string, opset = 17): CheckCase => ({
    name, dtype: D, wrt: ['x'], feeds: { x: randTensor(rng, D, [2, 3, 4]) }, opset,
    build: (b) => { b.input('x', D, [2, 3, 4]); return f(b); },
  });
  test('ReduceSum: axes, keepdims, all axes', async () => {
    await check(one('rsum', (b) => b.op1('ReduceSum', ['x', b.ints([0, -1])], { keepdims: A.int(0) })));
    await check(one('rsum-keep', (b) => b.op1('ReduceSum', ['x', b.ints([1])])));
    await check(one('rsum-all', (b) => b.op1('ReduceSum', ['x'], { keepdims: A.int(0) })));
  });
  test('ReduceSumSquare: attribute axes (17), input axes (18), keepdims, all axes', async () => {
    await check(one('rss', (b) => b.op1('ReduceSumSquare', ['x'], { axes: A.ints([0, -1]), keepdims: A.int(0) })));
    await check(one('rss18-keep', (b) => b.op1('ReduceSumSquare', ['x', b.ints([1])]), 18));
    await check(one('rss-all', (b) => b.op1('ReduceSumSquare', ['x'], { keepdims: A.int(0) })));
  });
  test('ReduceMean: attribute form (17), input form (18), all axes', async () => {
    await check(one('rmean', (b) => b.op1('ReduceMean', ['x'], { axes: A.ints([2]), keepdims: A.int(0) })));
    await check(one('rmean18', (b) => b.op1('ReduceMean', ['x', b.ints([0, 2])], { keepdims: A.int(1) }), 18));
    await check(one('rmean-all', (b) => b.op1('ReduceMean', ['x'], { keepdims: A.int(0) })));
  });
});

describe('MatMul and Gemm', () => {
  const mm: [string, number[], number[]][] = [
    ['2d', [3, 4], [4, 5]],
    ['batched-left', [2, 3, 4], [4, 5]],
    ['broadcast-batch', [2, 1, 3, 4], [5, 4, 2]],
    ['vector-left', [4], [2, 4, 5]],
    ['vector-right', [2, 3, 4], [4]],
    ['vector-both', [4], [4]],
  ];
  test(`MatMul over ${mm.length} shape patterns`, async () => {
    for (const [v, sa, sb] of mm) {
      await check({
        name: `matmul-${v}`, dtype: D, wrt: ['a', 'b'], feeds: {},
        build: (b) => { b.initializer('a', randTensor(rng, D, sa)); b.initializer('b', randTensor(rng, D, sb)); return b.op1('MatMul', ['a', 'b']); },
      });
    }
  });
  test('Gemm: transA x transB, alpha, beta, C shapes', async () => {
    const cShapes = [[5], [1, 5], [3, 1], [3, 5]];
    let k = 0;
    for (const tA of [0, 1]) {
      for (const tB of [0, 1]) {
        const cs = cShapes[k++ % cShapes.length]!;
        await check({
          name: `gemm-${tA}${tB}`, dtype: D, wrt: ['a', 'b', 'c'], feeds: {},
          build: (b) => {
            b.initializer('a', randTensor(rng, D, tA ? [4, 3] : [3, 4]));
            b.initializer('b', randTensor(rng, D, tB ? [5, 4] : [4, 5]));
            b.initializer('c', randTensor(rng, D, cs));
            return b.op1('Gemm', ['a', 'b', 'c'], { transA: A.int(tA), transB: A.int(tB), alpha: A.float(0.5), beta: A.float(2) });
          },
        });
      }
    }
  });
});

describe('BatchNormalization', () => {
  const bn = (name: string, training: boolean, opset = 17): CheckCase => ({
    name, dtype: D, wrt: ['x', 'scale', 'bias'], feeds: { x: randTensor(rng, D, [3, 2, 2, 3], -1, 2) }, opset,
    build: (b) => {
      b.input('x', D, [3, 2, 2, 3]);
      b.initializer('scale', randTensor(rng, D, [2], 0.5, 1.5)); b.initializer('bias', randTensor(rng, D, [2]));
      b.initializer('mean', randTensor(rng, D, [2])); b.initializer('var', randTensor(rng, D, [2], 0.5, 1.5));
      const attrs: Record<string, Attribute> = { epsilon: A.float(1e-3) };
      if (training) {
        attrs['training_mode'] = A.int(1);
        attrs['momentum'] = A.float(0.8);
        return b.op('BatchNormalization', ['x', 'scale', 'bias', 'mean', 'var'], attrs, { outputs: 3 })[0]!;
      }
      return b.op1('BatchNormalization', ['x', 'scale', 'bias', 'mean', 'var'], attrs);
    },
  });
  test('inference mode (running statistics)', () => check(bn('bn-infer', false)));
  test('training mode (batch statistics, lowered), opset 17 and 18', async () => {
    await check(bn('bn-train', true));
    await check(bn('bn-train18', true, 18));
  });
});

describe('Conv (float32, linear: exact differences), every formulation', () => {
  interface ConvCase { name: string; x: number[]; w: number[]; attrs: Record<string, Attribute>; bias?: boolean }
  const cases: ConvCase[] = [
    { name: 'basic-pad1', x: [2, 3, 5, 5], w: [4, 3, 3, 3], attrs: { pads: A.ints([1, 1, 1, 1]) }, bias: true },
    { name: 'stride2-odd', x: [2, 2, 7, 6], w: [3, 2, 3, 3], attrs: { strides: A.ints([2, 2]), pads: A.ints([1, 1, 1, 1]) } },
    { name: 'stride3-asym-pads', x: [1, 2, 8, 7], w: [2, 2, 2, 3], attrs: { strides: A.ints([3, 2]), pads: A.ints([0, 1, 2, 0]) }, bias: true },
    { name: 'dilation2', x: [2, 2, 7, 7], w: [3, 2, 3, 3], attrs: { dilations: A.ints([2, 2]), pads: A.ints([2, 1, 2, 1]) } },
    { name: 'dilation-stride', x: [1, 2, 9, 8], w: [2, 2, 3, 2], attrs: { dilations: A.ints([2, 3]), strides: A.ints([2, 2]) } },
    { name: 'groups2', x: [2, 4, 5, 5], w: [6, 2, 3, 3], attrs: { group: A.int(2), pads: A.ints([1, 1, 1, 1]) }, bias: true },
    { name: 'depthwise-s2', x: [2, 3, 6, 6], w: [3, 1, 3, 3], attrs: { group: A.int(3), strides: A.ints([2, 2]), pads: A.ints([1, 1, 1, 1]) } },
    { name: 'depthwise-mult2', x: [2, 2, 5, 5], w: [4, 1, 3, 3], attrs: { group: A.int(2), pads: A.ints([1, 1, 1, 1]) } },
    { name: 'same-upper-s2', x: [1, 2, 7, 7], w: [2, 2, 3, 3], attrs: { auto_pad: A.str('SAME_UPPER'), strides: A.ints([2, 2]) } },
    { name: 'same-lower', x: [1, 2, 6, 6], w: [2, 2, 4, 4], attrs: { auto_pad: A.str('SAME_LOWER') } },
    { name: 'pointwise-s2', x: [2, 3, 5, 5], w: [4, 3, 1, 1], attrs: { strides: A.ints([2, 2]) } },
    { name: 'conv1d', x: [2, 3, 9], w: [2, 3, 3], attrs: { strides: A.ints([2]), pads: A.ints([1, 0]) }, bias: true },
    // strided with >= 128 output positions: the one-hot form's per-sample MatMul (fewer: one Gemm)
    { name: 'stride2-wide-dilated', x: [2, 8, 25, 23], w: [4, 8, 3, 2], attrs: { strides: A.ints([2, 2]), dilations: A.ints([1, 2]), pads: A.ints([1, 0, 0, 1]) } },
    // Paths of the fast formulations: plain 1x1 (no patches), padded 1x1, depthwise stride 1
    // (Mul + ReduceSum), grouped + dilated, strided 1x1 whose grid overhangs X, pads beyond the
    // kernel (input gradient falls back to ConvTranspose), 3-D.
    { name: 'pointwise', x: [2, 3, 4, 5], w: [5, 3, 1, 1], attrs: {}, bias: true },
    { name: 'pointwise-pad1', x: [2, 3, 4, 4], w: [2, 3, 1, 1], attrs: { pads: A.ints([1, 0, 1, 1]) } },
    { name: 'depthwise-s1', x: [2, 3, 6, 5], w: [3, 1, 3, 3], attrs: { group: A.int(3), pads: A.ints([1, 1, 1, 1]) } },
    { name: 'groups2-dilated-s2', x: [2, 4, 9, 9], w: [4, 2, 3, 3], attrs: { group: A.int(2), dilations: A.ints([2, 2]), strides: A.ints([2, 2]), pads: A.ints([1, 2, 2, 1]) } },
    { name: 'pointwise-s3-overhang', x: [2, 2, 7, 8], w: [3, 2, 1, 1], attrs: { strides: A.ints([3, 3]) } },
    { name: 'pads-beyond-kernel', x: [1, 2, 4, 4], w: [2, 2, 2, 2], attrs: { pads: A.ints([2, 0, 3, 1]) } },
    // strided: pads beyond the taps (the phase form's spans widen) and a phase that no tap reaches
    { name: 'pads-beyond-kernel-s2', x: [1, 2, 8, 8], w: [2, 2, 2, 2], attrs: { strides: A.ints([2, 2]), pads: A.ints([3, 3, 3, 3]) } },
    { name: 'stride2-dilation2-empty-phase', x: [2, 3, 9, 10], w: [2, 3, 3, 3], attrs: { strides: A.ints([2, 2]), dilations: A.ints([2, 2]), pads: A.ints([2, 1, 2, 2]) } },
    { name: 'conv3d-s2', x: [1, 2, 5, 4, 5], w: [2, 2, 2, 3, 2], attrs: { strides: A.ints([2, 1, 2]), pads: A.ints([1, 1, 0, 0, 1, 1]) } },
    { name: 'conv3d-s1-dilated', x: [2, 2, 5, 4, 6], w: [3, 2, 2, 3, 2], attrs: { dilations: A.ints([2, 1, 3]), pads: A.ints([1, 0, 2, 0, 1, 1]) } },
    // Depthwise weight-gradient forms ('rowgemm' row crops and diagonals, 'shifted' shifts/slices):
    // dilation, stride + dilation with uneven pads, an offset that reads only padding, 1-D and 3-D.
    { name: 'depthwise-dilated2', x: [2, 3, 7, 6], w: [3, 1, 3, 3], attrs: { group: A.int(3), dilations: A.ints([2, 2]), pads: A.ints([2, 2, 2, 2]) } },
    { name: 'depthwise-s2-dilated2', x: [2, 3, 9, 8], w: [3, 1, 3, 2], attrs: { group: A.int(3), strides: A.ints([2, 3]), dilations: A.ints([2, 2]), pads: A.ints([2, 0, 1, 2]) } },
    { name: 'depthwise-pad-only-row', x: [2, 2, 2, 5], w: [2, 1, 2, 2], attrs: { group: A.int(2), strides: A.ints([3, 1]), pads: A.ints([1, 0, 0, 1]) } },
    { name: 'depthwise-conv1d-s2', x: [2, 4, 9], w: [4, 1, 3], attrs: { group: A.int(4), strides: A.ints([2]), pads: A.ints([1, 1]) } },
    { name: 'depthwise-s2-odd', x: [2, 3, 9, 8], w: [3, 1, 3, 3], attrs: { group: A.int(3), strides: A.ints([2, 2]), pads: A.ints([1, 0, 0, 1]) } },
    { name: 'depthwise-s3-k5-dilated', x: [1, 2, 13, 11], w: [2, 1, 5, 4], attrs: { group: A.int(2), strides: A.ints([3, 3]), dilations: A.ints([2, 1]), pads: A.ints([2, 1, 3, 0]) } },
    { name: 'depthwise-conv3d', x: [1, 2, 4, 5, 6], w: [2, 1, 2, 3, 2], attrs: { group: A.int(2), strides: A.ints([1, 2, 2]), pads: A.ints([1, 0, 1, 0, 1, 1]) } },
  ];
  const forms: [string, RuleOptions | undefined][] = [
    ['auto', undefined],
    ['legacy', { conv: LEGACY_CONV_GRAD }],
    ['conv+gemm', { conv: { input: 'conv', weight: 'gemm' } }],
    ['conv+onehot', { conv: { input: 'conv', weight: 'onehot' } }],
    ['conv+gemmsplit', { conv: { input: 'conv', weight: 'gemmsplit' } }],
    ['conv+shifted', { conv: { input: 'conv', weight: 'shifted' } }],
    ['conv+shiftmm', { conv: { input: 'conv', weight: 'shiftmm' } }],
    ['conv+shiftmmb', { conv: { input: 'conv', weight: 'shiftmmb' } }],
    ['conv+shiftmmk', { conv: { input: 'conv', weight: 'shiftmmk' } }],
    ['conv+rowgemm', { conv: { input: 'conv', weight: 'rowgemm' } }],
  ];
  for (const c of cases) {
    test(c.name, async () => {
      for (const [form, ruleOptions] of forms) {
        await check({
          name: `conv-${c.name}-${form}`, dtype: F, wrt: c.bias ? ['x', 'w', 'bias'] : ['x', 'w'], feeds: { x: randTensor(rng, F, c.x) },
          eps: 1, rtol: 1e-4, samples: 24, ...(ruleOptions ? { ruleOptions } : {}),
          build: (b) => {
            b.input('x', F, c.x);
            b.initializer('w', randTensor(rng, F, c.w));
            if (c.bias) b.initializer('bias', randTensor(rng, F, [c.w[0]!]));
            return b.op1('Conv', c.bias ? ['x', 'w', 'bias'] : ['x', 'w'], c.attrs);
          },
        });
      }
    });
  }
});

describe('pools', () => {
  const pools: [string, string, number[], Record<string, Attribute>][] = [
    ['max-k2s2', 'MaxPool', [2, 2, 6, 6], { kernel_shape: A.ints([2, 2]), strides: A.ints([2, 2]) }],
    ['max-k3s2p1', 'MaxPool', [2, 2, 7, 7], { kernel_shape: A.ints([3, 3]), strides: A.ints([2, 2]), pads: A.ints([1, 1, 1, 1]) }],
    ['max-overlap', 'MaxPool', [1, 2, 5, 5], { kernel_shape: A.ints([3, 3]) }],
    ['max-dilated', 'MaxPool', [1, 2, 7, 7], { kernel_shape: A.ints([2, 2]), dilations: A.ints([2, 2]) }],
    ['max-ceil', 'MaxPool', [1, 2, 6, 6], { kernel_shape: A.ints([3, 3]), strides: A.ints([2, 2]), ceil_mode: A.int(1) }],
    ['avg-k2s2', 'AveragePool', [2, 2, 6, 6], { kernel_shape: A.ints([2, 2]), strides: A.ints([2, 2]) }],
    ['avg-pad-exclude', 'AveragePool', [2, 2, 7, 7], { kernel_shape: A.ints([3, 3]), strides: A.ints([2, 2]), pads: A.ints([1, 1, 1, 1]) }],
    ['avg-pad-include', 'AveragePool', [1, 2, 7, 7], { kernel_shape: A.ints([3, 3]), strides: A.ints([2, 2]), pads: A.ints([1, 1, 1, 1]), count_include_pad: A.int(1) }],
    ['avg-ceil', 'AveragePool', [1, 2, 6, 6], { kernel_shape: A.ints([3, 3]), strides: A.ints([2, 2]), ceil_mode: A.int(1) }],
    ['avg-overlap-short', 'AveragePool', [1, 1, 7, 6], { kernel_shape: A.ints([3, 2]), strides: A.ints([2, 3]) }],
  ];
  for (const [name, op, dims, attrs] of pools) {
    // MaxPool in float64 (small steps keep the argmax); AveragePool is float32-only but linear.
    const dt = op === 'MaxPool' ? D : F;
    test(name, () => check({
      name: `pool-${name}`, dtype: dt, wrt: ['x'], feeds: { x: randTensor(rng, dt, dims) }, samples: 32,
      ...(dt === F ? { eps: 1, rtol: 1e-4 } : {}),
      build: (b) => { b.input('x', dt, dims); return b.op1(op, ['x'], attrs); },
    }));
  }
  test('GlobalAveragePool', () => check({
    name: 'gap', dtype: F, wrt: ['x'], feeds: { x: randTensor(rng, F, [2, 3, 4, 5]) }, eps: 1, rtol: 1e-4,
    build: (b) => { b.input('x', F, [2, 3, 4, 5]); return b.op1('GlobalAveragePool', ['x']); },
  }));
});

describe('composite', () => {
  test('a value with several consumers accumulates (x*x + exp(x) + x)', () => check({
    name: 'fanout', dtype: D, wrt: ['x'], feeds: { x: randTensor(rng, D, [3, 4]) },
    build: (b) => { b.input('x', D, [3, 4]); return b.op1('Sum', [b.op1('Mul', ['x', 'x']), b.op1('Exp', ['x']), 'x']); },
  }));
  test('softmax cross-entropy head over a Gemm', () => check({
    name: 'ce-gemm', dtype: F, wrt: ['w', 'b'], feeds: { x: randTensor(rng, F, [4, 3]) }, eps: 1e-2, rtol: 2e-2,
    build: (b) => {
      b.input('x', F, [4, 3]);
      b.initializer('w', randTensor(rng, F, [5, 3])); b.initializer('b', randTensor(rng, F, [5]));
      const z = b.op1('Gemm', ['x', 'w', 'b'], { transB: A.int(1) });
      const oh = b.constant(f32([4, 5], [1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0]));
      const lp = b.op1('LogSoftmax', [z], { axis: A.int(1) });
      return b.op1('ReduceMean', [b.op1('ReduceSum', [b.op1('Mul', [lp, oh]), b.ints([1])], { keepdims: A.int(0) })], { axes: A.ints([0]), keepdims: A.int(0) });
    },
  }));
});
