// Small-batch adaptation: the class-balanced robust memory, gradient accumulation to updateEvery
// images, and their place in the state blob.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { Adapter, decodeState, encodeState, type AdaptOptionsInput } from '../../sdk/adapt/index.ts';
import { f32 } from '../../sdk/onnx/tensor.ts';
import type { Model } from '../../sdk/onnx/types.ts';
import { bnOnly, BN_ONLY, maxAbsDiff } from './fixtures.ts';
import { batch, EPS, randn, rng, tinyModel, tinyParams } from './helpers.ts';

const open: Adapter[] = [];
async function make(model: Model, method: string, options: AdaptOptionsInput = {}): Promise<Adapter> {
  const a = await Adapter.create({ model, method, options: { collapseEntropy: 0, ...options } });
  open.push(a);
  return a;
}
after(async () => { for (const a of open) await a.close(); });


// The BN-only model: 8 logits (= 8 classes), the BN output itself.
const src = BN_ONLY;

/** Biased per-channel moments of x [N, 2, 2, 2]. */
function moments(x: Float32Array, n: number): { mean: number[]; var: number[] } {
  const mean = [0, 0];
  const vr = [0, 0];
  for (let c = 0; c < 2; c++) {
    for (let i = 0; i < n; i++) for (let l = 0; l < 4; l++) mean[c]! += x[(i * 2 + c) * 4 + l]! / (4 * n);
    for (let i = 0; i < n; i++) for (let l = 0; l < 4; l++) vr[c]! += (x[(i * 2 + c) * 4 + l]! - mean[c]!) ** 2 / (4 * n);
  }
  return { mean, var: vr };
}

describe('robust normalisation with the class-balanced memory', () => {
  it('moves only the predicted classes\' slots and normalises with their balanced combination', async () => {
    const rate = 0.1;
    const a = await make(bnOnly(), 'bn:robust', { robustMemory: 'classes', robustClassRate: rate, robustAlpha: 0 });
    const C = 8;
    const slots = Array.from({ length: C }, () => ({ mean: [...src.mean], var: [...src.var] }));
    for (let s = 0; s < 3; s++) {
      const x = f32([3, 2, 2, 2], randn(rng(40 + s), 24, 1.5, s - 1));
      const out = await a.step(x);
      const counts = new Array<number>(C).fill(0);
      for (const k of out.predictions) counts[k]!++;
      const m = moments(x.data, 3);
      for (let k = 0; k < C; k++) {
        const w = counts[k]! > 0 ? 1 - (1 - rate) ** counts[k]! : 0;
        for (let c = 0; c < 2; c++) {
          slots[k]!.mean[c] = slots[k]!.mean[c]! + w * (m.mean[c]! - slots[k]!.mean[c]!);
          slots[k]!.var[c] = slots[k]!.var[c]! + w * (m.var[c]! - slots[k]!.var[c]!);
        }
      }
      const mean = [0, 1].map((c) => slots.reduce((t, sl) => t + sl.mean[c]!, 0) / C);
      const vr = [0, 1].map((c) => slots.reduce((t, sl) => t + sl.var[c]! + sl.mean[c]! ** 2, 0) / C - mean[c]! ** 2);
      const [l] = a.parameters();
      assert.ok(maxAbsDiff(l!.mean, mean) < 1e-5, `step ${s}: mean ${Array.from(l!.mean)} vs ${mean}`);
      assert.ok(maxAbsDiff(l!.var, vr) < 1e-5, `step ${s}: var ${Array.from(l!.var)} vs ${vr}`);
      assert.ok(counts.filter((n) => n > 0).length < C, 'some slots stay untouched (the test means something)');
      // The next batch is normalised with exactly these statistics (alpha 0).
      const probe = f32([1, 2, 2, 2], randn(rng(90 + s), 8));
      const y = (await a.infer(probe)).logits.data;
      for (let c = 0; c < 2; c++) {
        for (let j = 0; j < 4; j++) {
          const want = ((probe.data[c * 4 + j]! - mean[c]!) / Math.sqrt(vr[c]! + EPS)) * src.scale[c]! + src.bias[c]!;
          assert.ok(Math.abs(y[c * 4 + j]! - want) < 1e-4);
        }
      }
    }
  });

  it('a long run of one class moves the statistics far less than the EMA does', async () => {
    const ema = await make(bnOnly(), 'bn:robust', { robustMemory: 'ema', robustAlpha: 0.05, robustAlphaBatch: 4 });
    const cls = await make(bnOnly(), 'bn:robust', { robustMemory: 'classes', robustClassRate: 0.05, robustAlpha: 0 });
    // Every image of the run is shifted the same way and peaks at logit 0 (one predicted class).
    for (let s = 0; s < 40; s++) {
      const d = randn(rng(200 + s), 32, 0.3, 3);
      for (let i = 0; i < 4; i++) d[i * 8] = d[i * 8]! + 3;
      const x = f32([4, 2, 2, 2], d);
      await ema.step(x);
      const r = await cls.step(x);
      assert.deepEqual(Array.from(r.predictions), [0, 0, 0, 0]);
    }
    const shift = (a: Adapter) => Math.abs(a.parameters()[0]!.mean[0]! - src.mean[0]!);
    assert.ok(shift(ema) > 1.5, `the EMA follows the run (${shift(ema)})`);
    assert.ok(shift(cls) < 0.5 * shift(ema), `the class memory moves one slot of 8 (${shift(cls)} vs ${shift(ema)})`);
  });
});

describe('robust normalisation with the shared memory (domain component + class offsets)', () => {
  // Class k (0 or 4) has a bump of +8 at logit k (channel k / 4, first pixel), so its frames are
  // confidently predicted as k and its channel's mean sits 2 above the other class's: the two
  // classes have different offsets. A domain shift adds `shift` to every value.
  const frames = (seed: number, k: number, shift: number) => {
    const d = randn(rng(seed), 32, 0.3, shift);
    for (let i = 0; i < 4; i++) d[i * 8 + k] = d[i * 8 + k]! + 8;
    return f32([4, 2, 2, 2], d);
  };
  async function stream(a: Adapter, shift: number, runs: number[], seed: number, len: number): Promise<void> {
    for (const [r, k] of runs.entries()) {
      for (let s = 0; s < len; s++) {
        const out = await a.step(frames(seed + 100 * r + s, k, shift));
        assert.equal(out.predictions[0], k, 'the frames are predicted as their class');
      }
    }
  }

  it('follows a shift of every class from frames of one known class within 30 batches; the class memory does not', async () => {
    const shared = await make(bnOnly(), 'bn:robust', { robustMemory: 'shared', robustAlpha: 0 });
    const classes = await make(bnOnly(), 'bn:robust', { robustMemory: 'classes', robustAlpha: 0 });
    for (const a of [shared, classes]) await stream(a, 0, [0, 4, 0, 4], 1000, 20);
    const before = [shared, classes].map((a) => Array.from(a.parameters()[0]!.mean));
    // The domain changes: every value +2, and only class 0 is shown.
    for (const a of [shared, classes]) await stream(a, 2, [0], 5000, 30);
    const moved = [shared, classes].map((a, j) => a.parameters()[0]!.mean.map((m, c) => m - before[j]![c]!));
    for (let c = 0; c < 2; c++) {
      assert.ok(moved[0]![c]! > 1.2 && moved[0]![c]! < 2.6, `shared memory, channel ${c}: the balanced mean moved ${moved[0]![c]} of the shift 2`);
      assert.ok(moved[1]![c]! < 0.6, `class memory, channel ${c}: only class 0's slot moved (${moved[1]![c]})`);
    }
  });

  it('does not follow the first run of a class whose offset is unknown', async () => {
    const shared = await make(bnOnly(), 'bn:robust', { robustMemory: 'shared', robustAlpha: 0 });
    const ema = await make(bnOnly(), 'bn:robust', { robustMemory: 'ema', robustAlpha: 0.05, robustAlphaBatch: 4 });
    for (const a of [shared, ema]) await stream(a, 0, [0], 2000, 40);
    const m = (a: Adapter) => a.parameters()[0]!.mean[0]! - src.mean[0]!;
    // A run of class 0 alone: its channel-0 mean is 2 (the bump), 1.5 above the source mean.
    assert.ok(Math.abs(m(shared)) < 0.5 * Math.abs(m(ema)), `shared ${m(shared)} vs EMA ${m(ema)}`);
  });

  it('the layers past robustSharedLayers keep the class memory at robustDeepClassRate', async () => {
    // The tiny model has two BN layers: the first uses the shared memory, the second the class
    // memory. From the same start both adapters see the same batch (same predictions, same
    // moments); every slot starts at the source, so the balanced mean of the deep layer moves by
    // sum_k (1 - (1 - rate)^n_k) / C times (batch mean - source mean) in every channel.
    const p = tinyParams(21);
    const x = batch(900, 4);
    const opts = { robustMemory: 'shared', robustAlpha: 0, robustSharedLayers: 0.5, robustClassRate: 0.5 } as const;
    const fast = await make(tinyModel(p), 'bn:robust', { ...opts, robustDeepClassRate: 0.2 });
    const slow = await make(tinyModel(p), 'bn:robust', { ...opts, robustDeepClassRate: 0.05 });
    const r = await fast.step(x);
    await slow.step(x);
    const C = fast.classes;
    const counts = new Array<number>(C).fill(0);
    for (const k of r.predictions) counts[k]!++;
    const moved = (rate: number) => counts.reduce((s, n) => s + (n > 0 ? 1 - Math.pow(1 - rate, n) : 0), 0) / C;
    const want = moved(0.2) / moved(0.05);
    const src = p.m2;
    const df = fast.parameters()[1]!.mean.map((m, c) => m - src[c]!);
    const ds = slow.parameters()[1]!.mean.map((m, c) => m - src[c]!);
    let checked = 0;
    for (let c = 0; c < df.length; c++) {
      if (Math.abs(ds[c]!) < 1e-3) continue;
      assert.ok(Math.abs(df[c]! / ds[c]! - want) < 1e-3 * want, `channel ${c}: deep layer moved ${df[c]} vs ${ds[c]}, ratio expected ${want}`);
      checked++;
    }
    assert.ok(checked >= 2, `only ${checked} channels moved measurably`);
    // The first (shared) layer does not depend on the deep rate.
    assert.ok(maxAbsDiff(fast.parameters()[0]!.mean, slow.parameters()[0]!.mean) < 1e-7);
  });

  it('keeps its uncertainties in the state blob; a blob without them (written before) still loads', async () => {
    const a = await make(bnOnly(), 'bn:robust', { robustMemory: 'shared', robustAlpha: 0 });
    await stream(a, 0, [0, 4], 3000, 10);
    const blob = a.state();
    const s = decodeState(blob);
    const unc = s.arrays.get('robust::uncertainty')!;
    assert.equal(unc.length, 9);
    assert.ok(unc[1]! < 0.2 && unc[5]! < 0.2 && unc[3]! > 0.95, `classes 0 and 4 are known, class 2 is not (${Array.from(unc)})`);
    const x = frames(4000, 4, 1);
    const b = await make(bnOnly(), 'bn:robust', { robustMemory: 'shared', robustAlpha: 0 });
    b.restore(blob);
    await a.step(x);
    await b.step(x);
    assert.deepEqual(b.parameters(), a.parameters());
    const old = encodeState({ ...s, arrays: new Map([...s.arrays].filter(([k]) => k !== 'robust::uncertainty')) });
    const c = await make(bnOnly(), 'bn:robust', { robustMemory: 'shared', robustAlpha: 0 });
    c.restore(old);
    assert.ok(decodeState(c.state()).arrays.get('robust::uncertainty')![3]! === 1, 'priors back');
    assert.ok((await c.step(x)).logits.data.every(Number.isFinite));
  });
});

describe('robust memory auto', () => {
  it('uses robustSmallMemory below robustClassBelow images and the EMA from there on', async () => {
    const x = (seed: number, n: number) => f32([n, 2, 2, 2], randn(rng(seed), n * 8, 1.5, 1));
    for (const [n, like, small] of [[4, 'shared', 'shared'], [4, 'classes', 'classes'], [16, 'ema', 'shared']] as const) {
      const auto = await make(bnOnly(), 'bn:robust', { robustMemory: 'auto', robustClassBelow: 16, robustSmallMemory: small });
      const ref = await make(bnOnly(), 'bn:robust', { robustMemory: like });
      const other = await make(bnOnly(), 'bn:robust', { robustMemory: like === 'ema' ? 'shared' : 'ema' });
      for (let s = 0; s < 3; s++) {
        await auto.step(x(300 + s, n));
        await ref.step(x(300 + s, n));
        await other.step(x(300 + s, n));
      }
      const [a] = auto.parameters();
      assert.deepEqual(Array.from(a!.mean), Array.from(ref.parameters()[0]!.mean), `batch ${n} follows '${like}'`);
      assert.ok(maxAbsDiff(a!.mean, other.parameters()[0]!.mean) > 1e-4, `batch ${n}: the two memories differ (the test means something)`);
    }
  });
});

describe('gradient accumulation (updateEvery)', () => {
  it('two batches of 4 with updateEvery 8 take the step one batch of 8 takes', async () => {
    const p = tinyParams(21);
    const lr = 1e-2;
    // Source normalisation: samples are independent, so the mean gradient of 4 + 4 is that of 8.
    const acc = await make(tinyModel(p), 'tent:source', { lr, updateEvery: 8 });
    const one = await make(tinyModel(p), 'tent:source', { lr, updateEvery: 0 });
    const x1 = batch(31, 4);
    const x2 = batch(32, 4);
    const x12 = f32([8, ...x1.dims.slice(1)], Float32Array.from([...x1.data, ...x2.data]));
    const before = acc.parameters();
    const r1 = await acc.step(x1);
    assert.equal(r1.adapted, false);
    assert.deepEqual(acc.parameters(), before, 'no update before 8 images');
    const r2 = await acc.step(x2);
    assert.equal(r2.adapted, true);
    const r = await one.step(x12);
    assert.equal(r.adapted, true);
    const pa = acc.parameters();
    const pb = one.parameters();
    for (let i = 0; i < pa.length; i++) {
      assert.ok(maxAbsDiff(pa[i]!.scale, pb[i]!.scale) < 1e-6 && maxAbsDiff(pa[i]!.bias, pb[i]!.bias) < 1e-6, `layer ${i}`);
      assert.ok(maxAbsDiff(pa[i]!.scale, before[i]!.scale) > 1e-3, 'the step moved the parameters');
    }
    assert.equal(acc.counters.updates, 1);
    assert.equal(acc.counters.steps, 2);
  });
});

describe('gradient accumulation and episodic mode', () => {
  it('episodic mode updates on every batch whatever updateEvery says (nothing carries over)', async () => {
    const p = tinyParams(23);
    const a = await make(tinyModel(p), 'tent', { lr: 1e-2, episodic: true, updateEvery: 64 });
    for (let s = 0; s < 2; s++) {
      const r = await a.step(batch(900 + s, 4));
      assert.equal(r.adapted, true);
    }
    assert.equal(a.counters.updates, 2);
  });
});

describe('state with the class memory', () => {
  it('round trips, and a blob without the class memory (written before it existed) still loads', async () => {
    const p = tinyParams(22);
    const a = await make(tinyModel(p), 'abl:robust', { lr: 1e-2 });
    for (let s = 0; s < 4; s++) await a.step(batch(700 + s, 4, 0.5 + 0.3 * s));
    const blob = a.state();
    const b = await make(tinyModel(p), 'abl:robust', { lr: 1e-2 });
    b.restore(blob);
    const x = batch(800, 4);
    const ra = await a.step(x);
    const rb = await b.step(x);
    assert.deepEqual(Array.from(rb.logits.data), Array.from(ra.logits.data));
    assert.deepEqual(b.parameters(), a.parameters());

    const s = decodeState(blob);
    const arrays = new Map([...s.arrays].filter(([k]) => !k.endsWith('::class_mean') && !k.endsWith('::class_var')));
    assert.ok(arrays.size < s.arrays.size);
    const old = encodeState({ ...s, arrays });
    const c = await make(tinyModel(p), 'abl:robust', { lr: 1e-2 });
    c.restore(old);
    const restored = c.parameters();
    for (const [i, l] of restored.entries()) assert.deepEqual(Array.from(l.mean), Array.from(s.arrays.get(`${l.node}::mean`)!), `layer ${i}`);
    const rc = await c.step(x);
    assert.ok(Number.isFinite(rc.loss));
  });
});
