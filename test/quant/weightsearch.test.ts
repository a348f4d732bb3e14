import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isTtaqError } from '../../sdk/errors/index.ts';
import { calibrateWeight } from '../../sdk/quant/calibrate.ts';
import type { QuantSpec } from '../../sdk/quant/quantizer.ts';
import { calibrateWeightsOrt } from '../../sdk/quant/index.ts';

/** Deterministic weights: a smooth pattern per channel, one outlier per channel, uneven scales. */
function weights(dims: number[], seed: number): Float32Array {
  const n = dims.reduce((a, b) => a * b, 1);
  const w = new Float32Array(n);
  for (let i = 0; i < n; i++) w[i] = Math.sin(i * 0.37 + seed) * (0.05 + 0.02 * (i % 7)) + (i % 97 === seed % 97 ? 0.8 : 0);
  return w;
}

const cases: { name: string; dims: number[]; spec: QuantSpec }[] = [
  { name: 'conv, 4-bit unsigned asymmetric per channel', dims: [8, 4, 3, 3], spec: { bits: 4, signed: false, symmetric: false, axis: 0 } },
  { name: 'conv, 2-bit per channel', dims: [6, 5, 3, 3], spec: { bits: 2, signed: false, symmetric: false, axis: 0 } },
  { name: 'conv, 3-bit signed symmetric per channel', dims: [4, 16, 1, 1], spec: { bits: 3, signed: true, symmetric: true, axis: 0 } },
  { name: 'gemm stored [in, out], channels on axis 1', dims: [12, 5], spec: { bits: 4, signed: true, symmetric: true, axis: 1 } },
  { name: 'per tensor, 8-bit', dims: [3, 7, 3, 3], spec: { bits: 8, signed: false, symmetric: false } },
];

test('the onnxruntime Lp search picks the same quantizer as the JavaScript reference', async () => {
  const sites = cases.map((c, i) => ({ w: weights(c.dims, i + 1), dims: c.dims, spec: c.spec }));
  // all candidates in one run, and a few per run: the blocked loop must keep the first best
  for (const [steps, maxElements] of [[100, undefined], [100, 2000], [7, 1]] as const) {
    const got = await calibrateWeightsOrt(sites, { method: 'lp', p: 2.4, steps }, maxElements);
    sites.forEach((s, i) => {
      const want = calibrateWeight(s.w, s.dims, s.spec, { method: 'lp', p: 2.4, steps });
      assert.deepEqual(Array.from(got[i]!.scale), Array.from(want.scale), `${cases[i]!.name}, ${steps} steps: scales`);
      assert.deepEqual(Array.from(got[i]!.zeroPoint), Array.from(want.zeroPoint), `${cases[i]!.name}, ${steps} steps: zero points`);
      assert.equal(got[i]!.spec, s.spec);
    });
  }
});

test('the search shrinks an outlier channel and leaves MinMax to MinMax', async () => {
  // channel 0: many small values and one outlier; channel 1: uniform
  const dims = [2, 256];
  const w = new Float32Array(512);
  for (let i = 0; i < 255; i++) w[i] = Math.sin(i * 1.7) * 0.1;
  w[255] = 1.0;
  for (let i = 0; i < 256; i++) w[256 + i] = -0.5 + i / 255;
  const spec: QuantSpec = { bits: 3, signed: false, symmetric: false, axis: 0 };
  const [mm] = await calibrateWeightsOrt([{ w, dims, spec }], { method: 'minmax' });
  const [lp] = await calibrateWeightsOrt([{ w, dims, spec }], { method: 'lp' });
  assert.deepEqual(Array.from(mm!.scale), Array.from(calibrateWeight(w, dims, spec, { method: 'minmax' }).scale));
  assert.ok(lp!.scale[0]! < mm!.scale[0]! * 0.9, `outlier channel: ${lp!.scale[0]} should shrink below ${mm!.scale[0]}`);
});

test('an empty weight tensor is a coded error', async () => {
  await assert.rejects(calibrateWeightsOrt([{ w: new Float32Array(0), dims: [0, 3], spec: { bits: 4, signed: false, symmetric: false, axis: 0 } }], { method: 'lp' }),
    (e: unknown) => isTtaqError(e) && e.code === 'QUANT_BAD_MODEL');
});
