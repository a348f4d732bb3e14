// Small generated models shared by the onnx, runtime and inspect tests.
import { A, GraphBuilder } from '../../sdk/onnx/builder.ts';
import { f32, intRange, makeTensor } from '../../sdk/onnx/tensor.ts';
import type { Model, Tensor } from '../../sdk/onnx/types.ts';

/** Deterministic pseudo-random numbers in [-1, 1). */
export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  };
}

export const randn = (r: () => number, dims: number[], scale = 1): Tensor =>
  f32(dims, Array.from({ length: dims.reduce((a, b) => a * b, 1) }, () => r() * scale));

export function model(b: GraphBuilder, opset = 17, irVersion = 8): Model {
  return {
    irVersion,
    opsetImports: [{ domain: '', version: opset }],
    producerName: 'ttaq-test',
    producerVersion: '0',
    metadata: { purpose: 'test' },
    graph: b.build(),
  };
}

/**
 * A small CNN exercising Conv, BatchNormalization, Relu, Add (residual), MaxPool, AveragePool,
 * GlobalAveragePool, Flatten and Gemm, plus an int8 QDQ pair on the activations.
 */
export function smallCnn(seed = 1): Model {
  const r = rng(seed);
  const b = new GraphBuilder('small_cnn');
  b.input('x', 'float32', [2, 3, 8, 8]);
  const w1 = b.constant(randn(r, [4, 3, 3, 3], 0.5), 'w1');
  const c1 = b.op1('Conv', ['x', w1], { pads: A.ints([1, 1, 1, 1]), kernel_shape: A.ints([3, 3]) });
  const bn = b.op1('BatchNormalization', [
    c1, b.constant(f32([4], [1, 0.5, 2, 1.5]), 'gamma'), b.constant(f32([4], [0.1, -0.2, 0, 0.3]), 'beta'),
    b.constant(f32([4], [0, 0.1, -0.1, 0.2]), 'mean'), b.constant(f32([4], [1, 2, 0.5, 1]), 'var'),
  ], { epsilon: A.float(1e-5) });
  const r1 = b.op1('Relu', [bn]);
  const w2 = b.constant(randn(r, [4, 4, 3, 3], 0.3), 'w2');
  const c2 = b.op1('Conv', [r1, w2, b.constant(randn(r, [4], 0.1), 'b2')], { pads: A.ints([1, 1, 1, 1]) });
  const add = b.op1('Add', [c2, r1]);
  // int8 QDQ on the residual sum
  const s = b.constant(f32([], [0.05]), 'act_scale');
  const zp = b.constant(makeTensor('int8', [], Int8Array.from([3])), 'act_zp');
  const q = b.op1('QuantizeLinear', [add, s, zp]);
  const dq = b.op1('DequantizeLinear', [q, s, zp]);
  const mp = b.op1('MaxPool', [dq], { kernel_shape: A.ints([2, 2]), strides: A.ints([2, 2]) });
  const ap = b.op1('AveragePool', [mp], { kernel_shape: A.ints([2, 2]), strides: A.ints([1, 1]), pads: A.ints([0, 0, 1, 1]) });
  const gap = b.op1('GlobalAveragePool', [ap]);
  const fl = b.op1('Flatten', [gap], { axis: A.int(1) });
  const y = b.op1('Gemm', [fl, b.constant(randn(r, [5, 4]), 'fc_w'), b.constant(randn(r, [5], 0.1), 'fc_b')], { transB: A.int(1) }, { outputNames: ['logits'] });
  b.output(y, 'float32', [2, 5]);
  return model(b, 17, 8);
}

/**
 * Conv whose weights are stored as packed low-bit integers and dequantized per output channel
 * (DequantizeLinear axis 0): int4 at opset 21 / IR 10, int2 at opset 25 / IR 13.
 */
export function lowBitConv(dtype: 'int4' | 'uint4' | 'int2' | 'uint2', seed = 2): { model: Model; weights: Tensor; scale: Float32Array; zp: Tensor } {
  const r = rng(seed);
  const [lo, hi] = intRange[dtype]!;
  const cout = 3, cin = 3, k = 3; // 81 weights: an odd count
  const n = cout * cin * k * k;
  const vals = Array.from({ length: n }, () => lo + Math.floor(((r() + 1) / 2) * (hi - lo + 1)));
  const signed = dtype === 'int4' || dtype === 'int2';
  const weights = makeTensor(dtype, [cout, cin, k, k], (signed ? Int8Array : Uint8Array).from(vals) as Int8Array & Uint8Array) as Tensor;
  const zpVals = signed ? [0, -1, 1] : [1, 2, 0];
  const zp = makeTensor(dtype, [cout], (signed ? Int8Array : Uint8Array).from(zpVals) as Int8Array & Uint8Array) as Tensor;
  const scale = Float32Array.from([0.1, 0.037, 0.25]);
  const b = new GraphBuilder(`conv_${dtype}`);
  b.input('x', 'float32', [1, cin, 5, 5]);
  const w = b.initializer('w_q', weights);
  const s = b.initializer('w_scale', f32([cout], scale));
  const z = b.initializer('w_zp', zp);
  const wd = b.op1('DequantizeLinear', [w, s, z], { axis: A.int(0) }, { outputNames: ['w_deq'] });
  const y = b.op1('Conv', ['x', wd], { pads: A.ints([1, 1, 1, 1]) }, { outputNames: ['y'] });
  b.output(y, 'float32', [1, cout, 5, 5]);
  b.output(wd, 'float32', [cout, cin, k, k]);
  const two = dtype === 'int2' || dtype === 'uint2';
  return { model: model(b, two ? 25 : 21, two ? 13 : 10), weights, scale, zp };
}

/**
 * A ResNet-style model with BN: stem conv(3->8,3x3)+BN+Relu, one basic block (two 3x3 convs with
 * BN, identity shortcut), a downsampling block (stride 2, 1x1 projection with BN), global average
 * pool and a Gemm classifier. Input [1, 3, 16, 16].
 */
export function tinyResNet(seed = 3): Model {
  const r = rng(seed);
  const b = new GraphBuilder('tiny_resnet');
  b.input('input', 'float32', [1, 3, 16, 16]);
  const convBn = (x: string, cin: number, cout: number, k: number, stride: number, relu: boolean): string => {
    const w = b.constant(randn(r, [cout, cin, k, k], 0.3), 'conv_w');
    const p = (k - 1) / 2;
    const c = b.op1('Conv', [x, w], { kernel_shape: A.ints([k, k]), strides: A.ints([stride, stride]), pads: A.ints([p, p, p, p]) });
    const ones = f32([cout], new Array(cout).fill(1));
    const zeros = f32([cout], new Array(cout).fill(0));
    const bn = b.op1('BatchNormalization', [c, b.constant(ones, 'bn_scale'), b.constant(zeros, 'bn_bias'), b.constant(zeros, 'bn_mean'), b.constant(ones, 'bn_var')]);
    return relu ? b.op1('Relu', [bn]) : bn;
  };
  const stem = convBn('input', 3, 8, 3, 1, true);
  const a1 = convBn(stem, 8, 8, 3, 1, true);
  const a2 = convBn(a1, 8, 8, 3, 1, false);
  const s1 = b.op1('Relu', [b.op1('Add', [a2, stem])]);
  const d1 = convBn(s1, 8, 16, 3, 2, true);
  const d2 = convBn(d1, 16, 16, 3, 1, false);
  const proj = convBn(s1, 8, 16, 1, 2, false);
  const s2 = b.op1('Relu', [b.op1('Add', [d2, proj])]);
  const gap = b.op1('GlobalAveragePool', [s2]);
  const fl = b.op1('Flatten', [gap]);
  const y = b.op1('Gemm', [fl, b.constant(randn(r, [10, 16]), 'fc_w'), b.constant(randn(r, [10], 0.1), 'fc_b')], { transB: A.int(1) }, { outputNames: ['logits'] });
  b.output(y, 'float32', [1, 10]);
  return model(b, 17, 8);
}
