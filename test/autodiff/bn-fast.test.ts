// Batch-statistics BatchNormalization: the 'op' lowering (a training-mode BN node with momentum 0,
// closed-form backward) and the 'fused' one (inference BN fed with batch statistics, same backward)
// against central finite differences in float64, and against the 'primitive' lowering on a small
// ResNet-style block in float32.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { buildGradientGraph, GradientStep, withSoftmaxCrossEntropy, type BatchNormMode } from '../../sdk/autodiff/index.ts';
import { BN_BATCH_OP_PREFIX, BN_BATCH_STATS_PREFIX, OP_LOWERING_MIN_OPSET, type BatchNormLowering } from '../../sdk/autodiff/bn.ts';
import { A, GraphBuilder } from '../../sdk/onnx/builder.ts';
import { f32, i64, makeTensor } from '../../sdk/onnx/tensor.ts';
import type { Graph, Tensor } from '../../sdk/onnx/types.ts';
import { createSession } from '../../sdk/runtime/index.ts';
import { Rng } from '../../sdk/nn/rng.ts';
import { gradCheck, model, randTensor, type CheckCase } from './helpers.ts';

const rng = new Rng(777);
const D = 'float64' as const;

async function check(c: CheckCase): Promise<void> {
  const r = await gradCheck(c);
  for (const [w, e] of r.errors) assert.ok(e <= r.rtol, `${c.name}: gradient of '${w}' has relative error ${e.toExponential(2)} > ${r.rtol}`);
}

/**
 * Training-mode BN on x of `dims` (dims[0] may be symbolic, fed at the size of `real`), loss
 * sum(y * R); x, scale and bias are graph inputs. Every gradient element is compared with central
 * differences of the forward model: max |fd - analytic| <= 1e-6 * (max |fd| + 1e-6).
 */
async function bnCheck(name: string, dims: readonly (number | string)[], real: readonly number[], opset = 17, momentum = 0.8, statsInLoss = false): Promise<void> {
  for (const lowering of ['op', 'fused'] as const) await bnCheckWith(`${name} (${lowering})`, lowering, dims, real, opset, momentum, statsInLoss);
}

/** bnCheck for one lowering; with statsInLoss the loss adds sum(running_mean * r1 + running_var * r2). */
async function bnCheckWith(name: string, lowering: BatchNormLowering, dims: readonly (number | string)[], real: readonly number[], opset: number, momentum: number, statsInLoss: boolean): Promise<void> {
  const c = real[1]!;
  const b = new GraphBuilder(name);
  b.input('x', D, [...dims]);
  b.input('scale', D, [c]);
  b.input('bias', D, [c]);
  // The running statistics are graph inputs fed as fresh copies on every run: onnxruntime's
  // training-mode kernel may write its running outputs over inputs 3 and 4, and with initializers
  // there (and the running outputs not read) the finite differences drifted from run to run.
  b.input('mean', D, [c]);
  b.input('var', D, [c]);
  const given = { mean: randTensor(rng, D, [c]).data as Float64Array, var: randTensor(rng, D, [c], 0.5, 1.5).data as Float64Array };
  const stats = (): Record<string, Tensor> => ({ mean: makeTensor(D, [c], given.mean.slice()) as Tensor, var: makeTensor(D, [c], given.var.slice()) as Tensor });
  const [y, rm, rv] = b.op('BatchNormalization', ['x', 'scale', 'bias', 'mean', 'var'],
    { epsilon: A.float(1e-3), momentum: A.float(momentum), training_mode: A.int(1) }, { outputs: 3 });
  const R = b.constant(randTensor(rng, D, real), 'R');
  let total = b.op1('ReduceSum', [b.op1('Mul', [y!, R])], { keepdims: A.int(0) });
  if (statsInLoss) {
    for (const st of [rm!, rv!]) total = b.op1('Add', [total, b.op1('ReduceSum', [b.op1('Mul', [st, b.constant(randTensor(rng, D, [c]), 'r')])], { keepdims: A.int(0) })]);
  }
  const loss = b.op1('Identity', [total], {}, { outputNames: ['loss'] });
  b.output(loss, D, []);
  b.output(rm!, D, [c]);
  b.output(rv!, D, [c]);
  const m = model(b, opset);
  const feeds: Record<string, Tensor> = { x: randTensor(rng, D, real, -1, 2), scale: randTensor(rng, D, [c], 0.5, 1.5), bias: randTensor(rng, D, [c]) };
  const wrt = ['x', 'scale', 'bias'];
  const gg = await buildGradientGraph({ model: m, loss, wrt, outputs: [rm!, rv!], sampleFeeds: feeds, batchNorm: { lowering } });
  const prefix = lowering === 'op' && opset >= OP_LOWERING_MIN_OPSET ? BN_BATCH_OP_PREFIX : BN_BATCH_STATS_PREFIX;
  assert.equal(gg.model.graph.nodes.filter((n) => n.name.startsWith(prefix)).length, 1, `${name}: lowered BN node`);
  const gs = await createSession(gg.model, { providers: ['cpu'] });
  const taken = new Set(gg.model.graph.inputs.map((v) => v.name)); // momentum 0 reads no running statistics
  const res = await gs.run(Object.fromEntries(Object.entries({ ...feeds, ...stats() }).filter(([k]) => taken.has(k))));
  await gs.release();
  // Running statistics: m * given + (1 - m) * batch statistic (population variance).
  const x = feeds['x']!.data as Float64Array;
  const per = x.length / (real[0]! * c);
  for (let ch = 0; ch < c; ch++) {
    const vals: number[] = [];
    for (let n = 0; n < real[0]!; n++) for (let i = 0; i < per; i++) vals.push(x[(n * c + ch) * per + i]!);
    const mu = vals.reduce((a, v) => a + v, 0) / vals.length;
    const vr = vals.reduce((a, v) => a + (v - mu) ** 2, 0) / vals.length;
    assert.ok(Math.abs(Number(res[rm!]!.data[ch]) - (momentum * given.mean[ch]! + (1 - momentum) * mu)) < 1e-12, `${name}: running mean[${ch}]`);
    assert.ok(Math.abs(Number(res[rv!]!.data[ch]) - (momentum * given.var[ch]! + (1 - momentum) * vr)) < 1e-12, `${name}: running var[${ch}]`);
  }
  const fs = await createSession({ ...m, graph: { ...m.graph, outputs: [{ name: loss, dtype: D, shape: [] }] } }, { providers: ['cpu'] });
  const h = 1e-5;
  for (const w of wrt) {
    const an = res[gg.grads.get(w)!]!.data as Float64Array;
    const base = feeds[w]!;
    let diff = 0;
    let mag = 0;
    for (let i = 0; i < base.data.length; i++) {
      const at = async (v: number): Promise<number> => {
        const d = (base.data as Float64Array).slice();
        d[i] = v;
        return Number((await fs.run({ ...feeds, ...stats(), [w]: makeTensor(D, base.dims, d) as Tensor }))[loss]!.data[0]);
      };
      const x0 = Number(base.data[i]);
      const fd = ((await at(x0 + h)) - (await at(x0 - h))) / (2 * h);
      diff = Math.max(diff, Math.abs(fd - an[i]!));
      mag = Math.max(mag, Math.abs(fd));
    }
    assert.ok(diff <= 1e-6 * (mag + 1e-6), `${name}: gradient of '${w}' off by ${diff.toExponential(2)} (max |fd| ${mag.toExponential(2)})`);
  }
  await fs.release();
}

describe('batch-statistics BN lowered to one op or fused: finite differences (float64)', () => {
  test('N>1, spatial 4x5, static dims', () => bnCheck('bn-n3-4x5', [3, 2, 4, 5], [3, 2, 4, 5]));
  test('N=1, spatial 4x4', () => bnCheck('bn-n1-4x4', [1, 3, 4, 4], [1, 3, 4, 4]));
  test('N>1, spatial 1x1', () => bnCheck('bn-n6-1x1', [6, 3, 1, 1], [6, 3, 1, 1]));
  test('symbolic batch (element count computed at run time), opset 18', () => bnCheck('bn-symbolic', ['N', 2, 3, 3], [4, 2, 3, 3], 18));
  test('opset 14: the op lowering falls back to fused', () => bnCheck('bn-opset14', [3, 2, 3, 3], [3, 2, 3, 3], 14));
  test('rank 2 and rank 3 inputs, momentum 0', async () => {
    await bnCheck('bn-rank2', ['N', 3], [5, 3], 17, 0);
    await bnCheck('bn-rank3', [2, 3, 4], [2, 3, 4], 17, 0);
  });
  test('the loss reads the batch statistics too (momentum 0 and 0.8)', async () => {
    await bnCheck('bn-stats-m0', [3, 2, 3, 3], [3, 2, 3, 3], 17, 0, true);
    await bnCheck('bn-stats-m08', ['N', 2, 2, 3], [4, 2, 2, 3], 17, 0.8, true);
  });
  test('a marked BN fed statistics the lowering did not make (generic centring)', () => check({
    name: 'bn-generic', dtype: D, wrt: ['x', 'scale', 'bias'], samples: 24,
    feeds: { x: randTensor(rng, D, [2, 2, 3, 3], -1, 2) },
    build: (b) => {
      b.input('x', D, [2, 2, 3, 3]);
      b.initializer('scale', randTensor(rng, D, [2], 0.5, 1.5));
      b.initializer('bias', randTensor(rng, D, [2]));
      const axes = { axes: A.ints([0, 2, 3]) };
      const m4 = b.op1('ReduceMean', ['x'], { ...axes, keepdims: A.int(1) });
      const dev = b.op1('Sub', ['x', m4]);
      const v = b.op1('ReduceMean', [b.op1('Mul', [dev, dev])], { ...axes, keepdims: A.int(0) });
      const m = b.op1('ReduceMean', ['x'], { ...axes, keepdims: A.int(0) });
      return b.op1('BatchNormalization', ['x', 'scale', 'bias', m, v], { epsilon: A.float(1e-3) }, { name: `${BN_BATCH_STATS_PREFIX}/hand_made` });
    },
  }));
});

/** conv-BN-relu-conv-BN (+ conv-BN shortcut), relu, GAP, Gemm; BN in training mode. */
function resBlock(r: Rng): { model: ReturnType<typeof model>; params: string[]; stats: string[] } {
  const b = new GraphBuilder('resblock');
  b.input('image', 'float32', ['N', 3, 6, 6]);
  const params: string[] = [];
  const stats: string[] = [];
  const conv = (x: string, name: string, cin: number, cout: number, k: number, stride: number): string => {
    params.push(b.initializer(`${name}.w`, randTensor(r, 'float32', [cout, cin, k, k], -0.4, 0.4)));
    const p = (k - 1) / 2;
    return b.op1('Conv', [x, `${name}.w`], { pads: A.ints([p, p, p, p]), strides: A.ints([stride, stride]) }, { name });
  };
  const bn = (x: string, name: string, c: number, momentum: number): string => {
    params.push(b.initializer(`${name}.scale`, randTensor(r, 'float32', [c], 0.5, 1.5)), b.initializer(`${name}.bias`, randTensor(r, 'float32', [c], -0.5, 0.5)));
    b.initializer(`${name}.mean`, f32([c], new Array<number>(c).fill(0)));
    b.initializer(`${name}.var`, f32([c], new Array<number>(c).fill(1)));
    const outs = [`${name}.out`, `${name}.batch_mean`, `${name}.batch_var`];
    stats.push(outs[1]!, outs[2]!);
    b.op('BatchNormalization', [x, `${name}.scale`, `${name}.bias`, `${name}.mean`, `${name}.var`],
      { epsilon: A.float(1e-5), momentum: A.float(momentum), training_mode: A.int(1) }, { name, outputNames: outs });
    return outs[0]!;
  };
  const h = b.op1('Relu', [bn(conv('image', 'c1', 3, 4, 3, 2), 'bn1', 4, 0)]);
  const main = bn(conv(h, 'c2', 4, 4, 3, 1), 'bn2', 4, 0.9);
  const short = bn(conv('image', 'sc', 3, 4, 1, 2), 'bnsc', 4, 0);
  const out = b.op1('Relu', [b.op1('Add', [main, short])]);
  params.push(b.initializer('fc.w', randTensor(r, 'float32', [3, 4], -0.5, 0.5)), b.initializer('fc.b', f32([3], [0, 0, 0])));
  b.op('Gemm', [b.op1('Flatten', [b.op1('GlobalAveragePool', [out])]), 'fc.w', 'fc.b'], { transB: A.int(1) }, { outputNames: ['logits'] });
  b.output('logits', 'float32', ['N', 3]);
  return { model: model(b), params, stats };
}

const countOps = (g: Graph, ops: readonly string[]): number => g.nodes.filter((n) => ops.includes(n.opType)).length;

describe('op and fused vs primitive lowering on a ResNet-style block (float32)', () => {
  for (const lowering of ['op', 'fused'] as const) test(`${lowering}: same loss, batch statistics and gradients; fewer nodes, no Shape/Expand from BN`, async () => {
    const r = new Rng(5);
    const net = resBlock(r);
    const { model: m, loss } = withSoftmaxCrossEntropy(net.model, 'logits', { labels: 'int64', classes: 3 });
    const n = 5;
    const feeds = { image: randTensor(r, 'float32', [n, 3, 6, 6], -1, 1), labels: i64([n], [0, 1, 2, 1, 0]) };
    const outputs = ['logits', ...net.stats];
    const run = async (batchNorm: BatchNormMode) => {
      const gg = await buildGradientGraph({ model: m, loss, wrt: net.params, outputs, batchNorm });
      const st = await GradientStep.create(gg, { session: { providers: ['cpu'], intraOpThreads: 1 } });
      const res = await st.run(gg.params, feeds);
      await st.release();
      return { gg, res };
    };
    const old = await run({ lowering: 'primitive' });
    const neu = await run(lowering === 'op' ? 'model' : { stats: 'model', lowering });
    const g = neu.gg.model.graph;
    assert.equal(g.nodes.filter((x) => x.name.startsWith(lowering === 'op' ? BN_BATCH_OP_PREFIX : BN_BATCH_STATS_PREFIX)).length, 3);
    assert.ok(g.nodes.length < old.gg.model.graph.nodes.length - 40, `fused ${g.nodes.length} nodes vs primitive ${old.gg.model.graph.nodes.length}`);
    // Shape/Expand nodes left come from other rules (Gemm bias unbroadcast, the loss' ReduceMean).
    assert.ok(countOps(g, ['Shape', 'Expand']) <= countOps(old.gg.model.graph, ['Shape', 'Expand']) - 9);
    const bnNodes = new Set(g.nodes.filter((x) => x.name.startsWith('bw_bn.')).map((x) => x.opType));
    for (const op of ['Shape', 'Expand', 'Where', 'ReduceMean']) assert.ok(!bnNodes.has(op), `BN backward uses ${op}`);
    assert.ok(Math.abs(old.res.loss - neu.res.loss) <= 1e-6 * Math.abs(old.res.loss));
    for (const o of outputs) {
      const a = old.res.outputs[o]!.data as Float32Array;
      const c = neu.res.outputs[o]!.data as Float32Array;
      assert.equal(a.length, c.length, o);
      for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]! - c[i]!) <= 1e-5 * (1 + Math.abs(a[i]!)), `${o}[${i}]: ${a[i]} vs ${c[i]}`);
    }
    for (const w of net.params) {
      const a = old.res.grads.get(w)!.data as Float32Array;
      const c = neu.res.grads.get(w)!.data as Float32Array;
      const scale = Math.max(...Array.from(a, Math.abs));
      let diff = 0;
      for (let i = 0; i < a.length; i++) diff = Math.max(diff, Math.abs(a[i]! - c[i]!));
      assert.ok(scale > 1e-4, `gradient of ${w} vanished`);
      assert.ok(diff <= 1e-5 * scale, `gradient of ${w}: max |fused - primitive| ${diff.toExponential(2)} > 1e-5 * ${scale.toExponential(2)}`);
    }
  });

  test('an unknown lowering is refused with the way out', async () => {
    const net = resBlock(new Rng(1));
    const { model: m, loss } = withSoftmaxCrossEntropy(net.model, 'logits', { labels: 'int64', classes: 3 });
    await assert.rejects(buildGradientGraph({ model: m, loss, wrt: net.params, batchNorm: { lowering: 'decomposed' as never } }),
      (e: unknown) => (e as { code?: string }).code === 'AUTODIFF_BAD_REQUEST' && /'op', 'fused' or 'primitive'/.test((e as Error).message));
  });
});
