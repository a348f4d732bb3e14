import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildAdaptGraphs } from '../../sdk/adapt/index.ts';
import { LEGACY_CONV_GRAD } from '../../sdk/autodiff/index.ts';
import { A, GraphBuilder } from '../../sdk/onnx/builder.ts';
import { f32, makeTensor } from '../../sdk/onnx/tensor.ts';
import type { Model, Tensor } from '../../sdk/onnx/types.ts';
import { createSession } from '../../sdk/runtime/index.ts';
import { randn, rng } from './helpers.ts';

// x [N, 4, 6, 6] -> Conv 3x3 (float weights) -> BN -> Relu -> depthwise Conv 3x3 (int8 weights
// through DequantizeLinear, pads 1) -> BN -> Relu -> Conv 1x1 group 2 -> BN -> GAP -> logits [N, 4]
function convModel(): Model {
  const r = rng(21);
  const b = new GraphBuilder('convs');
  const x = b.input('x', 'float32', ['N', 4, 6, 6]);
  const bn = (v: string, c: number, name: string) => b.op1('BatchNormalization', [v,
    b.initializer(`${name}.s`, f32([c], randn(r, c, 0.1, 1))), b.initializer(`${name}.b`, f32([c], randn(r, c, 0.1))),
    b.initializer(`${name}.m`, f32([c], randn(r, c, 0.1))), b.initializer(`${name}.v`, f32([c], new Float32Array(c).fill(1)))], { epsilon: A.float(1e-5) }, { name });
  const c1 = b.op1('Conv', [x, b.initializer('w1', f32([4, 4, 3, 3], randn(r, 144, 0.3)))], { pads: A.ints([1, 1, 1, 1]), kernel_shape: A.ints([3, 3]) });
  const h1 = b.op1('Relu', [bn(c1, 4, 'bn1')]);
  const wq = makeTensor('int8', [4, 1, 3, 3], Int8Array.from({ length: 36 }, () => Math.round((r() - 0.5) * 100)));
  const w2 = b.op1('DequantizeLinear', [b.initializer('w2q', wq), b.initializer('w2s', f32([4], [0.01, 0.02, 0.015, 0.012])), b.initializer('w2z', makeTensor('int8', [4], new Int8Array(4)) as Tensor)], { axis: A.int(0) });
  const c2 = b.op1('Conv', [h1, w2], { pads: A.ints([1, 0, 1, 2]), group: A.int(4), kernel_shape: A.ints([3, 3]) });
  const h2 = b.op1('Relu', [bn(c2, 4, 'bn2')]);
  const c3 = b.op1('Conv', [h2, b.initializer('w3', f32([4, 2, 1, 1], randn(r, 8, 0.5)))], { group: A.int(2), kernel_shape: A.ints([1, 1]) });
  const gap = b.op1('GlobalAveragePool', [bn(c3, 4, 'bn3')]);
  b.op('Flatten', [gap], { axis: A.int(1) }, { outputNames: ['logits'] });
  b.output('logits', 'float32', ['N', 4]);
  return { irVersion: 8, opsetImports: [{ domain: '', version: 17 }], producerName: 't', producerVersion: '0', metadata: {}, graph: b.build() };
}

describe('Conv input gradients of the step graph', () => {
  it('the adapt-step graph has no stride-1 ConvTranspose and the same gradients as the legacy formulation', async () => {
    const model = convModel();
    const opts = { norm: 'batch' as const, loss: 'entropy' as const, entropyMargin: 0.4, maxWeight: 5, freezeLast: 0 };
    const fast = await buildAdaptGraphs(model, opts);
    const slow = await buildAdaptGraphs(model, { ...opts, convGrad: LEGACY_CONV_GRAD });
    const convT = (m: Model) => m.graph.nodes.filter((n) => n.opType === 'ConvTranspose').length;
    assert.equal(convT(fast.step!.model), 0, 'every conv of this model is stride 1: the Conv rule writes no ConvTranspose');
    assert.ok(convT(slow.step!.model) > 0, 'the legacy formulation does use ConvTranspose (the comparison means something)');
    const feeds: Record<string, Tensor> = { x: f32([3, 4, 6, 6], randn(rng(5), 432, 1, 0.2)) };
    for (const l of fast.stepLayers) {
      feeds[l.inputs.scale] = f32(l.paramDims, l.source.scale);
      feeds[l.inputs.bias] = f32(l.paramDims, l.source.bias);
    }
    const sf = await createSession(fast.step!.model);
    const ss = await createSession(slow.step!.model);
    const of = await sf.run(feeds);
    const os = await ss.run(feeds);
    let maxDiff = 0;
    let maxAbs = 0;
    for (const [, g] of fast.step!.grads) {
      const a = of[g]!.data as Float32Array;
      const b = os[g]!.data as Float32Array;
      for (let i = 0; i < a.length; i++) { maxDiff = Math.max(maxDiff, Math.abs(a[i]! - b[i]!)); maxAbs = Math.max(maxAbs, Math.abs(b[i]!)); }
    }
    assert.ok(maxAbs > 1e-3, 'gradients are not trivially zero');
    assert.ok(maxDiff < 1e-5 * Math.max(1, maxAbs), `gradients differ by ${maxDiff}`);
    await sf.release();
    await ss.release();
  });
});
