// The reconstruction graph's formulations: the default one (fed random numbers, decomposed
// log-softmax, LSQ fake quantization as one op with its own gradient) and PCR batched with the
// clean pass compute the same loss and gradients as the original one (LogSoftmax, Div/Round/Clip/Mul
// differentiated op by op, PCR as a second copy of the block).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildGradientGraph, CONV_TRANSPOSE_MAX_INPUT_CHANNELS, GradientStep } from '../../sdk/autodiff/index.ts';
import { makeTensor } from '../../sdk/onnx/tensor.ts';
import type { Graph, Node, Tensor } from '../../sdk/onnx/types.ts';
import {
  blockGraph, buildReconGraph, calibrateModel, hardCodes, initialV, makePlan, nodeV, partitionBlocks, perSampleNodes, quantizedBlock, type ReconFormulation,
} from '../../sdk/quant/index.ts';
import { createSession } from '../../sdk/runtime/index.ts';
import { buildNet } from '../../sdk/nn/index.ts';
import { fakeQuantModel, RandomPool, runOver } from '../../sdk/quant/recon.ts';
import { tinyResNet, tinySet } from './fixtures.ts';

const B = 8;

async function gradsOf(formulation: ReconFormulation, feedsSeed: number, blockIndex = 2, roundWeight = 0.01) {
  const model = tinyResNet(4);
  const set = tinySet(32);
  const plan = makePlan(model.graph, { wBits: 4, aBits: 4 });
  const blocks = partitionBlocks(model.graph, new Set(plan.weights.map((w) => w.node)));
  const block = blocks[blockIndex]!; // 2: stride-2 block with projection shortcut; 0: stem (asymmetric 8-bit input)
  let x: { data: Float32Array; dims: number[] } = { data: set.images, dims: [...set.dims] };
  for (const b of blocks.slice(0, blockIndex)) x = await runOver({ ...model, graph: blockGraph(model.graph, b) }, b.input, b.output, x.data, x.dims);
  const y = await runOver({ ...model, graph: blockGraph(model.graph, block) }, block.input, block.output, x.data, x.dims);
  const cal = await calibrateModel(model, plan, set, { weight: { method: 'minmax' }, act: 'minmax' });
  const nodes = new Set(block.nodes);
  const sites = { weights: plan.weights.filter((w) => nodes.has(w.node)), acts: plan.acts.filter((a) => a.consumers.some((c) => nodes.has(c))) };
  const wInit = new Map(sites.weights.map((w) => {
    const p = cal.values.weights.get(w.node)!.params;
    return [w.node, { params: p, ...initialV(model.graph.initializers.get(w.weight)!.data as Float32Array, w.dims, p) }] as const;
  }));
  const aInit = new Map(sites.acts.map((a) => [a.value, cal.values.acts.get(a.value)!]));
  const rg = buildReconGraph(model, block, sites, wInit, aInit, x.dims, y.dims, {
    inputQuantProb: 0.5, learnActs: true, batch: B, seed: 5, formulation,
    pem: { weight: 0.5, coef: new Map(sites.weights.map((w) => [w.node, 2])) },
    pcr: { weight: 3, gamma: 0.3, temperature: 2 },
  });
  const xShape = [B, ...x.dims.slice(1)];
  const n = xShape.reduce((a, b) => a * b, 1);
  const mask = RandomPool.bernoulli(n, 0.5, feedsSeed).next();
  const noise = RandomPool.normal(n, feedsSeed + 1).next();
  const per = n / B;
  const feeds: Record<string, Tensor> = {
    [rg.inputs.xq!]: makeTensor('float32', xShape, x.data.map((v, i) => v + 0.05 * Math.sin(i)).subarray(0, n)),
    [rg.inputs.xfp]: makeTensor('float32', xShape, x.data.subarray(per, per + n)),
    [rg.inputs.y]: makeTensor('float32', [B, ...y.dims.slice(1)], y.data.subarray(0, B * (y.data.length / y.dims[0]!))),
    [rg.inputs.beta]: makeTensor('float32', [], Float32Array.of(8)),
    [rg.inputs.roundWeight]: makeTensor('float32', [], Float32Array.of(roundWeight)),
  };
  assert.ok(rg.inputs.mask && rg.inputs.noise, 'random numbers are fed');
  feeds[rg.inputs.mask] = makeTensor('bool', xShape, mask);
  feeds[rg.inputs.noise] = makeTensor('float32', xShape, noise);
  const parts = Object.values(rg.parts).filter((v): v is string => !!v);
  const gg = await buildGradientGraph({
    model: rg.model, loss: rg.loss, wrt: [...new Set(rg.vParams.values()), ...rg.stepParams.values()], outputs: parts,
    stopGradient: rg.stopGradient, sampleBatch: B, sampleFeeds: feeds,
  });
  const step = await GradientStep.create(gg, { session: { intraOpThreads: 1 } });
  try {
    const r = await step.run(new Map(gg.params), feeds);
    // V's gradients per weighted node (formulations differ in whether the nodes share one V)
    const vNames = new Set(rg.vParams.values());
    const grads = new Map([...r.grads].filter(([k]) => !vNames.has(k)).map(([k, t]) => [k, Float32Array.from(t.data as Float32Array)]));
    for (const [node, v] of rg.vParams) grads.set(`V of ${node}`, Float32Array.from(nodeV(rg, r.grads.get(v)!.data as Float32Array, node)));
    return { rg, model: gg.model, loss: r.loss, parts: parts.map((p) => Number(r.outputs[p]!.data[0])), grads };
  } finally {
    await step.release();
  }
}

test('fast reconstruction graph = original formulation (loss, its parts, gradients)', async () => {
  const slow = await gradsOf({ random: 'fed', pcrPass: 'separate', logSoftmax: 'op', lsq: 'ops', square: 'mul', pcrEntry: 'copy', roundReg: 'pow', adaround: 'ops' }, 11);
  const fast = await gradsOf({}, 11);
  const batched = await gradsOf({ pcrPass: 'batched' }, 11);
  assert.equal(fast.rg.pcrBatched, false);
  // PCR's linear entry: one input gradient per strided entry conv instead of two (a ConvTranspose
  // for the 1x1 shortcut, the phase form's Concat of row phases for the 3x3 conv1)
  const count = (g: typeof fast, op: string) => g.model.graph.nodes.filter((n) => n.opType === op).length;
  const inputGrads = (g: typeof fast) => count(g, 'ConvTranspose') + g.model.graph.nodes.filter((n) => n.opType === 'Concat' && n.name.includes('grad_input_phase_rows')).length;
  assert.equal(inputGrads(fast), inputGrads(slow) - 2, 'conv1 and the shortcut differentiate x_in once');
  assert.equal(count(fast, 'ConvTranspose'), 1, 'the 1x1 shortcut keeps its ConvTranspose');
  assert.ok(count(fast, 'ReduceSumSquare') > 0 && count(slow, 'ReduceSumSquare') === 0);
  assert.equal(batched.rg.pcrBatched, true, 'a ResNet block can run PCR batched');
  assert.ok(fast.rg.model.graph.nodes.some((n) => n.opType === 'LsqFakeQuant') && !slow.rg.model.graph.nodes.some((n) => n.opType === 'LsqFakeQuant'));
  // AdaRound as one op over the block's V concatenated (three weighted convs: one V parameter)
  assert.equal(fast.rg.model.graph.nodes.filter((n) => n.opType === 'AdaRoundWeights').length, 1);
  assert.equal(new Set(fast.rg.vParams.values()).size, 1);
  assert.equal(new Set(slow.rg.vParams.values()).size, 3);
  for (const f of [fast, batched]) compare(f, slow);
  // the stem's input quantizer is asymmetric (zero point != 0)
  const stemSlow = await gradsOf({ random: 'fed', logSoftmax: 'op', lsq: 'ops', square: 'mul', pcrEntry: 'copy', roundReg: 'pow', adaround: 'ops' }, 12, 0);
  const stemFast = await gradsOf({}, 12, 0);
  assert.ok(stemFast.rg.model.graph.nodes.some((n) => n.opType === 'LsqFakeQuantZ'), 'the zero-point form is used');
  compare(stemFast, stemSlow);
});

test('a quantized Relu is read through one fused quantizer: the same loss and gradients, and no Relu where only quantizers read it', async () => {
  const separate = await gradsOf({ reluQuant: 'separate' }, 13);
  const fused = await gradsOf({}, 13);
  const count = (g: typeof fused, op: string) => g.rg.model.graph.nodes.filter((n) => n.opType === op).length;
  // the block's two Relus feed the activation quantizer of conv2 and the block output; with PCR on,
  // the clean output is also read unquantized, so that Relu stays (and its copy in the noise pass)
  assert.ok(count(fused, 'ReluLsqFakeQuant') >= 1, 'the fused op is used');
  assert.ok(count(fused, 'Relu') < count(separate, 'Relu'), `Relus: fused ${count(fused, 'Relu')} vs separate ${count(separate, 'Relu')}`);
  assert.equal(count(separate, 'ReluLsqFakeQuant'), 0);
  compare(fused, separate);
});

test("AdaRound's regulariser as Exp/Log = as Pow(Abs) = the one-op form, where it dominates the rounding gradients", async () => {
  const pow = await gradsOf({ roundReg: 'pow', adaround: 'ops' }, 14, 2, 1e4);
  const explog = await gradsOf({ adaround: 'ops' }, 14, 2, 1e4);
  const fn = await gradsOf({}, 14, 2, 1e4);
  const ops = (g: typeof pow) => new Set(g.rg.model.graph.nodes.map((n) => n.opType));
  assert.ok(ops(pow).has('Pow') && !ops(explog).has('Pow') && ops(explog).has('Exp'));
  assert.ok(ops(fn).has('AdaRoundWeights') && !ops(fn).has('Pow') && !ops(fn).has('Sigmoid'));
  assert.ok(pow.parts[1]! > 1, `the rounding term is active: ${pow.parts[1]}`);
  compare(explog, pow);
  compare(fn, pow);
});

test('input gradients in the step graph: ConvTranspose at stride 1 only from at most 4 channels, where it beats the Conv form', async () => {
  // sdk/quant/recon.ts used to pass the step graph through sdk/adapt's stride-1 ConvTranspose->Conv
  // rewrite; sdk/autodiff now picks each form itself (chooseConvGrad): a Conv at stride 1 unless the
  // forward conv reads at most CONV_TRANSPOSE_MAX_INPUT_CHANNELS channels (the tiny net's layer1 has
  // 4), the phase form or ConvTranspose when strided.
  const strides = (g: Awaited<ReturnType<typeof gradsOf>>) => g.model.graph.nodes.filter((n) => n.opType === 'ConvTranspose').map((n) => {
    const s = n.attrs.strides;
    return s && s.kind === 'ints' ? Math.max(...s.value) : 1;
  });
  assert.equal(CONV_TRANSPOSE_MAX_INPUT_CHANNELS, 4);
  const stride1 = await gradsOf({}, 13, 1); // layer1.0: stride-1 convs on 4 channels
  assert.ok(stride1.model.graph.nodes.filter((n) => n.opType === 'Conv').length > 4, 'convs in the step graph');
  assert.ok(strides(stride1).length > 0 && strides(stride1).every((s) => s === 1), `stride-1 ConvTransposes on 4 channels: ${strides(stride1).join(', ')}`);
  const strided = await gradsOf({}, 13, 2); // layer2.0: stride-2 conv1 and shortcut, conv2 on 8 channels
  assert.ok(strides(strided).every((s) => s > 1), `only strided ConvTransposes: ${strides(strided).join(', ')}`);
});

function compare(fast: Awaited<ReturnType<typeof gradsOf>>, slow: Awaited<ReturnType<typeof gradsOf>>): void {
  assert.ok(fast.parts[3]! > 1e-4, `PCR term is active: ${fast.parts[3]}`);
  const close = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) <= 1e-4 * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);
  close(fast.loss, slow.loss, 'loss');
  fast.parts.forEach((v, i) => close(v, slow.parts[i]!, `loss part ${i}`));
  assert.deepEqual([...fast.grads.keys()].sort(), [...slow.grads.keys()].sort());
  for (const [k, g] of slow.grads) {
    const f = fast.grads.get(k)!;
    let err = 0;
    let mag = 0;
    for (let i = 0; i < g.length; i++) { err = Math.max(err, Math.abs(f[i]! - g[i]!)); mag = Math.max(mag, Math.abs(g[i]!)); }
    assert.ok(mag > 0, `gradient of ${k} is not all zero`);
    assert.ok(err <= 1e-3 * mag, `gradient of ${k}: max difference ${err} vs max magnitude ${mag}`);
  }
}

test('random pools: windows have the distribution and differ from step to step', () => {
  const n = 100_000;
  const bern = RandomPool.bernoulli(n, 0.3, 7);
  const a = bern.next();
  const b = bern.next();
  const mean = (v: ArrayLike<number>) => { let s = 0; for (let i = 0; i < v.length; i++) s += v[i]!; return s / v.length; };
  assert.equal(a.length, n);
  assert.ok(Math.abs(mean(a) - 0.3) < 0.01, `mask mean ${mean(a)}`);
  let same = 0;
  for (let i = 0; i < n; i++) same += a[i] === b[i] ? 1 : 0;
  // independent Bernoulli(0.3) pairs agree with probability 0.58
  assert.ok(Math.abs(same / n - 0.58) < 0.02, `consecutive masks agree on ${same / n} of the elements`);
  const norm = RandomPool.normal(n, 8).next();
  const m = mean(norm);
  let v = 0;
  for (let i = 0; i < n; i++) v += (norm[i]! - m) ** 2;
  assert.ok(Math.abs(m) < 0.02 && Math.abs(Math.sqrt(v / n) - 1) < 0.02, `noise mean ${m}, std ${Math.sqrt(v / n)}`);
});

test('perSampleNodes: inference blocks yes, batch-coupling ops no', () => {
  const model = tinyResNet();
  const g = model.graph;
  const nodes = g.nodes;
  assert.equal(perSampleNodes(nodes, g), true, 'conv, BN, ReLU, Add, pooling, Flatten, Gemm');
  const bn = nodes.find((n) => n.opType === 'BatchNormalization')!;
  const training: Node = { ...bn, attrs: { ...bn.attrs, training_mode: { kind: 'int', value: 1 } } as Node['attrs'] };
  assert.equal(perSampleNodes([training], g), false);
  const shape = makeTensor('int64', [2], BigInt64Array.of(8n, -1n));
  const g2: Graph = { ...g, initializers: new Map([...g.initializers, ['fixed_shape', shape]]) };
  const reshape: Node = { name: 'r', opType: 'Reshape', domain: '', inputs: ['x', 'fixed_shape'], outputs: ['y'], attrs: {} };
  assert.equal(perSampleNodes([reshape], g2), false);
  const g3: Graph = { ...g, initializers: new Map([...g.initializers, ['flat_shape', makeTensor('int64', [2], BigInt64Array.of(0n, -1n))]]) };
  assert.equal(perSampleNodes([{ ...reshape, inputs: ['x', 'flat_shape'] }], g3), true);
  assert.equal(perSampleNodes([{ ...reshape, opType: 'ReduceMean' }], g), false);
});

test('with the whole input quantized and hard rounding, the step graph is the exported block (shortcuts too; steps learned by either block)', async () => {
  // A shortcut reads the block input without its quantizer in the export (only quantized
  // consumers are rewired to the DequantizeLinear); the step graph must do the same. With the
  // steps learned by the producing block, the input quantizer's output comes precomputed and the
  // error is measured after the output quantizer.
  const mobile = buildNet({ arch: 'mobilenet', mobilenet: { stemChannels: 4, stages: [{ t: 2, c: 8, n: 2, s: 1 }], lastChannels: 16 }, height: 8, width: 8, seed: 3 }, 'infer').model;
  for (const [model, owner] of [[tinyResNet(4), 'consumer'], [mobile, 'consumer'], [tinyResNet(4), 'producer'], [mobile, 'producer']] as const) {
    const set = tinySet(16);
    const plan = makePlan(model.graph, { wBits: 4, aBits: 4 });
    const blocks = partitionBlocks(model.graph, new Set(plan.weights.map((w) => w.node)));
    const cal = await calibrateModel(model, plan, set, { weight: { method: 'minmax' }, act: 'minmax' });
    let shortcuts = 0;
    let x: { data: Float32Array; dims: number[] } = { data: set.images, dims: [...set.dims] };
    for (const block of blocks) {
      const nodes = new Set(block.nodes);
      const sites = { weights: plan.weights.filter((w) => nodes.has(w.node)), acts: plan.acts.filter((a) => a.consumers.some((c) => nodes.has(c))) };
      const outputSite = owner === 'producer' ? plan.acts.find((a) => a.value === block.output && !a.consumers.some((c) => nodes.has(c))) : undefined;
      const inSite = sites.acts.find((a) => a.value === block.input);
      const learnInputStep = owner === 'consumer' || !inSite || inSite.isNetworkInput;
      // V = ±10 makes h exactly 0 or 1: round to nearest
      const wInit = new Map(sites.weights.map((w) => {
        const p = cal.values.weights.get(w.node)!.params;
        const init = initialV(model.graph.initializers.get(w.weight)!.data as Float32Array, w.dims, p);
        return [w.node, { params: p, floor: init.floor, v: init.v.map((v) => (v > 0 ? 10 : -10)) }] as const;
      }));
      const weights = new Map(cal.values.weights);
      for (const w of sites.weights) {
        const i = wInit.get(w.node)!;
        weights.set(w.node, { params: i.params, codes: hardCodes(i.floor, i.v, w.dims, i.params) });
      }
      const exported = await runOver(quantizedBlock(model, block, { plan, weights, acts: cal.values.acts }), block.input, block.output, x.data, x.dims);
      const aInit = new Map([...sites.acts, ...(outputSite ? [outputSite] : [])].map((a) => [a.value, cal.values.acts.get(a.value)!]));
      const rg = buildReconGraph(model, block, sites, wInit, aInit, x.dims, exported.dims, { inputQuantProb: 0.5, learnActs: true, batch: 16, seed: 1, learnInputStep, ...(outputSite ? { outputSite } : {}) });
      assert.equal(!!rg.inputs.xqHat, !learnInputStep, `${block.name}: the input quantizer precomputed exactly when its step is fixed`);
      const fake = async (v: string, data: { data: Float32Array; dims: number[] }) => {
        const m = fakeQuantModel(model, cal.values.acts.get(v)!, data.dims);
        return (await runOver(m, 'x', m.graph.outputs[0]!.name, data.data, data.dims)).data;
      };
      const target = outputSite ? await fake(outputSite.value, exported) : exported.data;
      const g = rg.model.graph;
      // a reader of where(mask, x_q, x_fp): the block input without its quantizer
      if (g.nodes.some((n) => n.opType === 'Add' && n.inputs.some((i) => g.nodes.some((p) => p.opType === 'Where' && p.outputs.includes(i) && p.inputs.includes(rg.inputs.xq ?? '-'))))) shortcuts++;
      const s = await createSession(rg.model, { source: 'test' });
      try {
        const out = await s.run({
          ...(rg.inputs.xq ? { [rg.inputs.xq]: makeTensor('float32', x.dims, x.data) } : {}),
          ...(rg.inputs.xqHat ? { [rg.inputs.xqHat]: makeTensor('float32', x.dims, await fake(block.input, x)) } : {}),
          [rg.inputs.xfp]: makeTensor('float32', x.dims, x.data.map((v) => v + 1)), // never chosen
          [rg.inputs.y]: makeTensor('float32', exported.dims, target),
          [rg.inputs.beta]: makeTensor('float32', [], Float32Array.of(2)),
          [rg.inputs.roundWeight]: makeTensor('float32', [], Float32Array.of(0)),
          [rg.inputs.mask!]: makeTensor('bool', x.dims, new Uint8Array(x.data.length).fill(1)),
        }, [rg.parts.rec]);
        const rec = Number(out[rg.parts.rec]!.data[0]);
        let energy = 0;
        for (const v of target) energy += v * v;
        assert.ok(rec <= 1e-9 * (energy / 16), `${block.name}: reconstruction error ${rec} against the exported block (output energy ${energy / 16} per image)`);
      } finally {
        await s.release();
      }
      x = exported;
    }
    assert.equal(shortcuts, 1, `${model.graph.name}: one identity shortcut (ResNet layer1.0, MobileNet's second inverted residual)`);
  }
});
