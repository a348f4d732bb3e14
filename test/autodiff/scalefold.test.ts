// A BN backward's per-channel scale folded into the Conv before it (rules/Conv.ts): the gradients
// of x, W, B and the BN parameters against central finite differences, for ungrouped, grouped and
// strided convs, and the check that no per-channel map over the activation is left where W is a
// computed value (a constant W keeps the map: see the rule). float32 (no
// double Conv kernel in onnxruntime) with a unit step: the output is linear in each value alone,
// so the differences are exact.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { buildGradientGraph } from '../../sdk/autodiff/index.ts';
import { A, GraphBuilder } from '../../sdk/onnx/builder.ts';
import { Rng } from '../../sdk/nn/rng.ts';
import { makeTensor } from '../../sdk/onnx/tensor.ts';
import { gradCheck, model, randTensor } from './helpers.ts';

const rng = new Rng(4242);
const D = 'float32' as const;

interface Case { readonly name: string; readonly cin: number; readonly cout: number; readonly group: number; readonly stride: number; readonly bias: boolean }

/** x -> Conv -> BN (inference, parameters as initializers) -> output. */
function build(c: Case) {
  return (b: GraphBuilder): string => {
    b.input('x', D, [2, c.cin, 5, 5]);
    b.initializer('w', randTensor(rng, D, [c.cout, c.cin / c.group, 3, 3], -0.5, 0.5));
    if (c.bias) b.initializer('cb', randTensor(rng, D, [c.cout]));
    b.initializer('scale', randTensor(rng, D, [c.cout], 0.5, 1.5));
    b.initializer('bias', randTensor(rng, D, [c.cout]));
    b.initializer('mean', randTensor(rng, D, [c.cout], -0.2, 0.2));
    b.initializer('var', randTensor(rng, D, [c.cout], 0.5, 1.5));
    const z = b.op1('Conv', ['x', 'w', ...(c.bias ? ['cb'] : [])], { pads: A.ints([1, 1, 1, 1]), strides: A.ints([c.stride, c.stride]), group: A.int(c.group) });
    return b.op1('BatchNormalization', [z, 'scale', 'bias', 'mean', 'var'], { epsilon: A.float(1e-3) });
  };
}

const cases: Case[] = [
  { name: 'ungrouped, with bias', cin: 3, cout: 4, group: 1, stride: 1, bias: true },
  { name: 'two groups', cin: 4, cout: 6, group: 2, stride: 1, bias: false },
  { name: 'stride 2 (ConvTranspose input gradient)', cin: 3, cout: 4, group: 1, stride: 2, bias: true },
];

describe('BN scale folded into the Conv before it', () => {
  for (const c of cases) {
    test(`${c.name}: finite differences`, async () => {
      const wrt = ['x', 'w', ...(c.bias ? ['cb'] : []), 'scale', 'bias'];
      const r = await gradCheck({ name: c.name, dtype: D, build: build(c), feeds: { x: randTensor(rng, D, [2, c.cin, 5, 5], -1, 1) }, wrt, samples: 24, eps: 1, rtol: 1e-4 });
      for (const [w, e] of r.errors) assert.ok(e <= r.rtol, `${c.name}: gradient of '${w}' has relative error ${e.toExponential(2)} > ${r.rtol}`);
    });

    test(`${c.name}: no per-channel map over the activation where W is computed; a constant W kept`, async () => {
      const b = new GraphBuilder('fold');
      const y = build(c)(b);
      const loss = b.op1('ReduceSum', [y], { keepdims: A.int(0) }, { outputNames: ['loss'] });
      b.output(loss, D, []);
      for (const computedW of [true, false]) {
        const gg = await buildGradientGraph({ model: model(b), loss, wrt: computedW ? ['x', 'w', 'scale'] : ['x', 'scale'], sampleFeeds: { x: randTensor(rng, D, [2, c.cin, 5, 5]) } });
        const bns = gg.model.graph.nodes.filter((n) => n.opType === 'BatchNormalization');
        const folded = gg.model.graph.nodes.some((n) => /grad_weight_scaled/.test(n.name));
        assert.equal(bns.length, computedW ? 1 : 2, `${c.name} (W computed: ${computedW}): BN nodes ${bns.map((n) => n.name).join(', ')}`);
        assert.equal(folded, computedW, `${c.name}: the scale moves onto the weight only where W is computed`);
      }
    });
  }
});

test('a weight computed from constants only (DequantizeLinear of an int8 initializer) keeps the map over the activation', async () => {
  const b = new GraphBuilder('fold-qdq');
  b.input('x', D, [2, 4, 5, 5]);
  b.initializer('wq', makeTensor('int8', [4, 4, 3, 3], Int8Array.from({ length: 144 }, (_, i) => (i % 15) - 7)));
  b.initializer('ws', makeTensor('float32', [4], Float32Array.of(0.02, 0.03, 0.01, 0.05)));
  for (const [k, lo, hi] of [['scale', 0.5, 1.5], ['bias', -1, 1], ['mean', -0.2, 0.2], ['var', 0.5, 1.5]] as const) b.initializer(k, randTensor(rng, D, [4], lo, hi));
  const w = b.op1('DequantizeLinear', ['wq', 'ws'], { axis: A.int(0) });
  const z = b.op1('Conv', ['x', w], { pads: A.ints([1, 1, 1, 1]) });
  const loss = b.op1('ReduceSum', [b.op1('BatchNormalization', [z, 'scale', 'bias', 'mean', 'var'], { epsilon: A.float(1e-3) })], { keepdims: A.int(0) }, { outputNames: ['loss'] });
  b.output(loss, D, []);
  const gg = await buildGradientGraph({ model: model(b), loss, wrt: ['x', 'scale'], sampleFeeds: { x: randTensor(rng, D, [2, 4, 5, 5]) } });
  assert.ok(!gg.model.graph.nodes.some((n) => /grad_weight_scaled/.test(n.name)), 'no scaled copy of the fixed weight');
  assert.equal(gg.model.graph.nodes.filter((n) => n.opType === 'BatchNormalization').length, 2, 'the forward BN and the backward scale map');
});
