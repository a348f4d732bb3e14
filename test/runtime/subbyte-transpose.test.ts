import assert from 'node:assert/strict';
import { test } from 'node:test';
import { A, GraphBuilder } from '../../sdk/onnx/builder.ts';
import { encodeModel } from '../../sdk/onnx/codec.ts';
import { f32, makeTensor } from '../../sdk/onnx/tensor.ts';
import type { Model, Tensor } from '../../sdk/onnx/types.ts';
import { createSession } from '../../sdk/runtime/index.ts';
import { twoBitDequantizesBeforeTranspose, widenTwoBitWeightsBeforeTranspose } from '../../sdk/runtime/subbyte.ts';
import { model } from '../onnx/fixtures.ts';

// Regression (issue 5): onnxruntime 1.30's constant folding fails with "Element type mismatch
// between tensor proto and ortvalue_initializer" on a Transpose of a 2-bit weight over 127 packed
// bytes, which its transpose optimizer makes out of Transpose(DequantizeLinear(2-bit weight)), the
// autodiff's flipped-weight Conv input gradient. 16x16x3x3 2-bit values are 576 bytes.
const [O, I, K] = [16, 16, 3];
const N = O * I * K * K;
const SCALES = Array.from({ length: O }, (_, o) => 0.1 + 0.02 * o);

function net(dt: 'uint2' | 'int2'): { m: Model; q: number[]; zp: number[] } {
  const lo = dt === 'int2' ? -2 : 0;
  const q = Array.from({ length: N }, (_, i) => lo + ((i * 7 + (i >> 5)) % 4));
  const zp = Array.from({ length: O }, (_, o) => lo + 1 + (o % 2));
  const t = (dims: number[], v: number[]): Tensor => (dt === 'int2' ? makeTensor('int2', dims, Int8Array.from(v)) : makeTensor('uint2', dims, Uint8Array.from(v)));
  const b = new GraphBuilder('t');
  const x = b.input('x', 'float32', [I, O, K, K]);
  const img = b.input('img', 'float32', [1, I, 4, 4]);
  const w = b.initializer('w', t([O, I, K, K], q));
  const zpName = b.initializer('w_zp', t([O], zp));
  const scale = b.initializer('w_scale', f32([O], SCALES));
  const dq = b.op1('DequantizeLinear', [w, scale, zpName], { axis: A.int(0) }, { name: 'dq_t' });
  b.op('Add', [x, b.op1('Transpose', [dq], { perm: A.ints([1, 0, 2, 3]) })], {}, { outputNames: ['wt'] });
  // A second reader of the same 2-bit weight that needs no rewrite.
  const dq2 = b.op1('DequantizeLinear', [w, scale, zpName], { axis: A.int(0) }, { name: 'dq_conv' });
  b.op('Conv', [img, dq2], { pads: A.ints([1, 1, 1, 1]) }, { outputNames: ['y'] });
  b.output('wt', 'float32', [I, O, K, K]);
  b.output('y', 'float32', [1, O, 4, 4]);
  return { m: model(b, 25, 11), q, zp };
}

for (const dt of ['uint2', 'int2'] as const) {
  test(`Transpose of a dequantized ${dt} weight: the session loads (IR and bytes) and computes the transposed weight`, async () => {
    const { m, q, zp } = net(dt);
    assert.deepEqual([...twoBitDequantizesBeforeTranspose(m.graph)], ['dq_t']);
    const w = widenTwoBitWeightsBeforeTranspose(m);
    const dqT = w.graph.nodes.find((n) => n.name === 'dq_t')!;
    assert.deepEqual(dqT.inputs.map((n) => w.graph.initializers.get(n)!.dtype), [dt === 'int2' ? 'int8' : 'uint8', 'float32', dt === 'int2' ? 'int8' : 'uint8']);
    assert.deepEqual(w.graph.nodes.find((n) => n.name === 'dq_conv')!.inputs, ['w', 'w_scale', 'w_zp'], 'the other reader keeps the 2-bit weight');
    assert.equal(w.graph.initializers.get('w')!.dtype, dt);

    const want = new Float32Array(N);
    for (let o = 0; o < O; o++) for (let i = 0; i < I; i++) for (let k = 0; k < K * K; k++) {
      want[(i * O + o) * K * K + k] = (q[(o * I + i) * K * K + k]! - zp[o]!) * SCALES[o]!;
    }
    const xs = Float32Array.from({ length: N }, (_, i) => (i % 5) * 0.25);
    for (const input of [m, encodeModel(m)]) {
      // (bytes: the first load fails as described and is retried through the IR rewrite; level 4
      // keeps onnxruntime from logging that first failure)
      const s = await createSession(input, { providers: ['cpu'], logger: () => {}, ortLogLevel: 4 });
      const out = await s.run({ x: f32([I, O, K, K], xs), img: f32([1, I, 4, 4], new Float32Array(I * 16).fill(1)) });
      const got = out.wt!.data as Float32Array;
      let worst = 0;
      for (let j = 0; j < N; j++) worst = Math.max(worst, Math.abs(got[j]! - xs[j]! - want[j]!));
      assert.ok(worst < 1e-6, `transposed weight differs by ${worst}`);
      // Conv over a ones image: the centre pixel's output channel o is the sum of its dequantized weights.
      const y = out.y!.data as Float32Array;
      for (const o of [0, 7, 15]) {
        let sum = 0;
        for (let j = 0; j < I * K * K; j++) sum += (q[o * I * K * K + j]! - zp[o]!) * SCALES[o]!;
        assert.ok(Math.abs(y[o * 16 + 5]! - sum) < 1e-4, `conv channel ${o}: ${y[o * 16 + 5]} vs ${sum}`);
      }
      await s.release();
    }
  });
}

test('4-bit weights and small 2-bit graphs without a Transpose are left alone', () => {
  const { m } = net('uint2');
  const noT: Model = { ...m, graph: { ...m.graph, nodes: m.graph.nodes.filter((n) => n.name !== 'dq_t' && n.opType !== 'Transpose' && n.opType !== 'Add'), outputs: m.graph.outputs.filter((v) => v.name === 'y') } };
  assert.equal(twoBitDequantizesBeforeTranspose(noT.graph).size, 0);
  assert.equal(widenTwoBitWeightsBeforeTranspose(noT), noT);
  const as4 = (name: string): Tensor => {
    const x = m.graph.initializers.get(name)!;
    return makeTensor('uint4', x.dims, x.data as Uint8Array);
  };
  const four: Model = { ...m, graph: { ...m.graph, initializers: new Map([...m.graph.initializers, ['w', as4('w')], ['w_zp', as4('w_zp')]]) } };
  assert.equal(twoBitDequantizesBeforeTranspose(four.graph).size, 0);
});
