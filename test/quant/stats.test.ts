import assert from 'node:assert/strict';
import { test } from 'node:test';
import { actCandidates, candidateErrorsJs, candidateErrorsOrt, collectStats, makePlan, sampleValues } from '../../sdk/quant/index.ts';
import { tinyResNet, tinySet } from './fixtures.ts';

test('the activation search in onnxruntime matches the JavaScript reference, with and without zero points, zeros skipped', async () => {
  const model = tinyResNet(4);
  const set = tinySet(24);
  const plan = makePlan(model.graph, { wBits: 4, aBits: 4 });
  const values = plan.acts.map((a) => a.value);
  const stats = await collectStats(model, values, set);
  const cands = plan.acts.map((a) => {
    const st = stats.get(a.value)!;
    return { value: a.value, spec: a.spec, ...actCandidates(st.min, st.max, a.spec, 40) };
  });
  // both paths are exercised: the network input has negative values (asymmetric, zero points != 0),
  // the ReLU outputs have zero points of 0 and many exact zeros
  assert.ok(cands.some((c) => c.zeroPoint.some((z) => z !== 0)));
  assert.ok(cands.some((c) => c.zeroPoint.every((z) => z === 0)));
  const ort = await candidateErrorsOrt(model, cands, set, { maxElements: 5_000 }); // several batches
  const samples = await sampleValues(model, values, set, { cap: Number.MAX_SAFE_INTEGER });
  for (const c of cands) {
    const js = candidateErrorsJs(samples.get(c.value)!, c, c.spec);
    const got = ort.get(c.value)!;
    assert.equal(got.length, js.length);
    for (let k = 0; k < js.length; k++) {
      assert.ok(Math.abs(got[k]! - js[k]!) <= 1e-4 * Math.max(1, js[k]!), `${c.value} candidate ${k}: ${got[k]} vs ${js[k]}`);
    }
    const argmin = (e: ArrayLike<number>) => Array.from(e).reduce((b, x, i, a) => (x < a[b]! ? i : b), 0);
    assert.equal(argmin(got), argmin(js), c.value);
  }
});
