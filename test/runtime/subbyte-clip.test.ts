import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GraphBuilder } from '../../sdk/onnx/builder.ts';
import { encodeModel } from '../../sdk/onnx/codec.ts';
import { f32, makeTensor } from '../../sdk/onnx/tensor.ts';
import type { Model } from '../../sdk/onnx/types.ts';
import { createSession } from '../../sdk/runtime/index.ts';
import { clipsBeforeSubByteQuantize, splitClipsBeforeSubByteQuantize } from '../../sdk/runtime/subbyte.ts';
import { model } from '../onnx/fixtures.ts';

// Regression (issue 5): Conv -> Clip(0, 6) -> QuantizeLinear(uint4) -> DequantizeLinear -> Conv made
// onnxruntime's ClipQuantFusion throw "Unexpected data type for QuantizeLinear input y_zero_point of 21".
const W1 = [1.5, -0.5, 2, 1, -1, 0.25]; // [3, 2, 1, 1]
const W2 = [0.5, -1, 0.75, 1, 0.5, -0.25]; // [2, 3, 1, 1]
const SCALE = 0.5; // uint4 range [0, 7.5] is wider than the Clip's [0, 6], so the Clip matters

function convClipConv(): Model {
  const b = new GraphBuilder();
  b.input('x', 'float32', [1, 2, 4, 4]);
  const h = b.op1('Conv', ['x', b.constant(f32([3, 2, 1, 1], W1))]);
  const c = b.op1('Clip', [h, b.scalar(0), b.scalar(6)]);
  const q = b.op1('QuantizeLinear', [c, b.scalar(SCALE), b.constant(makeTensor('uint4', [], Uint8Array.of(0)))]);
  const d = b.op1('DequantizeLinear', [q, b.scalar(SCALE), b.constant(makeTensor('uint4', [], Uint8Array.of(0)))]);
  const y = b.op1('Conv', [d, b.constant(f32([2, 3, 1, 1], W2))], {}, { outputNames: ['y'] });
  b.output(y, 'float32', [1, 2, 4, 4]);
  return model(b, 21, 10);
}

function reference(x: Float32Array): Float32Array {
  const y = new Float32Array(2 * 16);
  for (let p = 0; p < 16; p++) {
    const dq = [0, 1, 2].map((o) => {
      const h = W1[o * 2]! * x[p]! + W1[o * 2 + 1]! * x[16 + p]!;
      return Math.min(15, Math.max(0, Math.round(Math.min(6, Math.max(0, h)) / SCALE))) * SCALE;
    });
    for (let o = 0; o < 2; o++) y[o * 16 + p] = dq.reduce((s, v, i) => s + W2[o * 3 + i]! * v, 0);
  }
  return y;
}

test('Clip before a uint4 QuantizeLinear: the session loads (IR and bytes) and matches a JS reference', async () => {
  const m = convClipConv();
  assert.equal(clipsBeforeSubByteQuantize(m.graph).size, 1);
  const split = splitClipsBeforeSubByteQuantize(m);
  assert.deepEqual(split.graph.nodes.map((n) => n.opType), ['Conv', 'Max', 'Min', 'QuantizeLinear', 'DequantizeLinear', 'Conv']);
  // inputs spread over [-4, 12) after Conv1, avoiding exact rounding ties
  const x = Float32Array.from({ length: 32 }, (_, i) => ((i * 37) % 29) * 0.29 - 2.1);
  const want = reference(x);
  assert.ok(want.some((v, i) => Math.abs(v) > 1e-3 && i >= 0));
  for (const input of [m, encodeModel(m)]) {
    const s = await createSession(input, { providers: ['cpu'], logger: () => {} });
    const got = (await s.run({ x: f32([1, 2, 4, 4], x) })).y!.data as Float32Array;
    for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got[i]! - want[i]!) < 1e-4, `y[${i}] = ${got[i]}, want ${want[i]}`);
    await s.release();
  }
});
