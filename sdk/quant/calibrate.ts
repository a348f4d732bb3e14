// Calibration: choosing scales and zero points. Weight searches run here in JavaScript over
// per-channel vectors (weights are small, done once); activation searches over calibration batches
// run in onnxruntime (see actcalib.ts), and only their per-candidate error sums come back here.
import { TtaqError } from '../errors/index.ts';
import {
  channelMinMax,
  paramsForRange,
  paramsFromRanges,
  rangeOf,
  roundHalfEven,
  type QuantParams,
  type QuantSpec,
} from './quantizer.ts';

export type WeightCalib = 'minmax' | 'lp';
export type ActCalib = 'minmax' | 'percentile' | 'mse';

export interface WeightCalibOptions {
  readonly method: WeightCalib;
  /** Exponent of the Lp error (default 2.4). */
  readonly p?: number;
  /** Number of clipping ratios tried, from 1 down to `minRatio` (default 100). */
  readonly steps?: number;
  /** Smallest clipping ratio (default 0.2). */
  readonly minRatio?: number;
}

const clampN = (v: number, lo: number, hi: number): number => (v < lo ? lo : v > hi ? hi : v);

/** The Lp search's settings with their defaults: exponent, candidate count, narrowest clipping ratio. */
export const lpSearchSettings = (o: WeightCalibOptions): { p: number; steps: number; minRatio: number } => ({ p: o.p ?? 2.4, steps: o.steps ?? 100, minRatio: o.minRatio ?? 0.2 });

/** The k-th of `steps` clipping ratios, from 1 down to `minRatio`: the candidates of every range search. */
export const clipRatio = (k: number, steps: number, minRatio: number): number => 1 - ((1 - minRatio) * k) / Math.max(1, steps - 1);

/** Lp error of quantizing `values` with one scale/zero point. */
function lpError(values: Float32Array, scale: number, zp: number, qmin: number, qmax: number, p: number): number {
  let e = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    const q = clampN(roundHalfEven(Math.fround(v / scale)) + zp, qmin, qmax);
    const d = Math.abs(v - scale * (q - zp));
    e += p === 2 ? d * d : d ** p;
  }
  return e;
}

/** The values of channel c along `axis` of a tensor. */
export function channelValues(x: Float32Array, dims: readonly number[], axis: number, c: number): Float32Array {
  const a = axis < 0 ? axis + dims.length : axis;
  let inner = 1;
  for (let i = a + 1; i < dims.length; i++) inner *= dims[i]!;
  const channels = dims[a]!;
  const outer = x.length / (inner * channels);
  const out = new Float32Array(outer * inner);
  let k = 0;
  for (let o = 0; o < outer; o++) {
    const base = (o * channels + c) * inner;
    for (let i = 0; i < inner; i++) out[k++] = x[base + i]!;
  }
  return out;
}

/**
 * Weight quantizer parameters. `lp` shrinks each channel's [min, max] by ratios 1 … minRatio and
 * keeps the ratio with the smallest Σ|w − ŵ|^p (p = 2.4 by default).
 */
export function calibrateWeight(w: Float32Array, dims: readonly number[], spec: QuantSpec, opts: WeightCalibOptions = { method: 'lp' }): QuantParams {
  if (w.length === 0) throw new TtaqError('QUANT_BAD_MODEL', 'cannot calibrate an empty weight tensor; remove the layer or give it weights');
  const { min, max } = channelMinMax(w, dims, spec.axis);
  if (opts.method === 'minmax') return paramsFromRanges(min, max, spec);
  const { p, steps, minRatio } = lpSearchSettings(opts);
  const { qmin, qmax } = rangeOf(spec);
  const n = min.length;
  const scale = new Float32Array(n);
  const zeroPoint = new Int32Array(n);
  for (let c = 0; c < n; c++) {
    const vals = spec.axis === undefined ? w : channelValues(w, dims, spec.axis, c);
    let best = Infinity;
    let bs = 1;
    let bz = 0;
    for (let k = 0; k < steps; k++) {
      const r = clipRatio(k, steps, minRatio);
      const cand = paramsForRange(min[c]! * r, max[c]! * r, spec);
      const e = lpError(vals, cand.scale, cand.zeroPoint, qmin, qmax, p);
      if (e < best) { best = e; bs = cand.scale; bz = cand.zeroPoint; }
    }
    scale[c] = bs;
    zeroPoint[c] = bz;
  }
  return { spec, scale, zeroPoint };
}

/** Value at quantile q (0..1) of a sample (sorted copy; samples are bounded by the caller). */
export function quantile(sample: Float32Array, q: number): number {
  if (sample.length === 0) return 0;
  const s = Float32Array.from(sample).sort();
  const pos = clampN(q, 0, 1) * (s.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, s.length - 1);
  return s[lo]! + (s[hi]! - s[lo]!) * (pos - lo);
}

/**
 * Candidate (scale, zero point) pairs for an activation MSE search: the [lo, hi] range shrunk by
 * ratios 1 … minRatio. Returned as vectors so an onnxruntime graph can evaluate all of them at once.
 */
export function actCandidates(lo: number, hi: number, spec: QuantSpec, steps = 100, minRatio = 0.1): { scale: Float32Array; zeroPoint: Float32Array } {
  const scale = new Float32Array(steps);
  const zeroPoint = new Float32Array(steps);
  for (let k = 0; k < steps; k++) {
    const r = clipRatio(k, steps, minRatio);
    const c = paramsForRange(lo * r, hi * r, spec);
    scale[k] = c.scale;
    zeroPoint[k] = c.zeroPoint;
  }
  return { scale, zeroPoint };
}

/** Squared error of each candidate over a sample, in JavaScript (the reference for the onnxruntime path). */
export function candidateErrorsJs(x: Float32Array, cand: { scale: Float32Array; zeroPoint: Float32Array }, spec: QuantSpec): Float64Array {
  const { qmin, qmax } = rangeOf(spec);
  const out = new Float64Array(cand.scale.length);
  for (let k = 0; k < cand.scale.length; k++) out[k] = lpError(x, cand.scale[k]!, cand.zeroPoint[k]!, qmin, qmax, 2);
  return out;
}

/**
 * Bias correction: the expected output shift of a linear layer, (W − Ŵ)·E[x], folded into its bias.
 * `inMean` holds the mean of each input channel; the kernel's spatial taps all see that mean.
 * Returns the corrected bias (length = output channels).
 */
export function correctedBias(
  bias: Float32Array | undefined,
  w: Float32Array,
  wq: Float32Array,
  dims: readonly number[],
  inMean: Float64Array,
  layout: 'OI..' | 'IO' = 'OI..',
): Float32Array {
  const out = layout === 'IO' ? dims[1]! : dims[0]!;
  const inC = layout === 'IO' ? dims[0]! : dims[1]!;
  if (inMean.length !== inC) {
    throw new TtaqError('QUANT_BAD_MODEL', `bias correction: ${inMean.length} input channel means for a weight with ${inC} input channels (grouped/depthwise convs are corrected per group only when groups = 1)`);
  }
  const res = new Float32Array(out);
  if (bias) res.set(bias);
  const taps = layout === 'IO' ? 1 : w.length / (out * inC);
  for (let o = 0; o < out; o++) {
    let shift = 0;
    for (let i = 0; i < inC; i++) {
      let d = 0;
      if (layout === 'IO') d = w[i * out + o]! - wq[i * out + o]!;
      else for (let t = 0; t < taps; t++) { const k = (o * inC + i) * taps + t; d += w[k]! - wq[k]!; }
      shift += d * inMean[i]!;
    }
    res[o] = res[o]! + shift;
  }
  return res;
}
