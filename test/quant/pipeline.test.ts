import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { TtaqError } from '../../sdk/errors/index.ts';
import { A, GraphBuilder } from '../../sdk/onnx/builder.ts';
import { f32, i64, makeTensor } from '../../sdk/onnx/tensor.ts';
import type { Model, Node } from '../../sdk/onnx/types.ts';
import { METHODS, prepareModel, quantize, type QuantizeOptionsInput } from '../../sdk/quant/index.ts';
import { createSession } from '../../sdk/runtime/index.ts';
import { tinyResNet, tinySet } from './fixtures.ts';

const coded = (code: string, re?: RegExp) => (e: unknown) => e instanceof TtaqError && e.code === code && (!re || re.test(e.message));

const FAST: QuantizeOptionsInput = { wBits: 4, aBits: 4, method: 'qdrop', iterations: 20, batch: 8, minCalibImages: 16, reportImages: 0, actImages: 32 };

/** A BN-folded residual net: conv+bias -> relu -> conv+bias (+ skip) -> relu -> pool -> gemm. */
function foldedNet(): Model {
  const b = new GraphBuilder('folded');
  const x = b.input('input', 'float32', ['N', 1, 8, 8]);
  let seed = 5;
  const rnd = (n: number, s: number) => Float32Array.from({ length: n }, () => { seed = (seed * 1103515245 + 12345) % 2147483648; return (seed / 2147483648 - 0.5) * s; });
  const conv = (inp: string, cin: number, cout: number, name: string) => b.op1('Conv', [inp, b.initializer(`${name}.weight`, makeTensor('float32', [cout, cin, 3, 3], rnd(cout * cin * 9, 0.6))), b.initializer(`${name}.bias`, f32([cout], rnd(cout, 0.2)))], { pads: A.ints([1, 1, 1, 1]), kernel_shape: A.ints([3, 3]) }, { name });
  const h = b.op1('Relu', [conv(x, 1, 4, 'c1')], {}, { name: 'r1' });
  const h2 = b.op1('Relu', [conv(h, 4, 4, 'c2')], {}, { name: 'r2' });
  const y = b.op1('Relu', [b.op1('Add', [conv(h2, 4, 4, 'c3'), h], {}, { name: 'add' })], {}, { name: 'r3' });
  const p = b.op1('Flatten', [b.op1('GlobalAveragePool', [y], {}, { name: 'pool' })], { axis: A.int(1) }, { name: 'flat' });
  b.op1('Gemm', [p, b.initializer('fc.weight', makeTensor('float32', [10, 4], rnd(40, 1))), b.initializer('fc.bias', f32([10], rnd(10, 0.1)))], { transB: A.int(1) }, { name: 'fc', outputNames: ['logits'] });
  b.output('logits', 'float32', ['N', 10]);
  return { irVersion: 8, opsetImports: [{ domain: '', version: 17 }], producerName: 'test', producerVersion: '0', metadata: {}, graph: b.build() };
}

test('bad inputs give coded errors that say what to do', async () => {
  const model = tinyResNet();
  const set = tinySet(64);
  await assert.rejects(quantize({ model, calib: set, options: { ...FAST, wBits: 5 } }), coded('QUANT_BAD_BITS', /weight bit width 5/));
  await assert.rejects(quantize({ model, calib: set, options: { ...FAST, aBits: 6 } }), coded('QUANT_BAD_BITS', /activation bit width 6.*--a-bits must be 2, 3, 4 or 8/));
  await assert.rejects(quantize({ model, calib: set, options: { ...FAST, overrides: [{ match: 'fc', wBits: 6 }] } }), coded('QUANT_BAD_BITS', /node 'fc'/));
  await assert.rejects(quantize({ model, calib: set, options: { ...FAST, overrides: [{ match: 'fc', aBits: 1 }] } }), coded('QUANT_BAD_BITS', /node 'fc'.*activation bit width 1/));
  await assert.rejects(quantize({ model, calib: undefined as never, options: FAST }), coded('QUANT_CALIB_MISSING', /--calib/));
  await assert.rejects(quantize({ model, calib: { images: new Float32Array(0), dims: [0, 1, 8, 8] }, options: FAST }), coded('QUANT_CALIB_MISSING'));
  await assert.rejects(quantize({ model, calib: tinySet(8), options: { ...FAST, minCalibImages: 32 } }), coded('QUANT_CALIB_TOO_SMALL', /8 calibration images; at least 32/));
  await assert.rejects(quantize({ model, calib: { images: new Float32Array(64 * 100), dims: [64, 1, 10, 10] }, options: FAST }), coded('QUANT_CALIB_MISSING', /preprocess/));
  await assert.rejects(quantize({ model, calib: set, options: { ...FAST, method: 'mse', pem: 1 } }), coded('CONFIG_INVALID', /reconstruction/));
  // an op without a gradient rule inside a block
  const g = model.graph;
  const odd: Model = { ...model, graph: { ...g, nodes: g.nodes.map((n) => (n.name === 'layer2.0.relu1' ? { ...n, opType: 'Softplus' } : n)) } };
  await assert.rejects(quantize({ model: odd, calib: set, options: FAST }), coded('QUANT_NO_GRAD_RULE', /layer2\.0\.relu1.*Softplus.*--method mse/));
  // ...which is fine without reconstruction
  const ok = await quantize({ model: odd, calib: set, options: { ...FAST, method: 'mse' } });
  assert.equal(ok.blocks.length, 0);
});

test('data and options a library caller gets wrong are refused before any work, naming the fix', async () => {
  const model = tinyResNet();
  const set = tinySet(64);
  // a misspelt option would silently run the defaults
  await assert.rejects(quantize({ model, calib: set, options: { ...FAST, iteration: 5 } as QuantizeOptionsInput }), coded('CONFIG_INVALID', /unknown option 'iteration'; valid keys: .*iterations/));
  await assert.rejects(quantize({ model, calib: set, options: { ...FAST, overrides: [{ match: 'fc', wbits: 8 }] } as unknown as QuantizeOptionsInput }), coded('CONFIG_INVALID', /'overrides\.0\.wbits'; valid keys of overrides\.0: match, wBits, aBits, skip/));
  // one NaN would make every statistic NaN and the model useless
  const nan = Float32Array.from(set.images);
  nan[5 * 64 + 3] = Number.NaN;
  await assert.rejects(quantize({ model, calib: { ...set, images: nan }, options: FAST }), coded('DATA_BAD_FORMAT', /calibration image 5 holds NaN at value 3/));
  // decoded bytes instead of preprocessed floats
  await assert.rejects(quantize({ model, calib: { ...set, images: new Uint8Array(set.images.length) as never }, options: FAST }), coded('QUANT_CALIB_MISSING', /Float32Array.*got a Uint8Array.*preprocessBatch/));
  // labels of another numbering would report an accuracy against the wrong classes
  const oneBased = Int32Array.from(set.labels!, (l) => l + 1);
  await assert.rejects(quantize({ model, calib: { ...set, labels: oneBased }, options: FAST }), coded('DATA_BAD_FORMAT', /calibration label 10 at image \d+ is not a class of the model \(0\.\.9\); the labels look 1-based/));
  await assert.rejects(quantize({ model, calib: set, eval: { ...tinySet(16), labels: new Int32Array(16).fill(-1) }, options: FAST }), coded('DATA_BAD_FORMAT', /evaluation label -1 at image 0/));
  // a path where the loaded model belongs
  await assert.rejects(quantize({ model: 'models/x.onnx' as never, calib: set, options: FAST }), coded('QUANT_BAD_MODEL', /loadModel\(path\).*the string 'models\/x\.onnx'/));
});

test('a BN-folded model gets identity BNs after its convs, measured on calibration data', async () => {
  const model = foldedNet();
  const set = tinySet(64);
  const prep = await prepareModel(model, set);
  assert.deepEqual(prep.inserted, ['c1.bn', 'c2.bn', 'c3.bn']);
  assert.deepEqual(prep.bnNodes, prep.inserted);
  const run = async (m: Model) => {
    const s = await createSession(m);
    const out = (await s.run({ input: makeTensor('float32', set.dims, set.images) })).logits!.data as Float32Array;
    await s.release();
    return out;
  };
  const [a, b] = [await run(model), await run(prep.model)];
  let md = 0;
  for (let i = 0; i < a.length; i++) md = Math.max(md, Math.abs(a[i]! - b[i]!));
  assert.ok(md < 1e-4, `prepared model computes the same logits (max diff ${md})`);
  const r = await quantize({ model, calib: set, options: FAST });
  assert.deepEqual([...r.bnNodes], ['c1.bn', 'c2.bn', 'c3.bn']);
  assert.equal(r.model.graph.nodes.filter((n) => n.opType === 'BatchNormalization').length, 3);
  assert.deepEqual(r.manifest.calibration.insertedBn, ['c1.bn', 'c2.bn', 'c3.bn']);
});

test('a Reshape whose shape comes from a Constant node (x.view(-1, 8) in PyTorch) is folded and reconstructs as Flatten does', async () => {
  const net = tinyResNet(2);
  const g = net.graph;
  const viewed: Model = {
    ...net,
    graph: {
      ...g,
      nodes: g.nodes.flatMap((n): Node[] => n.opType !== 'Flatten' ? [n] : [
        { name: 'view_shape', opType: 'Constant', domain: '', inputs: [], outputs: ['view_shape.out'], attrs: { value: A.tensor(i64([2], [-1, 8])) } },
        { name: 'view', opType: 'Reshape', domain: '', inputs: [n.inputs[0]!, 'view_shape.out'], outputs: n.outputs, attrs: {} },
      ]),
    },
  };
  const set = tinySet(32);
  const options = { ...FAST, iterations: 4, reportImages: 8 };
  const r = await quantize({ model: viewed, calib: set, options });
  assert.ok(r.report.blocks.length > 0);
  assert.ok(!r.prepared.graph.nodes.some((n) => n.opType === 'Constant'));
  assert.deepEqual(Array.from(r.prepared.graph.initializers.get('view_shape.out')!.data as BigInt64Array, Number), [-1, 8]);
  // the same network with Flatten quantizes to the same logits
  const flat = await quantize({ model: net, calib: set, options });
  const logits = async (m: Model) => {
    const s = await createSession(m);
    try { return (await s.run({ input: makeTensor('float32', set.dims, set.images) })).logits!.data as Float32Array; } finally { await s.release(); }
  };
  const [a, b] = [await logits(r.model), await logits(flat.model)];
  assert.equal(a.length, 32 * 10);
  a.forEach((v, i) => assert.ok(Math.abs(v - b[i]!) <= 1e-5 * (1 + Math.abs(b[i]!)), `logit ${i}: ${v} with the view, ${b[i]} with Flatten`));
});

test('an interrupted run resumes from its finished blocks and ends where an uninterrupted run ends', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ttaq-quant-'));
  try {
    const model = tinyResNet(4);
    const set = tinySet(48);
    const full = await quantize({ model, calib: set, options: { ...FAST, statePath: join(dir, 'a.json') } });
    const statePath = join(dir, 'b.json');
    let started = 0;
    await assert.rejects(quantize({
      model, calib: set, options: { ...FAST, statePath },
      progress: (e) => { if (e.stage.startsWith('block 3/') && e.done === 1) { started++; throw new Error('interrupted'); } },
    }), /interrupted/);
    assert.equal(started, 1);
    // other options cannot use the unfinished state, and do not overwrite it
    await assert.rejects(quantize({ model, calib: set, options: { ...FAST, seed: 9, statePath } }), coded('STATE_MISMATCH', /unfinished run of another model, other options or other calibration images \(2 of 5 blocks done\)/));
    // nor can other calibration images of the same count: the same images normalised otherwise
    const shifted = { ...set, images: Float32Array.from(set.images, (x) => x + 0.25) };
    await assert.rejects(quantize({ model, calib: shifted, options: { ...FAST, statePath } }), coded('STATE_MISMATCH', /other calibration images \(2 of 5 blocks done\)/));
    const stages: string[] = [];
    const resumed = await quantize({ model, calib: set, options: { ...FAST, statePath }, progress: (e) => stages.push(e.stage) });
    assert.ok(stages.includes('block 1/5 stem (resumed)') && stages.includes('block 2/5 layer1.0 (resumed)'));
    assert.ok(!stages.some((s) => s.startsWith('block 3/5') && s.includes('resumed')));
    for (const [node, v] of full.values.weights) assert.deepEqual(Array.from(resumed.values.weights.get(node)!.codes), Array.from(v.codes), node);
    for (const [value, p] of full.values.acts) assert.equal(resumed.values.acts.get(value)!.scale[0], p.scale[0], value);
    // once finished, the state has served: a run with other options replaces it (as it replaces the model files)
    const other = await quantize({ model, calib: set, options: { ...FAST, seed: 9, statePath } });
    assert.equal(other.report.blocks.length, 5);
    const again: string[] = [];
    await quantize({ model, calib: set, options: { ...FAST, seed: 9, statePath }, progress: (e) => again.push(e.stage) });
    assert.ok(again.includes('block 5/5 fc (resumed)'), 'the state now holds the seed-9 run');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('every method runs end to end on a tiny ResNet (AdaRound and BRECQ quantize the block input always, so its FP copy is not fed)', async () => {
  const model = tinyResNet(4);
  const set = tinySet(32);
  for (const method of METHODS) {
    const r = await quantize({ model, calib: set, options: { ...FAST, method, iterations: 6, workers: 1 } });
    assert.equal(r.report.method, method);
    assert.ok(r.model.graph.nodes.some((n) => n.opType === 'DequantizeLinear'), `${method}: a QDQ model`);
    assert.ok(r.report.accuracy && r.report.accuracy.quantized >= 0, `${method}: accuracy reported`);
  }
});
