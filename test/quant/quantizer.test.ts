import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TtaqError } from '../../sdk/errors/index.ts';
import { calibrateWeight, candidateErrorsJs, actCandidates, correctedBias, quantile } from '../../sdk/quant/calibrate.ts';
import {
  checkActBits, checkWeightBits, containerDType, dequantize, fakeQuant, intRangeOf, paramsForRange, quantize, roundHalfEven, sqnrDb,
  type QuantParams,
} from '../../sdk/quant/quantizer.ts';

const close = (a: number, b: number, tol = 1e-6, msg = '') => assert.ok(Math.abs(a - b) <= tol, `${msg} ${a} vs ${b}`);
const params = (spec: QuantParams['spec'], scale: number[], zp: number[]): QuantParams => ({ spec, scale: Float32Array.from(scale), zeroPoint: Int32Array.from(zp) });

test('integer ranges per bit width and signedness', () => {
  assert.deepEqual(intRangeOf(2, true), { qmin: -2, qmax: 1 });
  assert.deepEqual(intRangeOf(2, false), { qmin: 0, qmax: 3 });
  assert.deepEqual(intRangeOf(3, true), { qmin: -4, qmax: 3 });
  assert.deepEqual(intRangeOf(3, false), { qmin: 0, qmax: 7 });
  assert.deepEqual(intRangeOf(4, true), { qmin: -8, qmax: 7 });
  assert.deepEqual(intRangeOf(8, false), { qmin: 0, qmax: 255 });
});

test('containers: 3-bit in INT4, 2-bit in INT2, everything in 8 bit for the int8 variant', () => {
  assert.equal(containerDType({ bits: 3, signed: true }, 'true-width'), 'int4');
  assert.equal(containerDType({ bits: 3, signed: false }, 'true-width'), 'uint4');
  assert.equal(containerDType({ bits: 2, signed: false }, 'true-width'), 'uint2');
  assert.equal(containerDType({ bits: 8, signed: true }, 'true-width'), 'int8');
  assert.equal(containerDType({ bits: 2, signed: false }, 'int8-container'), 'uint8');
  assert.equal(containerDType({ bits: 4, signed: true }, 'int8-container'), 'int8');
});

test('round half to even, both signs', () => {
  const cases: [number, number][] = [[0.5, 0], [1.5, 2], [2.5, 2], [3.5, 4], [-0.5, 0], [-1.5, -2], [-2.5, -2], [2.4999, 2], [-2.5001, -3], [7, 7]];
  for (const [x, want] of cases) assert.equal(roundHalfEven(x) + 0, want, `round(${x})`);
});

test('per-tensor asymmetric 4-bit: rounding, zero point, clamping by hand', () => {
  const p = params({ bits: 4, signed: false, symmetric: false }, [0.5], [3]);
  const x = [-2, -1.75, 0.25, 0.75, 6, 100];
  // x/s = -4, -3.5, 0.5, 1.5, 12, 200 -> round -4, -4, 0, 2, 12, 200 -> +3 -> clamp [0, 15]
  assert.deepEqual(Array.from(quantize(x, [6], p)), [0, 0, 3, 5, 15, 15]);
  assert.deepEqual(Array.from(dequantize([0, 0, 3, 5, 15, 15], [6], p)), [-1.5, -1.5, 0, 1, 6, 6]);
});

test('per-channel signed 3-bit along axis 0 and axis 1', () => {
  const p0 = params({ bits: 3, signed: true, symmetric: true, axis: 0 }, [1, 0.25], [0, 0]);
  // channel 0: -5, 2.5, 3.5 -> -5, 2, 4 -> clamp [-4, 3]; channel 1 (/0.25): 0.5, -4.4, 3.6 -> 0, -4, 4 -> 3
  assert.deepEqual(Array.from(quantize([-5, 2.5, 3.5, 0.125, -1.1, 0.9], [2, 3], p0)), [-4, 2, 3, 0, -4, 3]);
  const p1 = params({ bits: 2, signed: false, symmetric: false, axis: 1 }, [1, 2], [1, 2]);
  // [[x00 x01],[x10 x11]] columns are channels: col0 s=1 z=1, col1 s=2 z=2 (range 0..3); -3/2 = -1.5 -> -2 (+2 = 0)
  assert.deepEqual(Array.from(quantize([0.4, -3, 1.6, 2.2], [2, 2], p1)), [1, 0, 3, 3]);
  assert.deepEqual(Array.from(fakeQuant([0.4, -3, 1.6, 2.2], [2, 2], p1)), [0, -4, 2, 2]);
});

test('parameters for a range: asymmetric, symmetric signed, symmetric unsigned', () => {
  assert.deepEqual(paramsForRange(-1, 2, { bits: 2, signed: false, symmetric: false }), { scale: 1, zeroPoint: 1 });
  const s = paramsForRange(-0.7, 1.5, { bits: 4, signed: true, symmetric: true });
  close(s.scale, 0.2, 1e-7);
  assert.equal(s.zeroPoint, 0);
  close(paramsForRange(0, 2.55, { bits: 8, signed: false, symmetric: true }).scale, 0.01, 1e-8);
  // a positive-only range is widened to include 0 so that 0 stays exact
  const a = paramsForRange(0.5, 1, { bits: 4, signed: false, symmetric: false });
  close(a.scale, 1 / 15, 1e-7);
  assert.equal(a.zeroPoint, 0);
});

test('bit widths out of range are coded errors that name the place', () => {
  assert.throws(() => checkWeightBits(5, 'layer conv1'), (e: unknown) => e instanceof TtaqError && e.code === 'QUANT_BAD_BITS' && /conv1/.test(e.message) && /it must be 2, 3, 4 or 8/.test(e.message));
  assert.throws(() => checkActBits(5, '--a-bits'), (e: unknown) => e instanceof TtaqError && e.code === 'QUANT_BAD_BITS' && /--a-bits must be 2, 3, 4 or 8/.test(e.message));
  assert.throws(() => checkActBits(1, '--a-bits'), (e: unknown) => e instanceof TtaqError && e.code === 'QUANT_BAD_BITS');
  assert.equal(checkWeightBits(3, 'x'), 3);
  assert.equal(checkActBits(2, '--a-bits'), 2);
  assert.equal(checkActBits(3, '--a-bits'), 3);
  assert.throws(() => intRangeOf(1, true), (e: unknown) => e instanceof TtaqError && e.code === 'QUANT_BAD_BITS');
});

test('Lp weight search clips an outlier channel and never loses to MinMax', () => {
  // channel 0: many small values plus one outlier; channel 1: uniform
  const c0 = Array.from({ length: 255 }, (_, i) => Math.sin(i * 1.7) * 0.1).concat([1.0]);
  const c1 = Array.from({ length: 256 }, (_, i) => -0.5 + i / 255);
  const w = Float32Array.from([...c0, ...c1]);
  const dims = [2, 256];
  const spec = { bits: 3, signed: false, symmetric: false, axis: 0 };
  const mm = calibrateWeight(w, dims, spec, { method: 'minmax' });
  const lp = calibrateWeight(w, dims, spec, { method: 'lp', p: 2.4 });
  assert.ok(lp.scale[0]! < mm.scale[0]! * 0.9, `outlier channel scale ${lp.scale[0]} should shrink below ${mm.scale[0]}`);
  const err = (p: QuantParams, lo: number, hi: number) => {
    const wq = fakeQuant(w, dims, p);
    let e = 0;
    for (let i = lo; i < hi; i++) e += Math.abs(w[i]! - wq[i]!) ** 2.4;
    return e;
  };
  assert.ok(err(lp, 0, 256) < err(mm, 0, 256) * 0.8);
  assert.ok(err(lp, 256, 512) <= err(mm, 256, 512) * (1 + 1e-6));
  assert.ok(sqnrDb(w, fakeQuant(w, dims, lp)) > sqnrDb(w, fakeQuant(w, dims, mm)));
});

test('activation candidates and their errors; quantile', () => {
  const spec = { bits: 4, signed: false, symmetric: true };
  const cand = actCandidates(0, 3, spec, 3, 0.5); // ratios 1, 0.75, 0.5 -> scales 0.2, 0.15, 0.1
  close(cand.scale[0]!, 0.2, 1e-7);
  close(cand.scale[2]!, 0.1, 1e-7);
  const e = candidateErrorsJs(Float32Array.from([0.1, 0.3, 3]), cand, spec);
  // scale 0.1: 0.1 -> 0.1, 0.3 -> 0.3, 3 -> clamp 15 -> 1.5: error 1.5^2 = 2.25
  close(e[2]!, 2.25, 1e-6);
  close(quantile(Float32Array.from([4, 1, 3, 2, 5]), 0.5), 3);
  close(quantile(Float32Array.from([0, 10]), 0.25), 2.5);
});

test('bias correction adds (W - Wq) E[x]', () => {
  // conv weight [O=1, I=2, 1, 2]: taps summed per input channel
  const w = Float32Array.from([1, 2, 3, 4]);
  const wq = Float32Array.from([1.5, 2, 3, 3]);
  const b = correctedBias(Float32Array.from([0.5]), w, wq, [1, 2, 1, 2], Float64Array.from([2, -1]));
  // shift = (-0.5 + 0)*2 + (0 + 1)*(-1) = -2
  close(b[0]!, -1.5);
});
