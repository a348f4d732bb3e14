import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildAdaptGraphs } from '../../sdk/adapt/graphs.ts';
import { f32 } from '../../sdk/onnx/tensor.ts';
import type { Model, Tensor } from '../../sdk/onnx/types.ts';
import { batchNormForSession } from '../../sdk/autodiff/index.ts';
import { createSession, runsBatchNormTraining } from '../../sdk/runtime/index.ts';
import { tinyResNet, tinySet } from '../quant/fixtures.ts';
import { maxAbsDiff } from './fixtures.ts';

type Graphs = Awaited<ReturnType<typeof buildAdaptGraphs>>;
const set = tinySet(12, 5);

/** The images and perturbed BN parameters, so the gradients are not those of the source point only. */
function stepFeeds(g: Graphs): Record<string, Tensor> {
  const feeds: Record<string, Tensor> = { [g.input]: f32(set.dims, set.images) };
  g.stepLayers.forEach((l, i) => {
    feeds[l.inputs.scale] = f32(l.paramDims, l.source.scale.map((v, c) => v * (1 + 0.1 * Math.sin(i + c))));
    feeds[l.inputs.bias] = f32(l.paramDims, l.source.bias.map((v, c) => v + 0.05 * Math.cos(i * 3 + c)));
  });
  return feeds;
}

/** One CPU run of `m` on the feeds it takes. */
async function runGraph(m: Model, feeds: Record<string, Tensor>): Promise<Record<string, Tensor>> {
  const s = await createSession(m, { providers: ['cpu'], logger: () => {} });
  const names = new Set(s.inputNames);
  try { return await s.run(Object.fromEntries(Object.entries(feeds).filter(([k]) => names.has(k)))); } finally { await s.release(); }
}

/** Same logits and, for every adapted BN parameter, the same (non-zero) gradient. */
function assertSameStep(ga: Graphs, a: Record<string, Tensor>, gb: Graphs, b: Record<string, Tensor>): void {
  assert.ok(maxAbsDiff(a[ga.logits]!.data as Float32Array, b[gb.logits]!.data as Float32Array) < 1e-4);
  for (const l of ga.adapted) {
    for (const p of [l.inputs.scale, l.inputs.bias]) {
      const x = a[ga.step!.grads.get(p)!]!.data as Float32Array;
      const y = b[gb.step!.grads.get(p)!]!.data as Float32Array;
      const scale = Math.max(1e-3, ...Array.from(y, Math.abs));
      assert.ok(maxAbsDiff(x, y) < 1e-3 * scale, `${p}: gradients differ by ${maxAbsDiff(x, y)} (largest ${scale})`);
      assert.ok(y.some((v) => Math.abs(v) > 1e-6), `${p}: a gradient that is all zero proves nothing`);
    }
  }
}

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

  const [a, b] = [await runGraph(fused.step!.model, stepFeeds(fused)), await runGraph(prim.step!.model, stepFeeds(prim))];
  assertSameStep(fused, a, prim, b);
});

// Providers without training-mode BatchNormalization (onnxruntime's WebGPU provider takes the node
// and fails at run time) get the batch statistics from reductions: the same step, and in neither
// graph a training-mode BatchNormalization node.
test('batch-norm adaptation graphs without the training-mode op give the same step', async () => {
  const model = tinyResNet(3);
  const base = { norm: 'batch' as const, loss: 'entropy' as const, entropyMargin: 0.4, maxWeight: 10, freezeLast: 0 };
  const withOp = await buildAdaptGraphs(model, base);
  const without = await buildAdaptGraphs(model, { ...base, statsLowering: 'fused' });
  const trainingBn = (m: Model) => m.graph.nodes.filter((n) => n.opType === 'BatchNormalization' && n.attrs['training_mode']?.kind === 'int' && n.attrs['training_mode'].value === 1).length;
  assert.ok(trainingBn(withOp.step!.model) > 0 && trainingBn(withOp.inference) > 0, 'the default form uses the training-mode op');
  assert.equal(trainingBn(without.step!.model), 0);
  assert.equal(trainingBn(without.inference), 0);

  const [a, b] = [await runGraph(withOp.step!.model, stepFeeds(withOp)), await runGraph(without.step!.model, stepFeeds(without))];
  assertSameStep(withOp, a, without, b);
  const [ia, ib] = [await runGraph(withOp.inference, stepFeeds(withOp)), await runGraph(without.inference, stepFeeds(without))];
  assert.ok(maxAbsDiff(ia[withOp.logits]!.data as Float32Array, ib[without.logits]!.data as Float32Array) < 1e-4);
});

test('which provider chains may run training-mode BatchNormalization', () => {
  assert.equal(runsBatchNormTraining(['tensorrt', 'cuda', 'cpu'], ['cpu']), true);
  assert.equal(runsBatchNormTraining(['tensorrt', 'cuda', 'cpu'], ['cpu', 'cuda', 'tensorrt']), true);
  // WebGPU in the binary and in the chain: any graph may land there
  assert.equal(runsBatchNormTraining(['webgpu', 'cpu'], ['cpu', 'webgpu']), false);
  assert.equal(runsBatchNormTraining(['cpu', 'webgpu'], ['cpu', 'webgpu']), false);
  // asked for but not in the binary: the CPU runs it
  assert.equal(runsBatchNormTraining(['webgpu', 'cpu'], ['cpu']), true);
  assert.equal(runsBatchNormTraining(['dml', 'cpu'], ['cpu', 'dml']), false, 'unknown providers count as unable');
  assert.deepEqual(batchNormForSession({ providers: ['webgpu', 'cpu'], availableProviders: () => ['cpu', 'webgpu'] }), { stats: 'model', lowering: 'fused' });
  assert.deepEqual(batchNormForSession({ providers: ['cpu'] }), { stats: 'model', lowering: 'op' });
});
