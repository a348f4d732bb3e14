// Regression (issue 5): the adapt-step graph of a true-width 2-bit QDQ model (uint2 weights, opset
// 25) failed to load in onnxruntime 1.30 ("Element type mismatch between tensor proto and
// ortvalue_initializer"): the autodiff's flipped-weight Conv input gradient puts a Transpose after
// the 2-bit weights' DequantizeLinear, and onnxruntime cannot constant-fold a Transpose of a 2-bit
// initializer over 127 packed bytes. sdk/runtime stores those weights in 8-bit containers.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { Adapter } from '../../sdk/adapt/index.ts';
import { f32 } from '../../sdk/onnx/tensor.ts';
import { quantize } from '../../sdk/quant/index.ts';
import { tinyResNet, tinySet } from '../quant/fixtures.ts';
import { maxAbsDiff } from './fixtures.ts';

const open: Adapter[] = [];
after(async () => { for (const a of open) await a.close(); });

test('TENT on a true-width W2A4 model: loads, steps, and matches the INT8-container export', async () => {
  const q = await quantize({
    model: tinyResNet(),
    calib: tinySet(32),
    options: { wBits: 2, aBits: 4, method: 'minmax', minCalibImages: 16, actImages: 16, reportImages: 0, batch: 8 },
  });
  // The failure needs a 2-bit weight of more than 127 packed bytes (512 values).
  const big = [...q.model.graph.initializers.values()].filter((t) => (t.dtype === 'uint2' || t.dtype === 'int2') && t.data.length > 4 * 127);
  assert.ok(big.length > 0, 'the quantized model has a large 2-bit weight');
  assert.ok(![...q.int8Model.graph.initializers.values()].some((t) => t.dtype === 'uint2' || t.dtype === 'int2'));

  const make = async (model: typeof q.model) => {
    const a = await Adapter.create({ model, method: 'tent', options: { lr: 1e-2, collapseEntropy: 0, updateEvery: 0 }, session: { providers: ['cpu'] } });
    open.push(a);
    return a;
  };
  const trueWidth = await make(q.model);
  const int8 = await make(q.int8Model);
  const set = tinySet(16, 7);
  const x = f32(set.dims, set.images);
  const a = await trueWidth.step(x);
  const b = await int8.step(x);
  assert.ok(a.adapted && b.adapted);
  assert.ok(maxAbsDiff(a.logits.data, b.logits.data) < 1e-5, `step logits differ by ${maxAbsDiff(a.logits.data, b.logits.data)}`);
  assert.ok(Math.abs(a.loss - b.loss) < 1e-5, `loss ${a.loss} vs ${b.loss}`);
  assert.deepEqual(Array.from(a.predictions), Array.from(b.predictions));
  // The updates agree too: the next forward pass gives the same logits, and they moved.
  const a2 = await trueWidth.infer(x);
  const b2 = await int8.infer(x);
  assert.ok(maxAbsDiff(a2.logits.data, b2.logits.data) < 1e-5, `logits after the update differ by ${maxAbsDiff(a2.logits.data, b2.logits.data)}`);
  assert.ok(maxAbsDiff(a2.logits.data, a.logits.data) > 1e-4, 'the step changed the model');
});
