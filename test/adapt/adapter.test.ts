import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { Adapter, classWeights, logitOffset, initAblStats, updateAblStats, AblOptionsSchema, type AdaptOptionsInput } from '../../sdk/adapt/index.ts';
import { TtaqError } from '../../sdk/errors/index.ts';
import { bnOnly, BN_ONLY, maxAbsDiff } from './fixtures.ts';
import { batch, bnForward, randn, referenceTent, RefAdam, rng, SHAPE, tinyModel, tinyParams, type TinyParams } from './helpers.ts';
import { GraphBuilder } from '../../sdk/onnx/builder.ts';
import { f32 } from '../../sdk/onnx/tensor.ts';
import type { Model } from '../../sdk/onnx/types.ts';

const open: Adapter[] = [];
async function make(p: TinyParams, method: string, options: AdaptOptionsInput = {}, model?: Model): Promise<Adapter> {
  const a = await Adapter.create({ model: model ?? tinyModel(p), method, options: { collapseEntropy: 0, updateEvery: 0, ...options } });
  open.push(a);
  return a;
}
after(async () => { for (const a of open) await a.close(); });


describe('TENT through the adapt-step graph', () => {
  it('matches a plain-TypeScript forward/backward + Adam step by step', async () => {
    const p = tinyParams(3);
    const lr = 1e-2;
    const a = await make(p, 'tent', { lr });
    const ref = { g1: Float64Array.from(p.g1), b1: Float64Array.from(p.b1n), g2: Float64Array.from(p.g2), b2: Float64Array.from(p.b2n) };
    const opt = new RefAdam([2, 2, 5, 5], lr);
    for (let s = 0; s < 4; s++) {
      const x = batch(100 + s, 16);
      const r = referenceTent(p, x, ref.g1, ref.b1, ref.g2, ref.b2);
      // The gradients must be clearly non-zero, or Adam's normalised step is ill-conditioned.
      for (const g of Object.values(r.grads)) for (const v of g) assert.ok(Math.abs(v) > 1e-5, `reference gradient ${v} too small for a stable comparison`);
      const out = await a.step(x);
      assert.ok(out.adapted);
      assert.ok(maxAbsDiff(out.logits.data, r.logits) < 2e-4, `step ${s}: logits differ by ${maxAbsDiff(out.logits.data, r.logits)}`);
      assert.ok(Math.abs(out.loss - r.loss) < 1e-5, `step ${s}: loss ${out.loss} vs reference ${r.loss}`);
      opt.step([ref.g1, ref.b1, ref.g2, ref.b2], [r.grads.g1, r.grads.b1, r.grads.g2, r.grads.b2]);
      const [l1, l2] = a.parameters();
      assert.ok(maxAbsDiff(l1!.scale, ref.g1) < 2e-5, `step ${s}: bn1 scale differs by ${maxAbsDiff(l1!.scale, ref.g1)}`);
      assert.ok(maxAbsDiff(l1!.bias, ref.b1) < 2e-5);
      assert.ok(maxAbsDiff(l2!.scale, ref.g2) < 2e-5);
      assert.ok(maxAbsDiff(l2!.bias, ref.b2) < 2e-5);
      // The parameters did move (lr 1e-2 per Adam step).
      assert.ok(Math.abs(l1!.scale[0]! - p.g1[0]!) > 0.5 * lr * (s + 1));
    }
    assert.equal(a.counters.steps, 4);
    assert.equal(a.counters.updates, 4);
  });

  it('predictions are the argmax of the logits of the same pass', async () => {
    const p = tinyParams(4);
    const a = await make(p, 'tent');
    const out = await a.step(batch(7, 8));
    const K = p.classes;
    for (let n = 0; n < 8; n++) {
      const row = Array.from(out.logits.data.subarray(n * K, n * K + K));
      assert.equal(out.predictions[n], row.indexOf(Math.max(...row)));
    }
  });
});

describe('confidences', () => {
  const maxSoftmax = (z: Float32Array, K: number): number[] =>
    Array.from({ length: z.length / K }, (_, n) => {
      const row = Array.from(z.subarray(n * K, n * K + K));
      const mx = Math.max(...row);
      return 1 / row.reduce((s, v) => s + Math.exp(v - mx), 0);
    });

  for (const method of ['tent', 'abl', 'bn']) {
    it(`${method}: step and infer give the max softmax probability of their own logits`, async () => {
      const p = tinyParams(8);
      const a = await make(p, method, { lr: 5e-2 });
      const x = batch(31, 8);
      const st = await a.step(x);
      const inf = await a.infer(x);
      for (const r of [st, inf]) {
        assert.equal(r.confidences.length, 8);
        assert.ok(maxAbsDiff(r.confidences, maxSoftmax(r.logits.data, p.classes)) < 1e-6, `${maxAbsDiff(r.confidences, maxSoftmax(r.logits.data, p.classes))}`);
        assert.ok(r.confidences.every((c) => c >= 1 / p.classes - 1e-6 && c <= 1 + 1e-6));
      }
    });
  }
});

describe('normalisation modes', () => {
  // The logits are the BN output itself.
  const params = BN_ONLY;
  const model = bnOnly();
  const x = f32([6, 2, 2, 2], randn(rng(11), 48, 2, 1));

  it('BN-adapt normalises with the batch statistics', async () => {
    const a = await make(tinyParams(), 'bn', {}, model);
    const out = await a.step(x);
    const ref = bnForward(Float64Array.from(x.data), 6, 2, 4, params.scale, params.bias);
    assert.ok(maxAbsDiff(out.logits.data, ref.y) < 1e-5, `differs by ${maxAbsDiff(out.logits.data, ref.y)}`);
    assert.equal(out.adapted, false);
    const inf = await a.infer(x);
    assert.ok(maxAbsDiff(inf.logits.data, ref.y) < 1e-5);
  });

  it('source normalises with the running statistics', async () => {
    const a = await make(tinyParams(), 'source', {}, model);
    const out = await a.infer(x);
    const ref = bnForward(Float64Array.from(x.data), 6, 2, 4, params.scale, params.bias, { mean: params.mean, var: params.var });
    assert.ok(maxAbsDiff(out.logits.data, ref.y) < 1e-5);
  });

  it('robust mode mixes the EMA with the batch moments and keeps the mix as the next EMA', async () => {
    const alpha = 0.1;
    const a = await make(tinyParams(), 'bn:robust', { robustAlpha: alpha, robustAlphaBatch: 0, robustMemory: 'ema' }, model);
    const xb = Float64Array.from(x.data);
    const mean = [0, 0];
    const vr = [0, 0];
    for (let c = 0; c < 2; c++) {
      for (let n = 0; n < 6; n++) for (let l = 0; l < 4; l++) mean[c]! += xb[(n * 2 + c) * 4 + l]! / 24;
      for (let n = 0; n < 6; n++) for (let l = 0; l < 4; l++) vr[c]! += (xb[(n * 2 + c) * 4 + l]! - mean[c]!) ** 2 / 24;
    }
    const mixed = { mean: params.mean.map((m, c) => (1 - alpha) * m + alpha * mean[c]!), var: params.var.map((v, c) => (1 - alpha) * v + alpha * vr[c]!) };
    const out = await a.step(x);
    const ref = bnForward(xb, 6, 2, 4, params.scale, params.bias, mixed);
    assert.ok(maxAbsDiff(out.logits.data, ref.y) < 1e-5);
    const [l] = a.parameters();
    assert.ok(maxAbsDiff(l!.mean, mixed.mean) < 1e-6);
    assert.ok(maxAbsDiff(l!.var, mixed.var) < 1e-6);
    // infer() uses the state but does not change it.
    await a.infer(x);
    assert.ok(maxAbsDiff(a.parameters()[0]!.mean, mixed.mean) < 1e-6);
  });

  it('robust TENT matches the reference with the mixed statistics held constant in the gradient', async () => {
    const p = tinyParams(6);
    const lr = 1e-2;
    const alpha = 0.2;
    const a = await make(p, 'tent:robust', { lr, robustAlpha: alpha, robustAlphaBatch: 8, robustMemory: 'ema' });
    const ref = { g1: Float64Array.from(p.g1), b1: Float64Array.from(p.b1n), g2: Float64Array.from(p.g2), b2: Float64Array.from(p.b2n) };
    let ema = { m1: Array.from(p.m1), v1: Array.from(p.v1), m2: Array.from(p.m2), v2: Array.from(p.v2) };
    const opt = new RefAdam([2, 2, 5, 5], lr);
    for (let s = 0; s < 3; s++) {
      const x = batch(150 + s, 4);
      // A batch of 4 with alpha given for 8: 1 - (1 - alpha)^(4/8).
      const r = referenceTent(p, x, ref.g1, ref.b1, ref.g2, ref.b2, undefined, { alpha: 1 - Math.sqrt(1 - alpha), ...ema });
      const out = await a.step(x);
      assert.ok(maxAbsDiff(out.logits.data, r.logits) < 2e-4, `step ${s}: logits differ by ${maxAbsDiff(out.logits.data, r.logits)}`);
      opt.step([ref.g1, ref.b1, ref.g2, ref.b2], [r.grads.g1, r.grads.b1, r.grads.g2, r.grads.b2]);
      ema = r.stats!;
      const [l1, l2] = a.parameters();
      assert.ok(maxAbsDiff(l1!.scale, ref.g1) < 2e-5, `step ${s}: bn1 scale differs by ${maxAbsDiff(l1!.scale, ref.g1)}`);
      assert.ok(maxAbsDiff(l2!.bias, ref.b2) < 2e-5);
      assert.ok(maxAbsDiff(l1!.mean, ema.m1) < 1e-5 && maxAbsDiff(l2!.var, ema.v2) < 1e-5);
    }
  });

  it('robust TENT adapts on batches of one image', async () => {
    const p = tinyParams(5);
    const a = await make(p, 'tent:robust', { lr: 1e-2 });
    for (let s = 0; s < 3; s++) {
      const out = await a.step(batch(30 + s, 1));
      assert.equal(out.predictions.length, 1);
      assert.ok(Number.isFinite(out.loss));
      assert.ok(out.adapted);
    }
    assert.ok(maxAbsDiff(a.parameters()[0]!.scale, p.g1) > 1e-3);
  });
});

describe('ABL', () => {
  const K = 4;
  const lnK = Math.log(K);

  it('with every term off it is the entropy filtered at the margin (same trajectory as the reference)', async () => {
    const p = tinyParams(8, K);
    const lr = 1e-2;
    const xs = [0, 1, 2].map((s) => batch(200 + s, 16, 0.3, 1));
    // Margin in the middle of the widest gap of the first batch's entropies (stable selection).
    const r0 = referenceTent(p, xs[0]!, p.g1, p.b1n, p.g2, p.b2n);
    const ent = (z: Float64Array): number[] => Array.from({ length: 16 }, (_, n) => {
      const row = Array.from(z.subarray(n * K, n * K + K));
      const mx = Math.max(...row);
      const lse = mx + Math.log(row.reduce((s, v) => s + Math.exp(v - mx), 0));
      return -row.reduce((s, v) => s + Math.exp(v - lse) * (v - lse), 0);
    });
    const sorted = ent(r0.logits).sort((x, y) => x - y);
    let gap = -1;
    let margin = 0;
    for (let i = 4; i < 12; i++) if (sorted[i + 1]! - sorted[i]! > gap) { gap = sorted[i + 1]! - sorted[i]!; margin = (sorted[i]! + sorted[i + 1]!) / 2; }
    const a = await make(p, 'abl', { lr, anchor: 0, entropyMargin: margin / lnK, abl: { freqExp: 0, complexityExp: 0, gradExp: 0, tau: 0 } });
    const ref = { g1: Float64Array.from(p.g1), b1: Float64Array.from(p.b1n), g2: Float64Array.from(p.g2), b2: Float64Array.from(p.b2n) };
    const opt = new RefAdam([2, 2, 5, 5], lr);
    for (const x of xs) {
      const r = referenceTent(p, x, ref.g1, ref.b1, ref.g2, ref.b2);
      const H = ent(r.logits);
      const mask = H.map((h) => (h < margin ? 1 : 0));
      const rw = referenceTent(p, x, ref.g1, ref.b1, ref.g2, ref.b2, mask);
      const out = await a.step(x);
      assert.equal(out.selected, mask.reduce((s: number, v) => s + v, 0));
      assert.ok(Math.abs(out.loss - rw.loss) < 1e-5, `loss ${out.loss} vs filtered reference ${rw.loss}`);
      opt.step([ref.g1, ref.b1, ref.g2, ref.b2], [rw.grads.g1, rw.grads.b1, rw.grads.g2, rw.grads.b2]);
      const [l1, l2] = a.parameters();
      assert.ok(maxAbsDiff(l1!.scale, ref.g1) < 2e-5, `bn1 scale differs by ${maxAbsDiff(l1!.scale, ref.g1)}`);
      assert.ok(maxAbsDiff(l2!.bias, ref.b2) < 2e-5);
    }
  });

  it('computes the weighted, logit-adjusted loss and the gradient share from the fed statistics', async () => {
    const p = tinyParams(9, K);
    const abl = { freqExp: 1, complexityExp: 1, gradExp: 1, tau: 1, maxWeight: 3 };
    const a = await make(p, 'abl', { entropyMargin: 0.99, abl });
    for (let s = 0; s < 3; s++) await a.step(batch(300 + s, 16, 0.3, 1));
    const st = a.ablStatistics();
    // The statistics are what the graph-side summaries imply: pi sums to 1, kappa in [0, 1].
    assert.ok(Math.abs(st.freq.reduce((x, y) => x + y, 0) - 1) < 1e-9);
    for (const k of st.complexity) assert.ok(k >= 0 && k <= 1);
    const o = AblOptionsSchema.parse(abl);
    const stats = { ...initAblStats(K), ...st, updates: 3, gradUpdates: 3 };
    const v = classWeights(stats, o);
    const off = logitOffset(stats, o);
    const out = await a.step(batch(400, 16, 0.3, 1));
    // Expected loss from the returned (pre-update) logits.
    const z = out.logits.data;
    const w: number[] = [];
    const Hadj: number[] = [];
    const Hraw: number[] = [];
    const grad = new Float64Array(K);
    const pAdj: number[][] = [];
    for (let n = 0; n < 16; n++) {
      const row = Array.from(z.subarray(n * K, n * K + K));
      const lse = (r: number[]) => { const mx = Math.max(...r); return mx + Math.log(r.reduce((s, x) => s + Math.exp(x - mx), 0)); };
      const l0 = lse(row);
      Hraw.push(-row.reduce((s, x) => s + Math.exp(x - l0) * (x - l0), 0));
      const adj = row.map((x, k) => x + off[k]!);
      const l1 = lse(adj);
      const lp = adj.map((x) => x - l1);
      pAdj.push(lp);
      Hadj.push(-lp.reduce((s, x) => s + Math.exp(x) * x, 0));
      w.push(v[out.predictions[n]!]!);
    }
    const wm = w.reduce((s, x) => s + x, 0) / 16;
    const c = w.map((x, n) => Math.min(x / wm, 3) * (Hraw[n]! < 0.99 * lnK ? 1 : 0));
    const expected = c.reduce((s, x, n) => s + x * Hadj[n]!, 0) / 16;
    assert.ok(Math.abs(out.loss - expected) < 1e-5, `ABL loss ${out.loss} vs ${expected}`);
    for (let n = 0; n < 16; n++) for (let k = 0; k < K; k++) grad[k] = grad[k]! + Math.abs((c[n]! / 16) * Math.exp(pAdj[n]![k]!) * (pAdj[n]![k]! + Hadj[n]!));
    // The gradient share EMA moved toward this batch's sum |dL/dz|.
    const after = a.ablStatistics().grad;
    for (let k = 0; k < K; k++) assert.ok(Math.abs(after[k]! - (0.95 * st.grad[k]! + 0.05 * grad[k]!)) < 1e-6, `g[${k}] ${after[k]} vs ${0.95 * st.grad[k]! + 0.05 * grad[k]!}`);
  });

  it('class statistics: pi follows the predicted probabilities, kappa only moves for predicted classes', () => {
    const o = AblOptionsSchema.parse({});
    const s = initAblStats(3);
    updateAblStats(s, { n: 2, probSum: [1.6, 0.4, 0], predCount: [2, 0, 0], predEntropySum: [0.5, 0, 0] }, o);
    assert.ok(Math.abs(s.freq[0]! - (0.95 / 3 + 0.05 * 0.8)) < 1e-12);
    assert.ok(Math.abs(s.complexity[0]! - 0.05 * 0.25) < 1e-12);
    assert.equal(s.complexity[1], 0);
    const off = classWeights(s, AblOptionsSchema.parse({ freqExp: 0, complexityExp: 0, gradExp: 0 }));
    assert.deepEqual(Array.from(off), [1, 1, 1]);
    assert.deepEqual(Array.from(logitOffset(s, AblOptionsSchema.parse({ tau: 0 }))), [0, 0, 0]);
  });
});

describe('state and stability', () => {
  it('state round trip: a restored adapter continues exactly like the original', async () => {
    const p = tinyParams(12);
    const a = await make(p, 'abl', { lr: 1e-2 });
    for (let s = 0; s < 3; s++) await a.step(batch(500 + s, 16));
    const blob = a.state();
    assert.ok(blob instanceof Uint8Array);
    const b = await make(p, 'abl', { lr: 1e-2 });
    b.restore(blob);
    assert.deepEqual(b.counters, a.counters);
    const x = batch(600, 16);
    const ra = await a.step(x);
    const rb = await b.step(x);
    assert.deepEqual(Array.from(rb.logits.data), Array.from(ra.logits.data));
    assert.deepEqual(b.parameters(), a.parameters());
    assert.deepEqual(b.ablStatistics(), a.ablStatistics());
  });

  it('refuses a state for another model or another option set, and a corrupted blob', async () => {
    const a = await make(tinyParams(13), 'tent');
    await a.step(batch(1, 8));
    const blob = a.state();
    const other = await make(tinyParams(14), 'tent');
    assert.throws(() => other.restore(blob), (e: unknown) => e instanceof TtaqError && e.code === 'STATE_MISMATCH');
    const sgd = await make(tinyParams(13), 'tent', { optimizer: 'sgd' });
    assert.throws(() => sgd.restore(blob), (e: unknown) => e instanceof TtaqError && e.code === 'STATE_MISMATCH');
    const bad = Uint8Array.from(blob);
    bad[bad.length - 40] = bad[bad.length - 40]! ^ 0xff;
    const same = await make(tinyParams(13), 'tent');
    assert.throws(() => same.restore(bad), (e: unknown) => e instanceof TtaqError && e.code === 'ADAPT_BAD_STATE');
    assert.throws(() => same.restore(blob.subarray(0, 20)), (e: unknown) => e instanceof TtaqError && e.code === 'ADAPT_BAD_STATE');
  });

  it('the collapse guard resets to the source parameters when the entropy EMA falls below its threshold', async () => {
    const p = tinyParams(15);
    // collapseMomentumBatch 0: the EMA and the warm-up count batches whatever their size.
    const a = await make(p, 'tent', { lr: 1e-2, collapseEntropy: 0.999, collapseWarmup: 2, collapseMomentumBatch: 0 });
    const results = [];
    for (let s = 0; s < 4; s++) results.push(await a.step(batch(700 + s, 16)));
    assert.deepEqual(results.map((r) => r.reset), [false, false, true, false]);
    assert.equal(a.counters.collapseResets, 1);
    // Right after the reset the parameters were the source ones; one update since.
    const fresh = await make(p, 'tent', { lr: 1e-2 });
    await fresh.step(batch(703, 16));
    assert.deepEqual(a.parameters(), fresh.parameters());
  });

  it('the collapse guard watches the same number of images at every batch size (collapseMomentumBatch)', async () => {
    const p = tinyParams(15);
    // Batch 4 against a reference of 64: momentum 0.9^(4/64) per batch, warm-up 2 x 16 batches.
    const a = await make(p, 'tent', { lr: 1e-2, collapseEntropy: 0.999, collapseWarmup: 2 });
    const hs: number[] = [];
    const results = [];
    for (let s = 0; s < 32; s++) {
      const r = await a.step(batch(800 + s, 4));
      hs.push(r.entropy / Math.log(a.classes));
      results.push(r.reset);
      if (s === 1) {
        const mom = Math.pow(0.9, 4 / 64);
        const want = mom * hs[0]! + (1 - mom) * hs[1]!;
        assert.ok(Math.abs(a.entropyEmaValue - want) < 1e-6, `entropy EMA ${a.entropyEmaValue}, expected ${want}`);
      }
    }
    assert.ok(results.every((x) => !x), 'no reset inside the warm-up of 32 batches of 4');
    assert.equal((await a.step(batch(832, 4))).reset, true);
    // The per-batch form resets after its 2-batch warm-up.
    const b = await make(p, 'tent', { lr: 1e-2, collapseEntropy: 0.999, collapseWarmup: 2, collapseMomentumBatch: 0 });
    const rb = [];
    for (let s = 0; s < 3; s++) rb.push((await b.step(batch(800 + s, 4))).reset);
    assert.deepEqual(rb, [false, false, true]);
  });

  it('episodic mode starts every batch from the source parameters', async () => {
    const p = tinyParams(16);
    const a = await make(p, 'tent', { lr: 1e-2, episodic: true });
    await a.step(batch(800, 16));
    await a.step(batch(801, 16));
    const fresh = await make(p, 'tent', { lr: 1e-2 });
    await fresh.step(batch(801, 16));
    assert.deepEqual(a.parameters(), fresh.parameters());
  });

  it('warmUp runs every batch size and changes no state', async () => {
    for (const method of ['abl:robust', 'tent', 'bn']) {
      const a = await make(tinyParams(5), method);
      await a.step(batch(30, 6));
      const before = a.state();
      const x = batch(31, 3);
      const ref = await a.infer(x);
      await a.warmUp([1, 2, 3, 7], [SHAPE.c, SHAPE.h, SHAPE.w]);
      assert.deepEqual(a.state(), before, `${method}: warm-up changed the adaptation state`);
      assert.deepEqual(Array.from((await a.infer(x)).logits.data), Array.from(ref.logits.data), `${method}: predictions changed`);
      assert.equal(a.counters.steps, 1);
    }
  });

  it('reset() restores the source and counts', async () => {
    const p = tinyParams(17);
    const a = await make(p, 'tent', { lr: 1e-2 });
    await a.step(batch(900, 16));
    a.reset();
    assert.equal(a.counters.manualResets, 1);
    assert.deepEqual(Array.from(a.parameters()[0]!.scale), Array.from(p.g1));
  });

  it('the L2 anchor pulls toward the source parameters', async () => {
    const p = tinyParams(18);
    const free = await make(p, 'tent', { lr: 5e-2, optimizer: 'sgd', momentum: 0 });
    const anchored = await make(p, 'tent', { lr: 5e-2, optimizer: 'sgd', momentum: 0, anchor: 10 });
    const dist = (ad: Adapter) => ad.parameters().reduce((s, l, i) => s + maxAbsDiff(l.scale, i === 0 ? p.g1 : p.g2), 0);
    for (let s = 0; s < 6; s++) { await free.step(batch(950 + s, 16)); await anchored.step(batch(950 + s, 16)); }
    assert.ok(dist(anchored) < 0.7 * dist(free), `anchored drift ${dist(anchored)} vs free ${dist(free)}`);
  });

  it('names the problem when the model has no BN', async () => {
    const b = new GraphBuilder('nobn');
    const x = b.input('x', 'float32', ['N', 4]);
    b.op('Gemm', [x, b.initializer('w', f32([4, 3], new Float32Array(12).fill(0.1)))], {}, { outputNames: ['logits'] });
    b.output('logits', 'float32', ['N', 3]);
    const m: Model = { irVersion: 8, opsetImports: [{ domain: '', version: 17 }], producerName: 't', producerVersion: '0', metadata: {}, graph: b.build() };
    await assert.rejects(Adapter.create({ model: m, method: 'tent' }), (e: unknown) => e instanceof TtaqError && e.code === 'ADAPT_NO_BN' && /BN re-inserted/.test(e.message));
  });
});

void SHAPE;

describe('what a library caller gets wrong', () => {
  const coded = (code: string, re: RegExp) => (e: unknown): boolean => e instanceof TtaqError && e.code === code && re.test(e.message);

  it('a batch of another shape names the model input it needs, before onnxruntime sees it', async () => {
    const a = await make(tinyParams(4), 'tent');
    const { c, h, w } = SHAPE;
    const wrongChannels = f32([4, c + 1, h, w], new Float32Array(4 * (c + 1) * h * w));
    await assert.rejects(a.infer(wrongChannels), coded('DATA_BAD_FORMAT', new RegExp(`\\[4, ${c + 1}, ${h}, ${w}\\] does not fit the model's input \\[N, ${c}, ${h}, ${w}\\].*preprocessBatch`)));
    const nhwc = f32([4, h, w, c], new Float32Array(4 * c * h * w));
    await assert.rejects(a.step(nhwc), coded('DATA_BAD_FORMAT', /NCHW layout/));
    await assert.rejects(a.infer(new Float32Array(c * h * w) as never), coded('CONFIG_INVALID', /got a bare Float32Array of \d+ values \(no dims\).*f32\(dims, data\)/));
  });

  it('a path where the loaded model belongs', async () => {
    await assert.rejects(Adapter.create({ model: 'models/x.onnx' as never, method: 'tent' }), coded('CONFIG_INVALID', /the string 'models\/x\.onnx'.*loadModel\(path\)/));
  });
});
