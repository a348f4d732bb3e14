import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeModel, encodeModel } from '../../sdk/onnx/codec.ts';
import { getOpset } from '../../sdk/onnx/versions.ts';
import { makeTensor } from '../../sdk/onnx/tensor.ts';
import type { Model } from '../../sdk/onnx/types.ts';
import { quantize } from '../../sdk/quant/index.ts';
import * as ort from 'onnxruntime-node';
import { buildNet } from '../../sdk/nn/index.ts';
import { clipsBeforeSubByteQuantize, createSession } from '../../sdk/runtime/index.ts';
import { tinyResNet, tinySet } from './fixtures.ts';

async function logits(m: Model, x: Float32Array, dims: readonly number[]): Promise<Float32Array> {
  const s = await createSession(m);
  try {
    const out = await s.run({ input: makeTensor('float32', dims, x) });
    return Float32Array.from(out.logits!.data as Float32Array);
  } finally {
    await s.release();
  }
}

for (const [w, a, opset, wdt] of [[2, 4, 25, 'uint2'], [3, 4, 21, 'uint4'], [4, 4, 21, 'uint4'], [8, 8, 17, 'uint8']] as const) {
  test(`W${w}A${a}: true-width and INT8-container exports give identical outputs; weights stored at width`, async () => {
    const model = tinyResNet();
    const set = tinySet(48);
    const r = await quantize({ model, calib: set, options: { wBits: w, aBits: a, method: 'mse', minCalibImages: 16, reportImages: 16 } });
    assert.equal(getOpset(r.model), Math.max(opset, 17));
    // round trip through ONNX bytes: the sub-byte weights are packed and come back equal
    const back = decodeModel(encodeModel(r.model));
    assert.ok(back.ok);
    const site = r.plan.weights.find((s) => s.node === 'layer1.0.conv1')!;
    const stored = [...back.value.graph.initializers].find(([k]) => k.startsWith(`${site.weight}_quantized`))!;
    assert.equal(stored[1].dtype, wdt);
    const codes = r.values.weights.get(site.node)!.codes;
    assert.deepEqual(Array.from(stored[1].data as ArrayLike<number>), Array.from(codes));
    assert.ok(Math.max(...codes) <= 2 ** w - 1 && Math.min(...codes) >= 0, `codes stay in the ${w}-bit range`);
    const x = set.images.subarray(0, 16 * 64);
    const [tw, i8, fp] = [await logits(back.value, x, [16, 1, 8, 8]), await logits(r.int8Model, x, [16, 1, 8, 8]), await logits(model, x, [16, 1, 8, 8])];
    let maxDiff = 0, err = 0, sig = 0;
    for (let i = 0; i < tw.length; i++) { maxDiff = Math.max(maxDiff, Math.abs(tw[i]! - i8[i]!)); err += (tw[i]! - fp[i]!) ** 2; sig += fp[i]! ** 2; }
    assert.ok(maxDiff <= 1e-5, `true-width vs int8-container max diff ${maxDiff}`);
    // the report compares the two exports on its accuracy images (here the 48 calibration images)
    const v = r.report.variants;
    assert.ok(v && v.images === 48 && v.samePredictions === 48 && v.maxLogitDiff <= 1e-5, `report variants ${JSON.stringify(v)}`);
    assert.ok(err > 0 && err < sig, `quantized logits differ from FP but stay close (err ${err}, signal ${sig})`);
    if (a === 4) {
      assert.ok(r.int8Model.graph.nodes.some((n) => n.opType === 'Clip' && n.name.includes('_clip')), '4-bit activations in uint8 carry a Clip');
      const qdt = [...r.model.graph.initializers].filter(([k]) => k.endsWith('_zero_point') && k.includes('relu')).map(([, t]) => t.dtype);
      assert.ok(qdt.length > 0 && qdt.every((d) => d === 'uint4'), `4-bit activation zero points are uint4 (${qdt.join(',')})`);
    }
  });
}

test('first and last layers and the network input stay at 8 bit; overrides by regex', async () => {
  const model = tinyResNet();
  const r = await quantize({ model, calib: tinySet(32), options: { wBits: 2, aBits: 4, method: 'minmax', minCalibImages: 16, reportImages: 0, overrides: [{ match: 'layer3\\..*conv2', wBits: 8, aBits: 8 }, { match: 'layer2.0.shortcut.conv', skip: true }] } });
  const bits = Object.fromEntries(r.plan.weights.map((w) => [w.node, w.spec.bits]));
  assert.equal(bits['stem.conv'], 8);
  assert.equal(bits['fc'], 8);
  assert.equal(bits['layer1.0.conv1'], 2);
  assert.equal(bits['layer3.0.conv2'], 8);
  assert.equal(bits['layer2.0.shortcut.conv'], undefined);
  const input = r.plan.acts.find((a) => a.value === 'input')!;
  assert.equal(input.spec.bits, 8);
  assert.equal(input.spec.symmetric, false, 'the normalised input is signed: asymmetric with a zero point');
  const relu = r.plan.acts.find((a) => a.value === 'stem.relu.out')!;
  assert.deepEqual([relu.spec.bits, relu.spec.signed, relu.spec.symmetric], [4, false, true]);
  assert.deepEqual(r.manifest.layers.find((l) => l.node === 'fc'), { node: 'fc', weightBits: 8, activationBits: 8 });
  assert.ok(r.report.size.quantizedBytes < r.report.size.fp32Bytes, `size ${r.report.size.quantizedBytes} vs ${r.report.size.fp32Bytes}`);
  // 2-bit layers: 4 weights (and 4 zero points) per byte
  const two = r.plan.weights.filter((w) => w.spec.bits === 2);
  const expect = two.reduce((s, w) => s + Math.ceil(w.dims.reduce((x, y) => x * y, 1) / 4) + Math.ceil(w.dims[0]! / 4), 0);
  assert.equal(r.report.size.weightsByDType.uint2, expect);
});

test('a ReLU6 (Clip) model at W4A4: the true-width file loads in a plain onnxruntime (no Clip feeds a UINT4 QuantizeLinear)', async () => {
  const model = buildNet({ arch: 'mobilenet', mobilenet: { stemChannels: 4, stages: [{ t: 2, c: 8, n: 1, s: 2 }], lastChannels: 16 }, height: 8, width: 8, seed: 3 }, 'infer').model;
  assert.ok(model.graph.nodes.some((n) => n.opType === 'Clip'), 'the fixture has ReLU6 Clips');
  const r = await quantize({ model, calib: tinySet(32), options: { wBits: 4, aBits: 4, method: 'minmax', minCalibImages: 16, reportImages: 0, variantImages: 10 } });
  assert.equal(r.report.accuracy?.images, 32);
  assert.equal(r.report.variants?.images, 10, 'the export variants are compared on the first variantImages images only');
  assert.equal(clipsBeforeSubByteQuantize(r.model.graph).size, 0);
  assert.ok(r.model.graph.nodes.some((n) => n.opType === 'Min'), 'the ReLU6 became Max+Min');
  // straight onnxruntime-node, none of sdk/runtime's load-time rewrites
  const s = await ort.InferenceSession.create(encodeModel(r.model), { logSeverityLevel: 4 });
  const x = tinySet(4).images;
  const out = await s.run({ input: new ort.Tensor('float32', x, [4, 1, 8, 8]) });
  const ours = await logits(r.model, x, [4, 1, 8, 8]);
  const theirs = out['logits']!.data as Float32Array;
  for (let i = 0; i < ours.length; i++) assert.ok(Math.abs(ours[i]! - theirs[i]!) <= 1e-5, `logit ${i}`);
  await s.release();
});
