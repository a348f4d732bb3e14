// Uniform affine quantizer math: q = clamp(round(x/s) + z, qmin, qmax), x^ = s·(q − z).
// Pure functions over per-tensor or per-channel parameters. They run at model-build time (weights,
// per-channel vectors); activation tensors are quantized inside onnxruntime graphs.
//
// Conventions
// - Rounding is half to even, computed on the float32 quotient, exactly as ONNX QuantizeLinear.
// - b-bit signed range [−2^(b−1), 2^(b−1) − 1], unsigned [0, 2^b − 1]; 3-bit values live in 4-bit
//   containers but keep the 3-bit range (weights: codes inside it; activations: a Clip in front of
//   the QuantizeLinear, export.ts).
// - Asymmetric quantizers use the unsigned range with a zero point inside it; symmetric quantizers
//   use the signed range (or the unsigned range with z = 0 for non-negative tensors).
import { TtaqError } from '../errors/index.ts';
import type { DType } from '../onnx/types.ts';

export type WeightBits = 2 | 3 | 4 | 8;
export type ActBits = 2 | 3 | 4 | 8;
export const WEIGHT_BITS: readonly WeightBits[] = [2, 3, 4, 8];
export const ACT_BITS: readonly ActBits[] = [2, 3, 4, 8];

/** '--a-bits must be 2, 3, 4 or 8' for a flag, 'it must be 2, 3, 4 or 8' otherwise. */
const mustBe = (where: string, xs: readonly number[]): string =>
  `${where.startsWith('--') ? where : 'it'} must be ${xs.slice(0, -1).join(', ')} or ${xs.at(-1)}`;

/** How a tensor is quantized (the choice), independent of the values (the parameters). */
export interface QuantSpec {
  readonly bits: number;
  /** Signed integer range; asymmetric specs are always unsigned. */
  readonly signed: boolean;
  /** Zero point fixed at 0 (true) or free (false). */
  readonly symmetric: boolean;
  /** Per-channel along this axis; undefined = per tensor. */
  readonly axis?: number;
}

/** A quantizer's values: one scale and zero point per channel (length 1 per tensor). */
export interface QuantParams {
  readonly spec: QuantSpec;
  readonly scale: Float32Array;
  readonly zeroPoint: Int32Array;
}

export interface IntRange {
  readonly qmin: number;
  readonly qmax: number;
}

/** Checks a weight bit width, naming where it came from. */
export function checkWeightBits(bits: number, where: string): WeightBits {
  if (!(WEIGHT_BITS as readonly number[]).includes(bits)) {
    throw new TtaqError('QUANT_BAD_BITS', `${where}: weight bit width ${bits} is not supported; ${mustBe(where, WEIGHT_BITS)}`, { bits, where });
  }
  return bits as WeightBits;
}

/** Checks an activation bit width, naming where it came from. */
export function checkActBits(bits: number, where: string): ActBits {
  if (!(ACT_BITS as readonly number[]).includes(bits)) {
    throw new TtaqError('QUANT_BAD_BITS', `${where}: activation bit width ${bits} is not supported; ${mustBe(where, ACT_BITS)}`, { bits, where });
  }
  return bits as ActBits;
}

/** The integer range of a b-bit quantizer. */
export function intRangeOf(bits: number, signed: boolean): IntRange {
  if (!Number.isInteger(bits) || bits < 2 || bits > 8) {
    throw new TtaqError('QUANT_BAD_BITS', `bit width ${bits} is outside 2..8; use 2, 3, 4 or 8`, { bits });
  }
  return signed ? { qmin: -(2 ** (bits - 1)), qmax: 2 ** (bits - 1) - 1 } : { qmin: 0, qmax: 2 ** bits - 1 };
}

export const rangeOf = (spec: QuantSpec): IntRange => intRangeOf(spec.bits, spec.signed);

/** The ONNX container type for a spec: true width (INT2/UINT2, INT4/UINT4 for 3 and 4 bit, INT8/UINT8) or always 8-bit. */
export function containerDType(spec: Pick<QuantSpec, 'bits' | 'signed'>, variant: 'true-width' | 'int8-container'): DType {
  const w = variant === 'int8-container' ? 8 : spec.bits <= 2 ? 2 : spec.bits <= 4 ? 4 : 8;
  return `${spec.signed ? 'int' : 'uint'}${w}` as DType;
}

/** Round half to even (banker's rounding), as ONNX QuantizeLinear and Round do. */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d < 0.5) return f;
  if (d > 0.5) return f + 1;
  return f % 2 === 0 ? f : f + 1;
}

const clamp = (v: number, lo: number, hi: number): number => (v < lo ? lo : v > hi ? hi : v);

/**
 * Scale and zero point covering [lo, hi] (the range is widened to include 0 so that 0 is exact).
 * Symmetric signed: s = 2·max(|lo|, |hi|)/(qmax − qmin); symmetric unsigned: s = hi/qmax, z = 0;
 * asymmetric: s = (hi − lo)/(qmax − qmin), z = round(qmin − lo/s).
 */
export function paramsForRange(lo: number, hi: number, spec: QuantSpec): { scale: number; zeroPoint: number } {
  const { qmin, qmax } = rangeOf(spec);
  const tiny = 1e-8;
  if (spec.symmetric) {
    if (spec.signed) {
      const amax = Math.max(Math.abs(lo), Math.abs(hi));
      return { scale: Math.fround(Math.max((2 * amax) / (qmax - qmin), tiny)), zeroPoint: 0 };
    }
    return { scale: Math.fround(Math.max(Math.max(hi, 0) / qmax, tiny)), zeroPoint: 0 };
  }
  const l = Math.min(lo, 0);
  const h = Math.max(hi, 0);
  const scale = Math.fround(Math.max((h - l) / (qmax - qmin), tiny));
  return { scale, zeroPoint: clamp(roundHalfEven(qmin - l / scale), qmin, qmax) };
}

/** Shape helper: for per-channel params along `axis`, the channel of flat index i is floor(i / inner) % channels. */
function channelLayout(dims: readonly number[], spec: QuantSpec, nParams: number, what: string): { inner: number; channels: number } {
  if (spec.axis === undefined) {
    if (nParams !== 1) throw new TtaqError('INTERNAL', `${what}: per-tensor quantizer has ${nParams} scales, expected 1`);
    return { inner: 1, channels: 1 };
  }
  const axis = spec.axis < 0 ? spec.axis + dims.length : spec.axis;
  const channels = dims[axis];
  if (channels === undefined) {
    throw new TtaqError('INTERNAL', `${what}: axis ${spec.axis} is outside a tensor of rank ${dims.length}`);
  }
  if (channels !== nParams) {
    throw new TtaqError('INTERNAL', `${what}: ${nParams} scales for ${channels} channels on axis ${axis}`);
  }
  let inner = 1;
  for (let i = axis + 1; i < dims.length; i++) inner *= dims[i]!;
  return { inner, channels };
}

/** Integer codes q = clamp(round(x/s) + z, qmin, qmax) (x/s rounded to float32 first, like onnxruntime). */
export function quantize(x: ArrayLike<number>, dims: readonly number[], p: QuantParams): Int32Array {
  const { qmin, qmax } = rangeOf(p.spec);
  const { inner, channels } = channelLayout(dims, p.spec, p.scale.length, 'quantize');
  const out = new Int32Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const c = channels === 1 ? 0 : Math.floor(i / inner) % channels;
    out[i] = clamp(roundHalfEven(Math.fround(x[i]! / p.scale[c]!)) + p.zeroPoint[c]!, qmin, qmax);
  }
  return out;
}

/** Real values x^ = s·(q − z), in float32. */
export function dequantize(q: ArrayLike<number>, dims: readonly number[], p: QuantParams): Float32Array {
  const { inner, channels } = channelLayout(dims, p.spec, p.scale.length, 'dequantize');
  const out = new Float32Array(q.length);
  for (let i = 0; i < q.length; i++) {
    const c = channels === 1 ? 0 : Math.floor(i / inner) % channels;
    out[i] = p.scale[c]! * (q[i]! - p.zeroPoint[c]!);
  }
  return out;
}

/** Quantize then dequantize. */
export const fakeQuant = (x: ArrayLike<number>, dims: readonly number[], p: QuantParams): Float32Array =>
  dequantize(quantize(x, dims, p), dims, p);

/** Per-channel min and max along `axis` (whole tensor when axis is undefined). */
export function channelMinMax(x: ArrayLike<number>, dims: readonly number[], axis?: number): { min: Float64Array; max: Float64Array } {
  const spec: QuantSpec = { bits: 8, signed: false, symmetric: false, ...(axis === undefined ? {} : { axis }) };
  const nch = axis === undefined ? 1 : dims[axis < 0 ? axis + dims.length : axis] ?? 1;
  const { inner, channels } = channelLayout(dims, spec, nch, 'channelMinMax');
  const min = new Float64Array(channels).fill(Infinity);
  const max = new Float64Array(channels).fill(-Infinity);
  for (let i = 0; i < x.length; i++) {
    const c = channels === 1 ? 0 : Math.floor(i / inner) % channels;
    const v = x[i]!;
    if (v < min[c]!) min[c] = v;
    if (v > max[c]!) max[c] = v;
  }
  return { min, max };
}

/** Parameters from per-channel ranges. */
export function paramsFromRanges(min: ArrayLike<number>, max: ArrayLike<number>, spec: QuantSpec): QuantParams {
  const n = min.length;
  const scale = new Float32Array(n);
  const zeroPoint = new Int32Array(n);
  for (let c = 0; c < n; c++) {
    const p = paramsForRange(min[c]!, max[c]!, spec);
    scale[c] = p.scale;
    zeroPoint[c] = p.zeroPoint;
  }
  return { spec, scale, zeroPoint };
}

/** Signal-to-quantization-noise ratio in dB: 10·log10(Σx² / Σ(x − x^)²); Infinity when exact. */
export function sqnrDb(x: ArrayLike<number>, xq: ArrayLike<number>): number {
  let s = 0;
  let e = 0;
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    const d = v - xq[i]!;
    s += v * v;
    e += d * d;
  }
  if (e === 0) return Infinity;
  return 10 * Math.log10(s / e);
}
