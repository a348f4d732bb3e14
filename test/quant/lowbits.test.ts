// Activation widths 2 and 3: the reconstruction's LSQ fake quantizer at 2^b levels (hand-computed,
// run in onnxruntime), and whole-model quantization at W2A2 and W3A3 whose true-width and
// int8-container exports agree and whose quantized activations take at most 2^b values.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeModel, encodeModel } from '../../sdk/onnx/codec.ts';
import { A, GraphBuilder } from '../../sdk/onnx/builder.ts';
import { buildGradientGraph, GradientStep } from '../../sdk/autodiff/index.ts';
import { makeTensor } from '../../sdk/onnx/tensor.ts';
import { getOpset } from '../../sdk/onnx/versions.ts';
import type { Model } from '../../sdk/onnx/types.ts';
import { fakeQuant, makePlan, quantize, type QuantizeResult, type QuantParams } from '../../sdk/quant/index.ts';
import { LSQ_DOMAIN, LSQ_OP, LSQ_OP_RELU, LSQ_OP_Z, lsqFunctions } from '../../sdk/quant/lsq.ts';
import { createSession } from '../../sdk/runtime/index.ts';
import { tinyResNet, tinySet } from './fixtures.ts';
import { isTtaqError } from '../../sdk/errors/index.ts';

const OPSET = 17;

/**
 * Runs the LSQ op (the reconstruction's activation fake quantizer) on x and differentiates
 * loss = Σ w_i·y_i through its gradient rule; returns y, inside, dL/dx and dL/ds.
 */
async function lsq(x: number[], s: number, z: number, bits: number, w: readonly number[], relu?: 'separate' | 'fused'): Promise<{ y: number[]; inside: boolean[]; dx: number[]; ds: number }> {
  const b = new GraphBuilder('lsq');
  const xin = b.input('x', 'float32', [x.length]);
  b.initializer('step', makeTensor('float32', [], Float32Array.of(s)));
  const hi = 2 ** bits - 1;
  // relu: the quantizer of Relu(x), as a Relu node before it or as the fused op reading x
  const xq = relu === 'separate' ? b.op1('Relu', [xin]) : xin;
  const ins = z === 0 ? [xq, 'step', b.scalar(0), b.scalar(hi)] : [xq, 'step', b.scalar(z), b.scalar(0), b.scalar(hi)];
  b.op(relu === 'fused' ? LSQ_OP_RELU : z === 0 ? LSQ_OP : LSQ_OP_Z, ins, {}, { domain: LSQ_DOMAIN, outputNames: ['y', 'inside'] });
  b.op1('ReduceSum', [b.op1('Mul', ['y', b.constant(makeTensor('float32', [x.length], Float32Array.from(w)))])], { keepdims: A.int(0) }, { outputNames: ['loss'] });
  b.output('loss', 'float32', []);
  const model: Model = {
    irVersion: 8, opsetImports: [{ domain: '', version: OPSET }, { domain: LSQ_DOMAIN, version: 1 }], producerName: 'test', producerVersion: '0',
    metadata: {}, graph: b.build(), functions: lsqFunctions(OPSET),
  };
  const xt = makeTensor('float32', [x.length], Float32Array.from(x));
  const gg = await buildGradientGraph({ model, loss: 'loss', wrt: ['x', 'step'], outputs: ['y', 'inside'], sampleFeeds: { x: xt } });
  const step = await GradientStep.create(gg);
  try {
    const r = await step.run(gg.params, { x: xt });
    return {
      y: Array.from(r.outputs.y!.data as Float32Array), inside: Array.from(r.outputs.inside!.data as Uint8Array, (v) => !!v),
      dx: Array.from(r.grads.get('x')!.data as Float32Array), ds: Number(r.grads.get('step')!.data[0]),
    };
  } finally {
    await step.release();
  }
}

/** What dL/dx and dL/ds must be for loss = Σ w·y, from the expected mask and LSQ step factors. */
function checkGrads(r: { dx: number[]; ds: number; inside: boolean[] }, w: readonly number[], dsDy: readonly number[], tol = 1e-5): void {
  near(r.dx, w.map((v, i) => (r.inside[i] ? v : 0)), 'dL/dx = w inside the range, 0 outside');
  near([r.ds], [w.reduce((a, v, i) => a + v * dsDy[i]!, 0)], 'dL/ds = Σ w·ds_dy', tol);
}

const W6 = [1, -2, 0.5, 3, -1.5, 0.25];

const near = (got: readonly number[], want: readonly number[], what: string, tol = 1e-6) =>
  assert.ok(got.length === want.length && got.every((v, i) => Math.abs(v - want[i]!) <= tol), `${what}: [${got.join(', ')}] vs [${want.join(', ')}]`);
const params = (bits: number, symmetric: boolean, s: number, z: number): QuantParams =>
  ({ spec: { bits, signed: false, symmetric }, scale: Float32Array.of(s), zeroPoint: Int32Array.of(z) });

test('LSQ fake quantization at 2 bits, z = 0: four levels, clamping, straight-through mask, LSQ step factor', async () => {
  // x/s = -0.6, 0.4, 0.6, 1.52, 2.5, 4 -> round -1, 0, 1, 2, 2 (half to even), 4 -> clip [0, 3]: 0, 0, 1, 2, 2, 3
  const x = [-0.3, 0.2, 0.3, 0.76, 1.25, 2];
  const r = await lsq(x, 0.5, 0, 2, W6);
  near(r.y, [0, 0, 0.5, 1, 1, 1.5], 'y');
  assert.deepEqual(r.inside, [false, true, true, true, true, false]);
  // dy/ds inside: round(x/s) - x/s; outside: qmin - z = 0 below, qmax - z = 3 above
  checkGrads(r, W6, [0, -0.4, 0.4, 0.48, -0.5, 3]);
  near(Array.from(fakeQuant(x, [6], params(2, true, 0.5, 0))), r.y, 'JS quantizer = onnxruntime');
});

test('the fused Relu + LSQ quantizer = Relu, then LSQ: values and both gradients, to the bit', async () => {
  // x/s = -1.2, -0.4, -0.2, 0, 0.2, 0.6, 1.52, 2.5, 4: the values in (-s/2, 0) round to 0 inside the
  // range, so the quantizer alone would pass their gradient; the Relu before it must not
  const x = [-0.6, -0.2, -0.1, 0, 0.1, 0.3, 0.76, 1.25, 2];
  const w = [1, -2, 0.5, 3, -1.5, 0.25, 2, -1, 0.75];
  const separate = await lsq(x, 0.5, 0, 2, w, 'separate');
  const fused = await lsq(x, 0.5, 0, 2, w, 'fused');
  // equal values up to the sign of zero (the fused op's y is -0 where x in (-s/2, 0) rounds to -0;
  // the Relu's masked gradient is -0 where the upstream gradient is negative)
  const signless = (v: readonly number[]) => v.map((e) => e + 0);
  assert.deepEqual(signless(fused.y), signless(separate.y));
  assert.deepEqual(signless(fused.dx), signless(separate.dx));
  assert.equal(fused.ds, separate.ds);
  near(fused.dx, [0, 0, 0, 0, -1.5, 0.25, 2, -1, 0], 'dL/dx: only x > 0 inside the range');
  const alone = await lsq(x, 0.5, 0, 2, w);
  assert.notDeepEqual(alone.dx, fused.dx, 'without the Relu, x in (-s/2, 0] passes its gradient');
});

test('LSQ fake quantization at 2 bits with a zero point: levels s*(q - z) for q in 0..3', async () => {
  // s = 1, z = 1: x/s rounds to -2, -1, -0, 0, 2, 3; + z -> -1, 0, 1, 1, 3, 4; clip [0, 3] -> 0, 0, 1, 1, 3, 3; y = c - z
  const x = [-2, -1.4, -0.5, 0.5, 1.5, 2.6];
  const r = await lsq(x, 1, 1, 2, W6);
  near(r.y, [-1, -1, 0, 0, 2, 2], 'y');
  assert.deepEqual(r.inside, [false, true, true, true, true, false]);
  checkGrads(r, W6, [-1, 0.4, 0.5, -0.5, 0.5, 2]);
  near(Array.from(fakeQuant(x, [6], params(2, false, 1, 1))), r.y, 'JS quantizer = onnxruntime');
});

test('LSQ fake quantization at 3 bits with a zero point: eight levels from -0.75 to 1', async () => {
  // s = 0.25, z = 3: x/s = -4, -2.8, -0.4, 1.2, 3.5, 4.8 -> round -4, -3, 0, 1, 4, 5; + z -> -1, 0, 3, 4, 7, 8
  // -> clip [0, 7]: 0, 0, 3, 4, 7, 7 -> y = 0.25 * (c - 3)
  const x = [-1, -0.7, -0.1, 0.3, 0.875, 1.2];
  const r = await lsq(x, 0.25, 3, 3, W6);
  near(r.y, [-0.75, -0.75, 0, 0.25, 1, 1], 'y');
  assert.deepEqual(r.inside, [false, true, true, true, true, false]);
  checkGrads(r, W6, [-3, -0.2, 0.4, -0.2, 0.5, 4]);
  near(Array.from(fakeQuant(x, [6], params(3, false, 0.25, 3))), r.y, 'JS quantizer = onnxruntime');
  // a dense sweep lands on exactly the 8 levels
  const sweep = Array.from({ length: 201 }, (_, i) => -2 + i * 0.02);
  const levels = new Set((await lsq(sweep, 0.25, 3, 3, sweep.map(() => 1))).y);
  assert.deepEqual([...levels].sort((a, b) => a - b), [-0.75, -0.5, -0.25, 0, 0.25, 0.5, 0.75, 1]);
});

test('per-node overrides accept activation widths 2 and 3', () => {
  const model = tinyResNet();
  const plan = makePlan(model.graph, { wBits: 4, aBits: 4, overrides: [{ match: 'layer1\\.0\\.conv2', aBits: 2 }, { match: 'layer2\\.0\\.conv2', aBits: 3 }] });
  const bitsOf = (consumer: string) => plan.acts.find((a) => a.consumers.includes(consumer))!.spec.bits;
  assert.equal(bitsOf('layer1.0.conv2'), 2);
  assert.equal(bitsOf('layer2.0.conv2'), 3);
  assert.equal(bitsOf('layer1.0.conv1'), 4);
  // an override that names no weighted node is refused with names to choose from, not ignored
  for (const match of ['layer1.0.cnv2', 'nosuchnode']) {
    assert.throws(() => makePlan(model.graph, { wBits: 4, aBits: 4, overrides: [{ match, wBits: 2 }] }),
      (e: unknown) => isTtaqError(e) && e.code === 'CONFIG_INVALID' && e.message.includes(`override '${match}' matches none of the`) && /layer1\.0\.conv2|stem/.test(e.message));
  }
});

/** Logits plus the dequantized outputs of every activation quantizer of width `bits`, as extra graph outputs. */
async function runWithActs(m: Model, r: QuantizeResult, bits: number, x: Float32Array, dims: readonly number[]): Promise<{ logits: Float32Array; acts: Map<string, Float32Array> }> {
  const g = m.graph;
  const producer = new Map(g.nodes.flatMap((n) => n.outputs.map((o) => [o, n] as const)));
  const taps = new Map<string, string>();
  for (const site of r.plan.acts.filter((a) => a.spec.bits === bits)) {
    const dq = g.nodes.find((n) => n.opType === 'DequantizeLinear' && producer.get(n.inputs[0]!)?.opType === 'QuantizeLinear' && n.inputs[1]!.startsWith(`${site.value}_scale`));
    assert.ok(dq, `a Q/DQ pair for '${site.value}'`);
    taps.set(site.value, dq.outputs[0]!);
  }
  const tapped: Model = { ...m, graph: { ...g, outputs: [...g.outputs, ...[...taps.values()].map((name) => ({ name, dtype: 'float32' as const }))] } };
  const s = await createSession(tapped);
  try {
    const out = await s.run({ input: makeTensor('float32', dims, x) });
    return {
      logits: Float32Array.from(out.logits!.data as Float32Array),
      acts: new Map([...taps].map(([v, o]) => [v, Float32Array.from(out[o]!.data as Float32Array)])),
    };
  } finally {
    await s.release();
  }
}

for (const [bits, method] of [[2, 'minmax'], [3, 'minmax'], [2, 'qdrop'], [3, 'qdrop']] as const) {
  test(`W${bits}A${bits} ${method}: true-width and int8-container exports agree; quantized activations take at most ${2 ** bits} values`, async () => {
    const model = tinyResNet(3);
    const set = tinySet(48);
    const r = await quantize({
      model, calib: set,
      options: { wBits: bits, aBits: bits, method, minCalibImages: 16, reportImages: 0, actImages: 32, ...(method === 'qdrop' ? { iterations: 15, batch: 8 } : {}) },
    });
    const low = r.plan.acts.filter((a) => a.spec.bits === bits);
    assert.ok(low.length >= 3, `${low.length} activation quantizers at ${bits} bit`);
    // true width: 2-bit activations in UINT2 (opset 25), 3-bit in UINT4 behind a Clip to the 8 levels
    assert.equal(getOpset(r.model), bits === 2 ? 25 : 21);
    const zps = [...r.model.graph.initializers].filter(([k]) => low.some((a) => k.startsWith(`${a.value}_zero_point`))).map(([, t]) => t.dtype);
    assert.ok(zps.length === low.length && zps.every((d) => d === (bits === 2 ? 'uint2' : 'uint4')), `activation zero points ${zps.join(',')}`);
    const clamps = (m: Model, op: string) => m.graph.nodes.filter((n) => n.opType === op && low.some((a) => n.name.startsWith(`${a.value}_clip`))).length;
    // true width: a clamp only where the container is wider, as Max+Min (a Clip before a sub-byte
    // QuantizeLinear trips onnxruntime's ClipQuantFusion); int8 container: a Clip before every one
    assert.deepEqual([clamps(r.model, 'Clip'), clamps(r.model, 'Max'), clamps(r.model, 'Min')], bits === 2 ? [0, 0, 0] : [0, low.length, low.length]);
    assert.deepEqual([clamps(r.int8Model, 'Clip'), clamps(r.int8Model, 'Max')], [low.length, 0]);
    if (method === 'qdrop') {
      const rec = r.report.blocks.filter((b) => b.iterations > 0);
      assert.ok(rec.length >= 3 && rec.every((b) => Number.isFinite(b.mseAfter)), 'blocks were reconstructed');
      assert.deepEqual(r.report.reconstruction, { preset: 'default', iterationsPerBlock: 15, pem: 0, pcr: 0, slices: 1 });
    } else {
      assert.equal(r.report.reconstruction, null);
    }

    const back = decodeModel(encodeModel(r.model));
    assert.ok(back.ok);
    const n = 16;
    const x = set.images.subarray(0, n * 64);
    const tw = await runWithActs(back.value, r, bits, x, [n, 1, 8, 8]);
    const i8 = await runWithActs(r.int8Model, r, bits, x, [n, 1, 8, 8]);
    let maxDiff = 0;
    for (let i = 0; i < tw.logits.length; i++) maxDiff = Math.max(maxDiff, Math.abs(tw.logits[i]! - i8.logits[i]!));
    assert.ok(maxDiff <= 1e-5, `true-width vs int8-container logits: max diff ${maxDiff}`);
    const argmax = (l: Float32Array) => Array.from({ length: n }, (_, i) => { const row = Array.from(l.subarray(i * 10, i * 10 + 10)); return row.indexOf(Math.max(...row)); });
    assert.deepEqual(argmax(tw.logits), argmax(i8.logits), 'identical predictions');
    for (const site of low) {
      const p = r.values.acts.get(site.value)!;
      for (const [variant, acts] of [['true-width', tw.acts], ['int8-container', i8.acts]] as const) {
        const v = acts.get(site.value)!;
        const distinct = new Set(v);
        assert.ok(distinct.size <= 2 ** bits, `${variant} '${site.value}': ${distinct.size} distinct values > ${2 ** bits}`);
        // every value is one of the levels s·(q − z), q in 0..2^b − 1
        const levels = new Set(Array.from({ length: 2 ** bits }, (_, q) => Math.fround(p.scale[0]! * (q - p.zeroPoint[0]!))));
        for (const d of distinct) assert.ok(levels.has(d), `${variant} '${site.value}': ${d} is not a level of s=${p.scale[0]} z=${p.zeroPoint[0]}`);
      }
      assert.ok(new Set(tw.acts.get(site.value)!).size >= 2, `'${site.value}' uses more than one level`);
      assert.deepEqual(Array.from(tw.acts.get(site.value)!), Array.from(i8.acts.get(site.value)!), `'${site.value}' equal in both variants`);
    }
  });
}
