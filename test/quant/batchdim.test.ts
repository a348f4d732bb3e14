// Models exported with a fixed batch size: the batch dimension is freed (constant Reshape shapes
// included) when the freed graph gives every image the outputs the original gives it, and a model
// that mixes images is refused with the way out; the quantizer then reconstructs a batch-1 export.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isTtaqError } from '../../sdk/errors/index.ts';
import { GraphBuilder } from '../../sdk/onnx/builder.ts';
import { makeTensor } from '../../sdk/onnx/tensor.ts';
import type { Model, ValueInfo } from '../../sdk/onnx/types.ts';
import { freeBatch, quantize, withSymbolicBatch } from '../../sdk/quant/index.ts';
import { createSession } from '../../sdk/runtime/index.ts';
import { model } from '../autodiff/helpers.ts';
import { tinyResNet, tinySet } from './fixtures.ts';

const w = makeTensor('float32', [4, 3], Float32Array.from({ length: 12 }, (_, i) => Math.sin(i + 1)));

/** x [batch, 4] -> Reshape(batch, 2, 2) -> Reshape(batch, -1) -> MatMul -> [batch, 3] */
function viewNet(batch: number): Model {
  const b = new GraphBuilder('views');
  b.input('x', 'float32', [batch, 4]);
  b.initializer('w', w);
  const r1 = b.op1('Reshape', ['x', b.ints([batch, 2, 2])]);
  const r2 = b.op1('Reshape', [r1, b.ints([batch, -1])]);
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

const batchDim = (v: readonly ValueInfo[]) => v[0]!.shape![0];

test('a fixed batch is freed, its Reshapes\' leading constants included, and the model runs any batch', async () => {
  const r = await freeBatch(viewNet(1));
  assert.equal(r.kind, 'freed');
  if (r.kind !== 'freed') return;
  assert.equal(r.reshapes.length, 2);
  assert.equal(typeof batchDim(r.model.graph.inputs), 'string');
  assert.equal(typeof batchDim(r.model.graph.outputs), 'string');
  const s = await createSession(r.model);
  try {
    const x = Float32Array.from({ length: 12 }, (_, i) => i / 10);
    const y = (await s.run({ x: makeTensor('float32', [3, 4], x) })).y!;
    assert.deepEqual(y.dims, [3, 3]);
    // each row is its image times w
    for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) {
      let e = 0;
      for (let k = 0; k < 4; k++) e += x[i * 4 + k]! * (w.data as Float32Array)[k * 3 + j]!;
      assert.ok(Math.abs((y.data as Float32Array)[i * 3 + j]! - e) < 1e-5);
    }
  } finally {
    await s.release();
  }
  // a batch of 8 too (its Reshapes say 8)
  assert.equal((await freeBatch(viewNet(8))).kind, 'freed');
  // already symbolic: as it is
  const sym = viewNet(1);
  const free = (await freeBatch(sym)) as { kind: string; model: Model };
  const again = await freeBatch(free.model);
  assert.equal(again.kind, 'symbolic');
});

test('a graph that mixes the images of its batch keeps it: refused where batches are needed, kept where not', async () => {
  const m = mixingNet();
  const r = await freeBatch(m);
  assert.equal(r.kind, 'fixed');
  await assert.rejects(withSymbolicBatch(m, true), (e: unknown) => isTtaqError(e) && e.code === 'QUANT_BAD_MODEL' && /fixed batch size of 2/.test(e.message) && /dynamic_axes/.test(e.message) && /--method mse/.test(e.message));
  assert.equal(await withSymbolicBatch(m, false), m);
});

test('a batch-1 export of a network is reconstructed, and the quantized model runs any batch', async () => {
  const net = tinyResNet(3);
  const fixed: Model = {
    ...net,
    graph: {
      ...net.graph,
      inputs: net.graph.inputs.map((v) => ({ ...v, shape: [1, ...v.shape!.slice(1)] })),
      outputs: net.graph.outputs.map((v) => ({ ...v, shape: [1, ...v.shape!.slice(1)] })),
      valueInfo: new Map(),
    },
  };
  const set = tinySet(32);
  const r = await quantize({ model: fixed, calib: set, options: { wBits: 4, aBits: 4, method: 'ttaq', iterations: 4, batch: 8, minCalibImages: 16, reportImages: 0, actImages: 16 } });
  assert.ok(r.report.blocks.length > 0);
  assert.equal(typeof batchDim(r.model.graph.inputs), 'string');
  const s = await createSession(r.model);
  try {
    const y = Object.values(await s.run({ [r.model.graph.inputs[0]!.name]: makeTensor('float32', [3, ...set.dims.slice(1)], set.images.slice(0, 3 * 64)) }))[0]!;
    assert.equal(y.dims[0], 3);
  } finally {
    await s.release();
  }
});
