import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Model } from '../../sdk/onnx/types.ts';
import {
  blockGraph, calibrateModel, makePlan, measurePerturbation, partitionBlocks, reconstructBlock, RECON_CONV_GRAD, type Block, type QuantPlan, type ReconOptions,
} from '../../sdk/quant/index.ts';
import { runOver } from '../../sdk/quant/recon.ts';
import { chooseConvGrad, type ConvCase } from '../../sdk/autodiff/index.ts';
import { tinyResNet, tinySet } from './fixtures.ts';

const BASE: ReconOptions = {
  iterations: 120, batch: 16, inputQuantProb: 0.5, learnActs: true, lrV: 1e-2, lrStep: 1e-3, roundWeight: 0.01,
  betaStart: 20, betaEnd: 2, warmup: 0.2, seed: 3,
};

interface Setup { model: Model; plan: QuantPlan; block: Block; caches: { xfp: Float32Array; xq: Float32Array; dims: number[] } }

async function setup(wBits = 2): Promise<Setup> {
  const model = tinyResNet(2);
  const set = tinySet(64);
  const plan = makePlan(model.graph, { wBits, aBits: 4 });
  const blocks = partitionBlocks(model.graph, new Set(plan.weights.map((w) => w.node)));
  const stem = blocks[0]!;
  const x = await runOver({ ...model, graph: blockGraph(model.graph, stem) }, stem.input, stem.output, set.images, set.dims);
  return { model, plan, block: blocks[1]!, caches: { xfp: x.data, xq: x.data, dims: x.dims } };
}

async function runBlock(s: Setup, method: 'minmax' | 'lp', opts: Partial<ReconOptions>) {
  const set = tinySet(64);
  const cal = await calibrateModel(s.model, s.plan, set, method === 'minmax' ? { weight: { method: 'minmax' }, act: 'minmax' } : { weight: { method: 'lp' }, act: 'mse', actImages: 64 });
  const values = { weights: new Map(cal.values.weights), acts: new Map(cal.values.acts) };
  const nodes = new Set(s.block.nodes);
  const sites = { weights: s.plan.weights.filter((w) => nodes.has(w.node)), acts: s.plan.acts.filter((a) => a.consumers.some((c) => nodes.has(c))) };
  const r = await reconstructBlock(s.model, s.block, sites, values, s.plan, s.caches, { ...BASE, ...opts }, () => {}, 'test');
  return { report: r.report, values, sites };
}

test('blocks of a ResNet: stem, one region per residual block, head', async () => {
  const model = tinyResNet();
  const plan = makePlan(model.graph, { wBits: 4, aBits: 4 });
  const blocks = partitionBlocks(model.graph, new Set(plan.weights.map((w) => w.node)));
  assert.deepEqual(blocks.map((b) => b.name), ['stem', 'layer1.0', 'layer2.0', 'layer3.0', 'fc']);
  assert.deepEqual(blocks.map((b) => b.input), ['input', 'stem.relu.out', 'layer1.0.relu2.out', 'layer2.0.relu2.out', 'layer3.0.relu2.out']);
  assert.deepEqual(blocks[2]!.weighted, ['layer2.0.conv1', 'layer2.0.conv2', 'layer2.0.shortcut.conv']);
  assert.equal(blocks[4]!.output, 'logits');
  assert.ok(blocks[4]!.nodes.includes('pool'), 'pooling joins the head');
});

test('reconstruction of a 2-bit block ends with lower block MSE than MinMax and than nearest rounding', async () => {
  const s = await setup(2);
  const mm = await runBlock(s, 'minmax', { iterations: 0 });
  const rec = await runBlock(s, 'lp', {});
  assert.ok(rec.report.mseAfter < rec.report.mseBefore, `after ${rec.report.mseAfter} < nearest ${rec.report.mseBefore}`);
  assert.ok(rec.report.mseAfter < mm.report.mseAfter * 0.9, `after ${rec.report.mseAfter} < 0.9 x MinMax ${mm.report.mseAfter}`);
});

test('PEM and PCR change the result and vanish at weight 0', async () => {
  const s = await setup(2);
  const set = tinySet(64);
  const pem = await measurePerturbation(s.model, s.plan, set, { perturbations: [{ kind: 'noise', strength: 0.3 }] });
  // Gaussian noise of 0.3 x std at the input: rho of the first layer ~ 0.09
  const rho0 = pem.get('stem.conv')!.rho;
  assert.ok(Math.abs(rho0 - 0.09) < 0.015, `stem rho ${rho0}`);
  assert.ok([...pem.values()].every((v) => v.coef > 0 && Number.isFinite(v.coef)));
  const coef = new Map([...pem].map(([k, v]) => [k, v.coef]));
  const codesOf = (r: Awaited<ReturnType<typeof runBlock>>) => r.sites.weights.map((w) => Array.from(r.values.weights.get(w.node)!.codes)).flat();
  const stepsOf = (r: Awaited<ReturnType<typeof runBlock>>) => r.sites.acts.map((a) => r.values.acts.get(a.value)!.scale[0]);
  const base = await runBlock(s, 'lp', { iterations: 60 });
  const pem0 = await runBlock(s, 'lp', { iterations: 60, pem: { weight: 0, coef } });
  const pcr0 = await runBlock(s, 'lp', { iterations: 60, pcr: { weight: 0, gamma: 0.1, temperature: 1 } });
  assert.deepEqual(codesOf(pem0), codesOf(base));
  assert.deepEqual(stepsOf(pem0), stepsOf(base));
  assert.deepEqual(codesOf(pcr0), codesOf(base));
  assert.deepEqual(stepsOf(pcr0), stepsOf(base));
  const pemOn = await runBlock(s, 'lp', { iterations: 60, pem: { weight: 50, coef } });
  const pcrOn = await runBlock(s, 'lp', { iterations: 60, pcr: { weight: 50, gamma: 0.1, temperature: 1 } });
  const diff = (a: number[], b: number[]) => a.reduce((n, v, i) => n + (v !== b[i] ? 1 : 0), 0);
  assert.ok(diff(codesOf(pemOn), codesOf(base)) > 0, 'PEM changes the rounding');
  assert.ok(diff(codesOf(pcrOn), codesOf(base)) > 0 || stepsOf(pcrOn).some((v, i) => v !== stepsOf(base)[i]), 'PCR changes the result');
  assert.ok('pem' in pemOn.report.finalLoss && 'pcr' in pcrOn.report.finalLoss);
  // PEM pulls weights towards smaller energy
  const energy = (r: Awaited<ReturnType<typeof runBlock>>) => r.sites.weights.reduce((e, w) => {
    const v = r.values.weights.get(w.node)!;
    const C = v.params.scale.length; const inner = v.codes.length / C;
    let s2 = 0;
    for (let i = 0; i < v.codes.length; i++) { const c = Math.floor(i / inner); s2 += (v.params.scale[c]! * (v.codes[i]! - v.params.zeroPoint[c]!)) ** 2; }
    return e + s2;
  }, 0);
  assert.ok(energy(pemOn) < energy(base), `PEM lowers ||W^||^2: ${energy(pemOn)} < ${energy(base)}`);
});

test('data-parallel reconstruction (2 slices of the batch at once) ends where one session does', async () => {
  const s = await setup(2);
  const one = await runBlock(s, 'lp', { iterations: 60 });
  const two = await runBlock(s, 'lp', { iterations: 60, workers: 2 });
  const rel = Math.abs(two.report.mseAfter - one.report.mseAfter) / one.report.mseAfter;
  assert.ok(rel < 0.02, `block MSE ${two.report.mseAfter} vs ${one.report.mseAfter}`);
  let same = 0, all = 0;
  for (const [node, w] of one.values.weights) {
    const c2 = two.values.weights.get(node)!.codes;
    for (let i = 0; i < w.codes.length; i++) { all++; if (w.codes[i] === c2[i]) same++; }
  }
  assert.ok(same / all > 0.99, `${same}/${all} weight codes equal`);
  assert.equal(one.report.slices, 1);
  assert.equal(two.report.slices, 2);
  // 'auto' keeps this block (4x8x8 output values per sample) in one session: the same result as one
  const auto = await runBlock(s, 'lp', { iterations: 60, workers: 'auto' });
  assert.equal(auto.report.slices, 1);
  assert.equal(auto.report.mseAfter, one.report.mseAfter);
});

test("reconstruction's Conv gradients are sdk/autodiff's choice: per-sample, offset-major shift MatMuls for stride-1 3x3 convs at every width", () => {
  assert.equal(RECON_CONV_GRAD.weight, undefined, 'no override');
  const weight = (c: ConvCase) => chooseConvGrad(c, RECON_CONV_GRAD).weight;
  const base = { group: 1, strides: [1, 1], dilations: [1, 1], padsBegin: [1, 1], padsEnd: [1, 1] };
  const wide = { ...base, x: [16, 16, 28, 28], w: [16, 16, 3, 3], y: [16, 16, 28, 28] };
  assert.equal(weight(wide), 'shiftmmk');
  assert.equal(weight({ ...base, x: [16, 32, 14, 14], w: [32, 32, 3, 3], y: [16, 32, 14, 14] }), 'shiftmmk');
  assert.equal(weight({ ...base, x: [32, 64, 7, 7], w: [64, 64, 3, 3], y: [32, 64, 7, 7] }), 'shiftmmk');
  assert.equal(weight({ ...wide, padsBegin: [0, 0], padsEnd: [0, 0], w: [32, 16, 1, 1], y: [16, 32, 28, 28] }), 'gemm');
  assert.equal(weight({ ...wide, strides: [2, 2], w: [32, 16, 3, 3], y: [16, 32, 14, 14] }), 'onehot');
});
