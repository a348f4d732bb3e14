// Graph-level behaviour of buildGradientGraph: straight-through rules checked against hand
// computation, errors, pruning, integer paths, stop-gradient, batch-size independence, BN
// statistics outputs and the cross-entropy helper.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  buildGradientGraph,
  detach,
  GradientStep,
  inferValueShapes,
  listRules,
  softmaxCrossEntropy,
  withSoftmaxCrossEntropy,
} from '../../sdk/autodiff/index.ts';
import { isTtaqError } from '../../sdk/errors/index.ts';
import { A, GraphBuilder } from '../../sdk/onnx/builder.ts';
import { f32, i64, makeTensor } from '../../sdk/onnx/tensor.ts';
import type { Tensor } from '../../sdk/onnx/types.ts';
import { Rng } from '../../sdk/nn/rng.ts';
import { createSession } from '../../sdk/runtime/index.ts';
import { model, randTensor } from './helpers.ts';

const rng = new Rng(7);

async function runGrad(b: GraphBuilder, loss: string, wrt: string[], feeds: Record<string, Tensor>, opset = 17) {
  const gg = await buildGradientGraph({ model: model(b, opset), loss, wrt });
  const step = await GradientStep.create(gg, { session: { providers: ['cpu'] } });
  const r = await step.run(gg.params, feeds);
  await step.release();
  return { gg, r };
}

const close = (a: number, b: number, tol: number, what: string): void => {
  assert.ok(Math.abs(a - b) <= tol * (1 + Math.abs(b)), `${what}: ${a} vs expected ${b}`);
};

/** loss = sum(y * R) with R fixed; returns the loss name. */
function linearLoss(b: GraphBuilder, y: string, R: Tensor): string {
  const r = b.constant(R, 'R');
  const axes = R.dims.map((_, i) => i);
  return b.op1('ReduceSum', [b.op1('Mul', [y, r]), b.ints(axes)], { keepdims: A.int(0) }, { outputNames: ['loss'] });
}

describe('straight-through rules', () => {
  test('QuantizeLinear -> DequantizeLinear: STE mask for x, LSQ gradient for a per-tensor scale', async () => {
    const x = randTensor(rng, 'float32', [4, 6], -16, 16);
    const R = randTensor(rng, 'float32', [4, 6]);
    const s = 0.1;
    const b = new GraphBuilder('qdq');
    b.input('x', 'float32', [4, 6]);
    b.initializer('s', f32([], [s]));
    const zp = b.constant(makeTensor('int8', [], Int8Array.from([3])), 'zp');
    const q = b.op1('QuantizeLinear', ['x', 's', zp]);
    const y = b.op1('DequantizeLinear', [q, 's', zp]);
    const loss = linearLoss(b, y, R);
    const { r } = await runGrad(b, loss, ['x', 's'], { x });
    const gx = r.grads.get('x')!.data as Float32Array;
    let gs = 0;
    let clipped = 0;
    for (let i = 0; i < x.data.length; i++) {
      const v = (x.data as Float32Array)[i]! / s;
      const rq = Math.round(v) + 3; // no .5 ties with random data
      const inside = rq >= -128 && rq <= 127;
      if (!inside) clipped++;
      const qv = Math.min(Math.max(rq, -128), 127);
      const Ri = (R.data as Float32Array)[i]!;
      close(gx[i]!, inside ? Ri : 0, 1e-5, `dx[${i}]`);
      gs += Ri * (qv - 3 - (inside ? v : 0));
    }
    assert.ok(clipped > 0 && clipped < x.data.length, 'the test data should have clipped and unclipped elements');
    close(Number(r.grads.get('s')!.data[0]), gs, 1e-4, 'ds');
  });

  test('per-channel QDQ (axis 1, uint8 zero points) sums the scale gradient per channel', async () => {
    const x = randTensor(rng, 'float32', [3, 4, 2], -3, 3);
    const R = randTensor(rng, 'float32', [3, 4, 2]);
    const sc = [0.01, 0.02, 0.05, 0.1];
    const zps = [128, 100, 0, 250];
    const b = new GraphBuilder('qdq-axis');
    b.input('x', 'float32', [3, 4, 2]);
    b.initializer('s', f32([4], sc));
    const zp = b.constant(makeTensor('uint8', [4], Uint8Array.from(zps)), 'zp');
    const y = b.op1('DequantizeLinear', [b.op1('QuantizeLinear', ['x', 's', zp], { axis: A.int(1) }), 's', zp], { axis: A.int(1) });
    const { r } = await runGrad(b, linearLoss(b, y, R), ['x', 's'], { x });
    const gx = r.grads.get('x')!.data as Float32Array;
    const gs = [0, 0, 0, 0];
    for (let i = 0; i < 24; i++) {
      const c = Math.floor(i / 2) % 4;
      const v = (x.data as Float32Array)[i]! / sc[c]!;
      const rq = Math.round(v) + zps[c]!;
      const inside = rq >= 0 && rq <= 255;
      const qv = Math.min(Math.max(rq, 0), 255);
      const Ri = (R.data as Float32Array)[i]!;
      close(gx[i]!, inside ? Ri : 0, 1e-5, `dx[${i}]`);
      gs[c]! += Ri * (qv - zps[c]! - (inside ? v : 0));
    }
    const got = r.grads.get('s')!;
    assert.deepEqual(got.dims, [4]);
    gs.forEach((g, c) => close(Number(got.data[c]), g, 1e-3, `ds[${c}]`));
  });

  test('Round and Floor pass the gradient straight through', async () => {
    const x = randTensor(rng, 'float32', [5], -3, 3);
    const R = randTensor(rng, 'float32', [5]);
    const b = new GraphBuilder('ste');
    b.input('x', 'float32', [5]);
    b.initializer('w', f32([5], [1, 2, 3, 4, 5]));
    const y = b.op1('Add', [b.op1('Round', [b.op1('Mul', ['x', 'w'])]), b.op1('Floor', ['x'])]);
    const { r } = await runGrad(b, linearLoss(b, y, R), ['x'], { x });
    const gx = r.grads.get('x')!.data as Float32Array;
    for (let i = 0; i < 5; i++) close(gx[i]!, (R.data as Float32Array)[i]! * (i + 2), 1e-6, `dx[${i}]`);
  });
});

describe('graph building', () => {
  test('AUTODIFF_NO_RULE names the op, the node and the model', async () => {
    const b = new GraphBuilder('mynet');
    b.input('x', 'float32', [2]);
    b.initializer('w', f32([2], [1, 2]));
    const y = b.op1('Erf', [b.op1('Mul', ['x', 'w'])], {}, { name: 'the_erf' });
    const loss = b.op1('ReduceSum', [y, b.ints([0])], { keepdims: A.int(0) });
    await assert.rejects(buildGradientGraph({ model: model(b), loss, wrt: ['w'] }), (e: unknown) => {
      assert.ok(isTtaqError(e) && e.code === 'AUTODIFF_NO_RULE');
      assert.match(e.message, /Erf/);
      assert.match(e.message, /the_erf/);
      assert.match(e.message, /mynet/);
      return true;
    });
  });

  test('bad requests: unknown loss, non-scalar loss, integer wrt, old opset', async () => {
    const b = new GraphBuilder('g');
    b.input('x', 'float32', [3]);
    b.initializer('w', f32([3], [1, 2, 3]));
    b.initializer('k', i64([1], [2]));
    const y = b.op1('Mul', ['x', 'w'], {}, { outputNames: ['y'] });
    const m = model(b);
    const code = (e: unknown): string => (isTtaqError(e) ? e.code : String(e));
    await assert.rejects(buildGradientGraph({ model: m, loss: 'nope', wrt: ['w'] }), (e) => code(e) === 'AUTODIFF_BAD_REQUEST' && /nope/.test((e as Error).message));
    await assert.rejects(buildGradientGraph({ model: m, loss: y, wrt: ['w'] }), (e) => code(e) === 'AUTODIFF_BAD_REQUEST' && /scalar/.test((e as Error).message));
    await assert.rejects(buildGradientGraph({ model: m, loss: y, wrt: ['k'] }), (e) => code(e) === 'AUTODIFF_BAD_REQUEST' && /int64/.test((e as Error).message));
    await assert.rejects(buildGradientGraph({ model: model(b, 12), loss: y, wrt: ['w'] }), (e) => code(e) === 'AUTODIFF_BAD_REQUEST' && /opset/.test((e as Error).message));
  });

  test('prunes unrelated nodes, ignores integer paths, zero gradient for unused wrt', async () => {
    const b = new GraphBuilder('prune');
    b.input('x', 'float32', ['N', 3]);
    b.initializer('w', f32([3], [1, 2, 3]));
    b.initializer('unused', f32([2], [5, 6]));
    const xw = b.op1('Mul', ['x', 'w']);
    // Integer path: the shape of xw reshapes it (no gradient through Shape), plus an ArgMax.
    const flat = b.op1('Reshape', [xw, b.op1('Shape', [xw])]);
    b.op1('ArgMax', [flat], { axis: A.int(1) }, { outputNames: ['am'] });
    b.op1('Erf', ['x'], {}, { outputNames: ['side'] }); // no rule, but off the loss path
    const loss = b.op1('ReduceSum', [b.op1('Mul', [flat, flat]), b.ints([0, 1])], { keepdims: A.int(0) });
    const x = f32([2, 3], [1, -1, 2, 0.5, 1, -2]);
    const { gg, r } = await runGrad(b, loss, ['w', 'unused'], { x });
    assert.ok(!gg.model.graph.nodes.some((n) => n.opType === 'Erf' || n.opType === 'ArgMax'), 'unrelated nodes are pruned');
    const gw = r.grads.get('w')!.data as Float32Array;
    // d/dw sum_n sum_k (x w)^2 = 2 w sum_n x^2
    const xs = x.data as Float32Array;
    for (let k = 0; k < 3; k++) close(gw[k]!, 2 * (k + 1) * (xs[k]! ** 2 + xs[k + 3]! ** 2), 1e-6, `dw[${k}]`);
    assert.deepEqual(Array.from(r.grads.get('unused')!.data as Float32Array), [0, 0]);
    assert.equal(r.loss, xs.reduce((a, v, i) => a + (v * ((i % 3) + 1)) ** 2, 0));
  });

  test('detach() and stopGradient block gradients', async () => {
    const b = new GraphBuilder('stop');
    b.input('x', 'float32', [2]);
    b.initializer('w', f32([2], [2, 3]));
    const xw = b.op1('Mul', ['x', 'w'], {}, { outputNames: ['xw'] });
    const loss = b.op1('ReduceSum', [b.op1('Mul', [xw, detach(b, xw)]), b.ints([0])], { keepdims: A.int(0) }, { outputNames: ['loss'] });
    const m = model(b);
    const x = f32([2], [1, -2]);
    const gg = await buildGradientGraph({ model: m, loss, wrt: ['w'] });
    const s = await createSession(gg.model, { providers: ['cpu'] });
    const out = await s.run({ x, w: gg.params.get('w')! });
    // d/dw sum(xw * const(xw)) = x * xw (not 2 x xw)
    assert.deepEqual(Array.from(out['grad:w']!.data as Float32Array), [2, 12]);
    const gg2 = await buildGradientGraph({ model: m, loss, wrt: ['w'], stopGradient: ['xw'] });
    const s2 = await createSession(gg2.model, { providers: ['cpu'] });
    const out2 = await s2.run({ x, w: gg2.params.get('w')! });
    assert.deepEqual(Array.from(out2['grad:w']!.data as Float32Array), [0, 0]);
    await s.release();
    await s2.release();
  });

  test('one gradient graph serves any batch size; BN batch statistics come out as outputs', async () => {
    const b = new GraphBuilder('cnn');
    b.input('x', 'float32', ['N', 2, 5, 5]);
    b.initializer('w', randTensor(rng, 'float32', [3, 2, 3, 3]));
    for (const [n, v] of [['scale', 1], ['bias', 0], ['mean', 0], ['var', 1]] as const) b.initializer(n, f32([3], [v, v, v]));
    const c = b.op1('Conv', ['x', 'w'], { pads: A.ints([1, 1, 1, 1]), strides: A.ints([2, 2]) });
    const [y] = b.op('BatchNormalization', [c, 'scale', 'bias', 'mean', 'var'], { training_mode: A.int(1), momentum: A.float(0) }, { outputNames: ['bn', 'bn_mean', 'bn_var'] });
    const p = b.op1('Flatten', [b.op1('GlobalAveragePool', [b.op1('Relu', [y!])])]);
    const loss = b.op1('ReduceMean', [b.op1('Mul', [p, p])], { keepdims: A.int(0) });
    const m = model(b);
    const wrt = ['w', 'scale', 'bias'];
    const gg2 = await buildGradientGraph({ model: m, loss, wrt, outputs: ['bn_mean', 'bn_var'] });
    const x5 = randTensor(rng, 'float32', [5, 2, 5, 5]);
    const gg5 = await buildGradientGraph({ model: m, loss, wrt, outputs: ['bn_mean', 'bn_var'], sampleFeeds: { x: x5 } });
    const s2 = await GradientStep.create(gg2, { session: { providers: ['cpu'] } });
    const s5 = await GradientStep.create(gg5, { session: { providers: ['cpu'] } });
    const r2 = await s2.run(gg2.params, { x: x5 });
    const r5 = await s5.run(gg5.params, { x: x5 });
    close(r2.loss, r5.loss, 1e-6, 'loss');
    for (const w of wrt) {
      const a = r2.grads.get(w)!.data as Float32Array;
      const c5 = r5.grads.get(w)!.data as Float32Array;
      for (let i = 0; i < a.length; i++) close(a[i]!, c5[i]!, 1e-5, `${w}[${i}]`);
    }
    // Batch mean of the conv output, checked against a forward run.
    const fs = await createSession({ ...m, graph: { ...m.graph, outputs: [{ name: c, dtype: 'float32' }] } }, { providers: ['cpu'] });
    const cv = (await fs.run({ x: x5 }))[c]!;
    const cd = cv.data as Float32Array;
    const per = cd.length / 3 / 5;
    for (let ch = 0; ch < 3; ch++) {
      let sum = 0;
      for (let n = 0; n < 5; n++) for (let k = 0; k < per; k++) sum += cd[(n * 3 + ch) * per + k]!;
      close(Number(r5.outputs['bn_mean']!.data[ch]), sum / (5 * per), 1e-5, `bn_mean[${ch}]`);
    }
    assert.deepEqual(r5.outputs['bn_var']!.dims, [3]);
    await Promise.all([s2.release(), s5.release(), fs.release()]);
  });

  test('inferValueShapes reports dtypes and sample-batch dims', async () => {
    const b = new GraphBuilder('shapes');
    b.input('x', 'float32', ['N', 3]);
    const s = b.op1('Shape', ['x'], {}, { outputNames: ['s'] });
    b.op1('Relu', ['x'], {}, { outputNames: ['r'] });
    b.output('r', 'float32');
    b.output(s, 'int64');
    const shapes = await inferValueShapes(model(b), { sampleBatch: 4 });
    assert.deepEqual(shapes.get('r'), { dtype: 'float32', dims: [4, 3] });
    assert.deepEqual(shapes.get('s'), { dtype: 'int64', dims: [2] });
  });

  test('the registry covers the ops the issue lists', () => {
    const want = ['Conv', 'Gemm', 'MatMul', 'Add', 'Sub', 'Mul', 'Div', 'Relu', 'LeakyRelu', 'Clip', 'Sigmoid', 'HardSigmoid', 'HardSwish', 'Tanh',
      'BatchNormalization', 'MaxPool', 'AveragePool', 'GlobalAveragePool', 'Flatten', 'Reshape', 'Transpose', 'Concat', 'Split', 'Slice', 'Pad',
      'ReduceMean', 'ReduceSum', 'Softmax', 'LogSoftmax', 'Exp', 'Log', 'Pow', 'Sqrt', 'Neg', 'Abs', 'Identity', 'Where', 'Round', 'Floor',
      'QuantizeLinear', 'DequantizeLinear'];
    const have = new Set(listRules());
    assert.deepEqual(want.filter((o) => !have.has(o)), []);
  });
});

describe('softmax cross-entropy helper', () => {
  test('int64 and one-hot labels give the same loss and dL/dz = (softmax(z) - onehot) / N', async () => {
    const N = 4;
    const C = 3;
    const z = randTensor(rng, 'float32', [N, C], -2, 2);
    const labels = [2, 0, 1, 2];
    const base = new GraphBuilder('head');
    base.input('z_in', 'float32', ['N', C]);
    base.initializer('bias', f32([C], [0, 0, 0]));
    base.op1('Add', ['z_in', 'bias'], {}, { outputNames: ['logits'] });
    base.output('logits', 'float32', ['N', C]);
    const m = model(base);
    const hot = withSoftmaxCrossEntropy(m, 'logits', { labels: 'onehot', classes: C });
    const idx = withSoftmaxCrossEntropy(m, 'logits', { labels: 'int64', classes: C, labelsName: 'y' });
    const onehot = new Float32Array(N * C);
    labels.forEach((l, n) => { onehot[n * C + l] = 1; });
    const gh = await buildGradientGraph({ model: hot.model, loss: hot.loss, wrt: ['bias', 'z_in'] });
    const gi = await buildGradientGraph({ model: idx.model, loss: idx.loss, wrt: ['bias', 'z_in'] });
    const sh = await GradientStep.create(gh, { session: { providers: ['cpu'] } });
    const si = await GradientStep.create(gi, { session: { providers: ['cpu'] } });
    const rh = await sh.run(gh.params, { z_in: z, labels: f32([N, C], onehot) });
    const ri = await si.run(gi.params, { z_in: z, y: i64([N], labels) });
    const zd = z.data as Float32Array;
    let expLoss = 0;
    const gz = rh.grads.get('z_in')!.data as Float32Array;
    for (let n = 0; n < N; n++) {
      const row = Array.from(zd.subarray(n * C, n * C + C));
      const mx = Math.max(...row);
      const e = row.map((v) => Math.exp(v - mx));
      const s = e.reduce((a, v) => a + v, 0);
      expLoss -= Math.log(e[labels[n]!]! / s) / N;
      for (let k = 0; k < C; k++) close(gz[n * C + k]!, (e[k]! / s - (k === labels[n] ? 1 : 0)) / N, 1e-5, `dz[${n},${k}]`);
    }
    close(rh.loss, expLoss, 1e-5, 'loss (one-hot)');
    close(ri.loss, expLoss, 1e-5, 'loss (int64)');
    const gbh = rh.grads.get('bias')!.data as Float32Array;
    const gbi = ri.grads.get('bias')!.data as Float32Array;
    for (let k = 0; k < C; k++) close(gbi[k]!, gbh[k]!, 1e-6, `dbias[${k}]`);
    await Promise.all([sh.release(), si.release()]);
  });

  test('softmaxCrossEntropy appends to a builder and rejects a bad class count', () => {
    const b = new GraphBuilder('g');
    b.input('z', 'float32', ['N', 4]);
    b.input('y', 'int64', ['N']);
    const loss = softmaxCrossEntropy(b, 'z', 'y', { labels: 'int64', classes: 4 });
    assert.equal(typeof loss, 'string');
    assert.throws(() => softmaxCrossEntropy(b, 'z', 'y', { labels: 'int64', classes: 1 }), /classes/);
  });
});
