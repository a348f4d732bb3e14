import assert from 'node:assert/strict';
import { test } from 'node:test';
import { A, GraphBuilder } from '../../sdk/onnx/builder.ts';
import { f32, makeTensor } from '../../sdk/onnx/tensor.ts';
import type { DType, Model, Tensor } from '../../sdk/onnx/types.ts';
import { createSession } from '../../sdk/runtime/index.ts';
import { widenableActivationZeroPoints, widenSubByteActivations } from '../../sdk/runtime/subbyte.ts';
import { model } from '../onnx/fixtures.ts';

// Regression (issue 6): onnxruntime 1.30 handed a packed 4-bit activation's freed buffer to a
// same-shaped bool mask in an adaptation-step graph and wrote past it (valgrind: "Invalid write of
// size 8 ... after a block of size 128"); sessions now run sub-byte activation QDQ pairs in 8-bit
// containers behind a clamp. These tests pin the rewrite's shape and that it changes no number.
const SCALE = 0.5;

/** x -> QuantizeLinear(dtype, zero point z) -> DequantizeLinear -> Mul by 1 -> y ([1, 1, 4, 8]). */
function qdq(dtype: DType, z: number): Model {
  const b = new GraphBuilder();
  b.input('x', 'float32', [1, 1, 4, 8]);
  const zp = b.constant({ dtype, dims: [], data: (dtype.startsWith('u') ? Uint8Array : Int8Array).of(z) } as Tensor, 'zp');
  const s = b.scalar(SCALE);
  const q = b.op1('QuantizeLinear', ['x', s, zp]);
  const d = b.op1('DequantizeLinear', [q, s, zp]);
  b.output(b.op1('Mul', [d, b.scalar(1)], {}, { outputNames: ['y'] }), 'float32', [1, 1, 4, 8]);
  return model(b, dtype.endsWith('2') ? 25 : 21, 10);
}

const range = (dtype: DType): [number, number] => {
  const bits = dtype.endsWith('4') ? 4 : 2;
  return dtype.startsWith('u') ? [0, 2 ** bits - 1] : [-(2 ** (bits - 1)), 2 ** (bits - 1) - 1];
};

// Spread over [-10, 10) in steps that avoid exact rounding ties, so every case saturates on both sides.
const X = Float32Array.from({ length: 32 }, (_, i) => -10 + i * 0.617);

for (const [dtype, z] of [['uint4', 3], ['int4', -2], ['uint2', 1], ['int2', 0]] as [DType, number][]) {
  test(`${dtype} activation QDQ (zero point ${z}): widened to 8 bits with a clamp, same numbers as the saturating sub-byte cast`, async () => {
    const m = qdq(dtype, z);
    const zps = widenableActivationZeroPoints(m.graph);
    assert.equal(zps.size, 1);
    const w = widenSubByteActivations(m);
    assert.deepEqual(w.graph.nodes.map((n) => n.opType), ['Clip', 'QuantizeLinear', 'DequantizeLinear', 'Mul']);
    const zpName = [...zps][0]!;
    assert.equal(w.graph.initializers.get(zpName)!.dtype, dtype.startsWith('u') ? 'uint8' : 'int8');
    assert.equal(Number(w.graph.initializers.get(zpName)!.data[0]), z);
    const [qmin, qmax] = range(dtype);
    const want = Array.from(X, (x) => (Math.min(qmax, Math.max(qmin, Math.round(x / SCALE) + z)) - z) * SCALE);
    const s = await createSession(m, { providers: ['cpu'], logger: () => {} });
    const got = Array.from((await s.run({ x: f32([1, 1, 4, 8], X) })).y!.data as Float32Array);
    await s.release();
    assert.deepEqual(got, want);
    assert.ok(got.includes((qmin - z) * SCALE) && got.includes((qmax - z) * SCALE), 'the inputs reach both ends of the range');
  });
}

test('a sub-byte zero point shared with weight codes, or a quantized graph output, stays sub-byte', () => {
  const b = new GraphBuilder();
  b.input('x', 'float32', [1, 2, 2, 2]);
  const zp = b.constant(makeTensor('uint4', [], Uint8Array.of(8)), 'zp');
  const s = b.scalar(SCALE);
  const w = b.op1('DequantizeLinear', [b.constant(makeTensor('uint4', [2, 2, 1, 1], Uint8Array.of(1, 9, 15, 0))), s, zp]);
  const d = b.op1('DequantizeLinear', [b.op1('QuantizeLinear', ['x', s, zp]), s, zp]);
  b.output(b.op1('Conv', [d, w], { kernel_shape: A.ints([1, 1]) }, { outputNames: ['y'] }), 'float32');
  assert.equal(widenableActivationZeroPoints(model(b, 21, 10).graph).size, 0);

  const c = new GraphBuilder();
  c.input('x', 'float32', [4]);
  const q = c.op1('QuantizeLinear', ['x', c.scalar(SCALE), c.constant(makeTensor('uint4', [], Uint8Array.of(0)))], {}, { outputNames: ['q'] });
  c.output(q, 'uint4', [4]);
  const m = model(c, 21, 10);
  assert.equal(widenableActivationZeroPoints(m.graph).size, 0);
  assert.equal(widenSubByteActivations(m), m);
});
