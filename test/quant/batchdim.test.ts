// Models exported with a fixed batch size: the batch dimension is freed (constant Reshape shapes
// included, from initializers or Constant nodes) when the freed graph gives every image the outputs
// the original gives it, and a model that mixes images is refused with the way out; a model that
// is already symbolic comes back untouched; the quantizer reconstructs a batch-1 export whose
// Reshape says 1, and the result gives each image the same logits at batch 3 as alone. A batch
// that stays fixed calibrates (--method mse / minmax) on any image count: a last partial batch is
// padded and only its real images count, so the statistics, the report and the accuracy are those
// of the symbolic model on the same images; a model that mixes the images of its batch is refused
// a partial batch instead, naming the batch size and the count that is whole batches.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isTtaqError } from '../../sdk/errors/index.ts';
import { A, GraphBuilder } from '../../sdk/onnx/builder.ts';
import { loadModel } from '../../sdk/onnx/io.ts';
import { i64, makeTensor } from '../../sdk/onnx/tensor.ts';
import type { Model, Node, ValueInfo } from '../../sdk/onnx/types.ts';
import { candidateErrorsOrt, collectStats, freeBatch, independentRows, makePlan, quantize, sampleValues, withSymbolicBatch } from '../../sdk/quant/index.ts';
import { allLogits } from '../../sdk/quant/report.ts';
import { createSession } from '../../sdk/runtime/index.ts';
import { model } from '../autodiff/helpers.ts';
import { tinyResNet, tinySet } from './fixtures.ts';

const w = makeTensor('float32', [4, 3], Float32Array.from({ length: 12 }, (_, i) => Math.sin(i + 1)));

/**
 * x [batch, 4] -> Reshape(batch, 2, 2) -> Reshape(batch, -1) -> MatMul -> [batch, 3]; with
 * `constant`, the second shape comes from a Constant node (as older torch.onnx exports write it).
 */
function viewNet(batch: number, constant = false): Model {
  const b = new GraphBuilder('views');
  b.input('x', 'float32', [batch, 4]);
  b.initializer('w', w);
  const r1 = b.op1('Reshape', ['x', b.ints([batch, 2, 2])]);
  const shape = constant ? b.op1('Constant', [], { value: A.tensor(i64([2], [batch, -1])) }, { name: 'view_shape' }) : b.ints([batch, -1]);
  const r2 = b.op1('Reshape', [r1, shape]);
  b.op1('MatMul', [r2, 'w'], {}, { outputNames: ['y'] });
  b.output('y', 'float32', [batch, 3]);
  return model(b);
}

/** Two images of [2, 4] become one row of 8: the graph mixes the images of its batch. */
function mixingNet(): Model {
  const b = new GraphBuilder('mixing');
  b.input('x', 'float32', [2, 4]);
  b.initializer('w8', makeTensor('float32', [8, 3], Float32Array.from({ length: 24 }, (_, i) => Math.cos(i))));
  b.op1('MatMul', [b.op1('Reshape', ['x', b.ints([1, 8])]), 'w8'], {}, { outputNames: ['y'] });
  b.output('y', 'float32', [1, 3]);
  return model(b);
}

/** Each image minus the batch's mean image: runs at any batch size, but an image's output depends on the others. */
function centringNet(): Model {
  const b = new GraphBuilder('centring');
  b.input('x', 'float32', [2, 4]);
  b.initializer('w', w);
  const mean = b.op1('ReduceMean', ['x'], { axes: A.ints([0]), keepdims: A.int(1) });
  b.op1('MatMul', [b.op1('Sub', ['x', mean]), 'w'], {}, { outputNames: ['y'] });
  b.output('y', 'float32', [2, 3]);
  return model(b);
}

const batchDim = (v: readonly ValueInfo[]) => v[0]!.shape![0];

/** Outputs of `m` on `x` ([n, ...dims]) run all at once and one image at a time. */
async function atOnceAndAlone(m: Model, x: Float32Array, n: number, dims: readonly number[]): Promise<{ once: Float32Array; alone: Float32Array; dims: readonly number[] }> {
  const input = m.graph.inputs[0]!.name;
  const per = x.length / n;
  const s = await createSession(m);
  try {
    const y = Object.values(await s.run({ [input]: makeTensor('float32', [n, ...dims], x) }))[0]!;
    const alone: number[] = [];
    for (let i = 0; i < n; i++) alone.push(...(Object.values(await s.run({ [input]: makeTensor('float32', [1, ...dims], x.slice(i * per, (i + 1) * per)) }))[0]!.data as Float32Array));
    return { once: y.data as Float32Array, alone: Float32Array.from(alone), dims: y.dims };
  } finally {
    await s.release();
  }
}

test('a fixed batch is freed, its Reshapes\' leading constants included, and the model runs any batch', async () => {
  const r = await freeBatch(viewNet(1));
  assert.equal(r.kind, 'freed');
  if (r.kind !== 'freed') return;
  assert.equal(r.reshapes.length, 2);
  assert.equal(typeof batchDim(r.model.graph.inputs), 'string');
  assert.equal(typeof batchDim(r.model.graph.outputs), 'string');
  const x = Float32Array.from({ length: 12 }, (_, i) => i / 10);
  const y = await atOnceAndAlone(r.model, x, 3, [4]);
  assert.deepEqual(y.dims, [3, 3]);
  // each row is its image times w
  for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) {
    let e = 0;
    for (let k = 0; k < 4; k++) e += x[i * 4 + k]! * (w.data as Float32Array)[k * 3 + j]!;
    assert.ok(Math.abs(y.once[i * 3 + j]! - e) < 1e-5);
  }
  // a batch of 8 too (its Reshapes say 8)
  assert.equal((await freeBatch(viewNet(8))).kind, 'freed');
  // freed once, it is symbolic: the same object back
  const again = await freeBatch(r.model);
  assert.equal(again.kind, 'symbolic');
  assert.equal(again.kind === 'symbolic' && again.model, r.model);
});

test('a Reshape shape from a Constant node is freed, and the Constant left unread is dropped', async () => {
  const m = viewNet(1, true);
  const r = await freeBatch(m);
  assert.equal(r.kind, 'freed');
  if (r.kind !== 'freed') return;
  assert.equal(r.reshapes.length, 2);
  assert.ok(m.graph.nodes.some((n) => n.opType === 'Constant'));
  assert.ok(!r.model.graph.nodes.some((n) => n.opType === 'Constant'), 'the dead Constant would land in a reconstruction block');
  // the replaced [1, 2, 2] initializer is gone too; the freed shapes read 0 where they read 1
  const shapes = [...r.model.graph.initializers.values()].filter((t) => t.dtype === 'int64').map((t) => Array.from(t.data as BigInt64Array, Number));
  assert.deepEqual(shapes.sort(), [[0, -1], [0, 2, 2]]);
  const y = await atOnceAndAlone(r.model, Float32Array.from({ length: 20 }, (_, i) => Math.cos(i)), 5, [4]);
  assert.deepEqual(y.dims, [5, 3]);
  y.once.forEach((v, i) => assert.ok(Math.abs(v - y.alone[i]!) < 1e-5));
});

test('a graph that mixes the images of its batch keeps it: refused where batches are needed, with the way out, kept where not', async () => {
  const m = mixingNet();
  const r = await freeBatch(m);
  assert.equal(r.kind, 'fixed');
  await assert.rejects(withSymbolicBatch(m, true), (e: unknown) => isTtaqError(e) && e.code === 'QUANT_BAD_MODEL'
    && /fixed batch size of 2 \(input 'x'\)/.test(e.message)
    && e.message.includes("dynamic_axes={'x': {0: 'batch'}, 'y': {0: 'batch'}}")
    && /--method mse/.test(e.message));
  assert.equal(await withSymbolicBatch(m, false), m);
  // right output size at any batch, other values: only the comparison catches it
  const c = await freeBatch(centringNet());
  assert.equal(c.kind, 'fixed');
  assert.match(c.kind === 'fixed' ? c.reason : '', /other values of 'y'/);
});

test('an original model that onnxruntime cannot load is its own error, not a batch verdict', async () => {
  const b = new GraphBuilder('broken');
  b.input('x', 'float32', [1, 4]);
  b.op1('NoSuchOp', ['x'], {}, { outputNames: ['y'] });
  b.output('y', 'float32', [1, 4]);
  await assert.rejects(freeBatch(model(b)), (e: unknown) => isTtaqError(e) && e.code === 'RUNTIME_SESSION_FAILED');
});

test('the bundled model (symbolic batch) comes back untouched, without a check run', async () => {
  const m = await loadModel(new URL('../../models/resnet20-fmnist.onnx', import.meta.url).pathname);
  assert.equal(typeof batchDim(m.graph.inputs), 'string');
  const r = await freeBatch(m);
  assert.equal(r.kind, 'symbolic');
  assert.equal(r.kind === 'symbolic' && r.model, m);
  assert.equal(await withSymbolicBatch(m, true), m);
});

test('a batch-1 export whose Reshape says 1 is reconstructed, and the quantized model gives each image its logits at batch 3', async () => {
  const net = tinyResNet(3);
  const g = net.graph;
  // PyTorch's x.view(1, -1) without dynamic_axes: a Constant shape [1, -1] instead of Flatten
  const nodes: Node[] = g.nodes.flatMap((n): Node[] => n.opType !== 'Flatten' ? [n] : [
    { name: 'view_shape', opType: 'Constant', domain: '', inputs: [], outputs: ['view_shape.out'], attrs: { value: A.tensor(i64([2], [1, -1])) } },
    { name: 'view', opType: 'Reshape', domain: '', inputs: [n.inputs[0]!, 'view_shape.out'], outputs: n.outputs, attrs: {} },
  ]);
  assert.equal(nodes.length, g.nodes.length + 1);
  const fixed: Model = {
    ...net,
    graph: {
      ...g,
      nodes,
      inputs: g.inputs.map((v) => ({ ...v, shape: [1, ...v.shape!.slice(1)] })),
      outputs: g.outputs.map((v) => ({ ...v, shape: [1, ...v.shape!.slice(1)] })),
      valueInfo: new Map(),
    },
  };
  const set = tinySet(32);
  const r = await quantize({ model: fixed, calib: set, options: { wBits: 4, aBits: 4, method: 'ttaq', iterations: 4, batch: 8, minCalibImages: 16, reportImages: 0, actImages: 16 } });
  assert.ok(r.report.blocks.length > 0);
  assert.equal(typeof batchDim(r.model.graph.inputs), 'string');
  const y = await atOnceAndAlone(r.model, set.images.slice(0, 3 * 64), 3, set.dims.slice(1));
  assert.deepEqual(y.dims, [3, 10]);
  y.once.forEach((v, i) => assert.ok(Math.abs(v - y.alone[i]!) <= 1e-4 * (1 + Math.abs(y.alone[i]!)), `logit ${i}: ${v} at batch 3, ${y.alone[i]} alone`));
});

/**
 * tinyResNet(3) at a fixed batch of 4 that cannot be freed. 'fold': the pooled features go through
 * Reshape [1, 32] and back to [4, 8] (each image keeps its own outputs, but no other batch size
 * runs); 'centre': each image first has the batch's mean image subtracted (the images mix).
 */
function fixedNet(kind: 'fold' | 'centre'): Model {
  const net = tinyResNet(3);
  const g = net.graph;
  const b = 4;
  const nodes: Node[] = g.nodes.flatMap((n): Node[] => {
    if (kind === 'fold' && n.opType === 'Flatten') {
      return [
        { name: 'fold', opType: 'Reshape', domain: '', inputs: [n.inputs[0]!, 'fold_shape'], outputs: ['folded'], attrs: {} },
        { name: 'unfold', opType: 'Reshape', domain: '', inputs: ['folded', 'unfold_shape'], outputs: n.outputs, attrs: {} },
      ];
    }
    if (kind === 'centre' && n.inputs[0] === 'input') return [{ ...n, inputs: ['centred', ...n.inputs.slice(1)] }];
    return [n];
  });
  const centre: Node[] = kind === 'centre' ? [
    { name: 'batch_mean', opType: 'ReduceMean', domain: '', inputs: ['input'], outputs: ['mean_image'], attrs: { axes: A.ints([0]), keepdims: A.int(1) } },
    { name: 'centre', opType: 'Sub', domain: '', inputs: ['input', 'mean_image'], outputs: ['centred'], attrs: {} },
  ] : [];
  const initializers = new Map(g.initializers);
  initializers.set('fold_shape', i64([2], [1, 32]));
  initializers.set('unfold_shape', i64([2], [b, 8]));
  return {
    ...net,
    graph: {
      ...g,
      nodes: [...centre, ...nodes],
      initializers,
      inputs: g.inputs.map((v) => ({ ...v, shape: [b, ...v.shape!.slice(1)] })),
      outputs: g.outputs.map((v) => ({ ...v, shape: [b, ...v.shape!.slice(1)] })),
      valueInfo: new Map(),
    },
  };
}

test('statistics of a fixed batch over a partial last batch are those of the real images alone', async () => {
  const fixed = fixedNet('fold');
  const r = await freeBatch(fixed);
  assert.equal(r.kind, 'fixed');
  assert.match(r.kind === 'fixed' ? r.reason : '', /fails on another batch size/);
  assert.deepEqual(await independentRows(fixed), { independent: true });
  const free = tinyResNet(3); // the same function with a symbolic batch
  const set = tinySet(30); // 7 batches of 4 and 2 images
  const plan = makePlan(fixed.graph, { wBits: 4, aBits: 4 });
  const values = plan.acts.map((a) => a.value);
  const [a, b] = [await collectStats(fixed, values, set), await collectStats(free, values, set, { batch: 4 })];
  for (const v of values) {
    const [x, y] = [a.get(v)!, b.get(v)!];
    assert.deepEqual([x.min, x.max, x.energy], [y.min, y.max, y.energy], v);
    assert.deepEqual(Array.from(x.mean), Array.from(y.mean), v);
    assert.deepEqual(Array.from(x.variance), Array.from(y.variance), v);
  }
  const [sa, sb] = [await sampleValues(fixed, values, set, { cap: Number.MAX_SAFE_INTEGER }), await sampleValues(free, values, set, { cap: Number.MAX_SAFE_INTEGER, batch: 4 })];
  for (const v of values) assert.deepEqual(Array.from(sa.get(v)!), Array.from(sb.get(v)!), v);
  const sites = plan.acts.map((p) => ({ value: p.value, spec: p.spec, scale: Float32Array.of(0.01, 0.05, 0.2), zeroPoint: Float32Array.of(0, 0, 0) }));
  const [ea, eb] = [await candidateErrorsOrt(fixed, sites, set), await candidateErrorsOrt(free, sites, set)];
  for (const v of values) ea.get(v)!.forEach((e, k) => assert.ok(Math.abs(e - eb.get(v)![k]!) <= 1e-5 * Math.max(1, e), `${v} candidate ${k}: ${e} vs ${eb.get(v)![k]}`));
  // logits of 7 images (one partial batch): the symbolic model's
  const eval7 = tinySet(7, 2);
  const [la, lb] = [await allLogits(fixed, eval7), await allLogits(free, eval7)];
  assert.equal(la.n, 7);
  assert.deepEqual(Array.from(la.data), Array.from(lb.data));
});

test('--method minmax / mse on a fixed batch that cannot be freed: any image count, the results of the real images', async () => {
  const fixed = fixedNet('fold');
  const set = tinySet(30);
  const evalSet = tinySet(7, 2);
  const options = { wBits: 4, aBits: 4, method: 'minmax', minCalibImages: 16, actImages: 30, reportImages: 10 } as const;
  const r = await quantize({ model: fixed, calib: set, eval: evalSet, options });
  const ref = await quantize({ model: tinyResNet(3), calib: set, eval: evalSet, options });
  assert.equal(batchDim(r.model.graph.inputs), 4);
  assert.deepEqual(r.report.calibration.activationRanges, ref.report.calibration.activationRanges);
  assert.equal(r.report.accuracy?.images, 7);
  assert.deepEqual(r.report.accuracy, ref.report.accuracy);
  assert.deepEqual(r.report.variants, ref.report.variants);
  r.report.layers.forEach((l, i) => assert.ok(Math.abs(l.sqnrDb - ref.report.layers[i]!.sqnrDb) < 1e-3, `${l.node}: ${l.sqnrDb} vs ${ref.report.layers[i]!.sqnrDb} dB`));
  // the MSE search too (it runs its own graph over the batches)
  const mse = await quantize({ model: fixed, calib: set, options: { ...options, method: 'mse' } });
  assert.equal(mse.manifest.calibration.images, 30);
});

test('a fixed batch whose images mix is refused a partial batch, with the batch size and whole counts; whole batches run', async () => {
  const centred = fixedNet('centre');
  const r = await independentRows(centred);
  assert.equal(r.independent, false);
  assert.match(r.independent ? '' : r.reason, /other values of 'logits' when the other images of its batch change/);
  const options = { wBits: 4, aBits: 4, method: 'mse', minCalibImages: 16, actImages: 30, reportImages: 10 } as const;
  await assert.rejects(quantize({ model: centred, calib: tinySet(30), options }), (e: unknown) => isTtaqError(e) && e.code === 'QUANT_BAD_MODEL'
    && /fixed batch size of 4 that cannot be freed/.test(e.message) && /the 30 calibration images \(pass --calib-images 28\)/.test(e.message));
  await assert.rejects(quantize({ model: centred, calib: tinySet(32), eval: tinySet(6, 2), options }), (e: unknown) => isTtaqError(e) && e.code === 'QUANT_BAD_MODEL'
    && /the 6 evaluation images \(pass --eval-limit 4\)/.test(e.message) && !/calibration images/.test(e.message));
  // whole batches: the subsets are rounded down to whole batches (30 -> 28 activation images)
  const ok = await quantize({ model: centred, calib: tinySet(32), eval: tinySet(8, 2), options });
  assert.equal(ok.report.calibration.actImages, 28);
  assert.equal(ok.report.accuracy?.images, 8);
});
