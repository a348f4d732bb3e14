import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildAdaptGraphs } from '../../sdk/adapt/graphs.ts';
import { f32 } from '../../sdk/onnx/tensor.ts';
import type { Tensor } from '../../sdk/onnx/types.ts';
import { createSession } from '../../sdk/runtime/index.ts';
import { tinyResNet, tinySet } from '../quant/fixtures.ts';
import { maxAbsDiff } from './fixtures.ts';

// Batch-statistics BN in the adaptation graphs is lowered to batch moments feeding a BatchNormalization
// op whose closed-form backward replaces the op-by-op chain's (sdk/adapt/bn.ts). Both forms must give
// the same step: logits, loss and every BN gradient, on a residual net where gradients meet.
test('batch-norm adaptation step: the fused lowering equals the op-by-op form', async () => {
  const model = tinyResNet(3);
  const base = { norm: 'batch' as const, loss: 'entropy' as const, entropyMargin: 0.4, maxWeight: 10, freezeLast: 0 };
  const fused = await buildAdaptGraphs(model, base);
  const prim = await buildAdaptGraphs(model, { ...base, batchLowering: 'primitive' });
  // The fused form takes [C] parameters and has fewer nodes; the op-by-op form [1, C, 1, 1].
  assert.deepEqual(fused.stepLayers[0]!.paramDims, [fused.stepLayers[0]!.channels]);
  assert.equal(prim.stepLayers[0]!.paramDims.length, 4);
  assert.ok(fused.step!.model.graph.nodes.length < prim.step!.model.graph.nodes.length);
  assert.ok(fused.step!.model.graph.nodes.some((n) => n.opType === 'BatchNormalization'));
  assert.ok(!prim.step!.model.graph.nodes.some((n) => n.opType === 'BatchNormalization'));

  const set = tinySet(12, 5);
  const run = async (g: typeof fused) => {
    const s = await createSession(g.step!.model, { providers: ['cpu'], logger: () => {} });
    const feeds: Record<string, Tensor> = { [g.input]: f32(set.dims, set.images) };
    // Perturbed parameters, so the gradients are not those of the source point only.
    g.stepLayers.forEach((l, i) => {
      feeds[l.inputs.scale] = f32(l.paramDims, l.source.scale.map((v, c) => v * (1 + 0.1 * Math.sin(i + c))));
      feeds[l.inputs.bias] = f32(l.paramDims, l.source.bias.map((v, c) => v + 0.05 * Math.cos(i * 3 + c)));
    });
    const out = await s.run(feeds);
    await s.release();
    return out;
  };
  const a = await run(fused);
  const b = await run(prim);
  assert.ok(maxAbsDiff(a[fused.logits]!.data as Float32Array, b[prim.logits]!.data as Float32Array) < 1e-4);
  for (const l of fused.adapted) {
    for (const p of [l.inputs.scale, l.inputs.bias]) {
      const ga = a[fused.step!.grads.get(p)!]!.data as Float32Array;
      const gb = b[prim.step!.grads.get(p)!]!.data as Float32Array;
      const scale = Math.max(1e-3, ...Array.from(gb, Math.abs));
      assert.ok(maxAbsDiff(ga, gb) < 1e-3 * scale, `${p}: gradients differ by ${maxAbsDiff(ga, gb)} (largest ${scale})`);
      assert.ok(gb.some((v) => Math.abs(v) > 1e-6), `${p}: a gradient that is all zero proves nothing`);
    }
  }
});
