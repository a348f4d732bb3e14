// Tensor construction and small helpers. Element loops here run over shapes or at model build
// time, never per inference.
import { TtaqError } from '../errors/index.ts';
import type { ArrayFor, DType, Tensor, TensorOf } from './types.ts';

const ctor: { [K in DType]: new (n: number) => ArrayFor[K] } = {
  float32: Float32Array, float64: Float64Array, float16: Uint16Array,
  int8: Int8Array, uint8: Uint8Array, int16: Int16Array, uint16: Uint16Array,
  int32: Int32Array, uint32: Uint32Array, int64: BigInt64Array, uint64: BigUint64Array,
  bool: Uint8Array, int4: Int8Array, uint4: Uint8Array, int2: Int8Array, uint2: Uint8Array,
};

export const numel = (dims: readonly number[]): number => dims.reduce((a, b) => a * b, 1);

/** Allocates a zero-filled array for `n` elements of `dtype`. */
export function allocArray<K extends DType>(dtype: K, n: number): ArrayFor[K] {
  return new ctor[dtype](n);
}

/** Builds a tensor, checking that the data length matches the shape. */
export function makeTensor<K extends DType>(dtype: K, dims: readonly number[], data: ArrayFor[K]): TensorOf<K> {
  const want = ctor[dtype] as (new (n: number) => ArrayFor[K]) | undefined;
  if (!want) throw new TtaqError('ONNX_INVALID_GRAPH', `unknown tensor dtype '${String(dtype)}'; use one of ${Object.keys(ctor).join(', ')}`);
  // The type system says this already, but JavaScript callers and casts get past it: a Float64Array
  // labelled float32 would be read by onnxruntime as other bytes, or refused deep inside a run.
  if (!(data instanceof want)) {
    const got = (data as { constructor?: { name?: string } } | null)?.constructor?.name ?? typeof data;
    throw new TtaqError('ONNX_INVALID_GRAPH', `a ${dtype} tensor holds its elements in a ${want.name}, got ${got}; convert first (e.g. ${want.name}.from(data)), or use f32 / f64 / i64 from sdk/onnx, which convert`);
  }
  const n = numel(dims);
  if (data.length !== n) {
    throw new TtaqError('ONNX_INVALID_GRAPH', `tensor of shape [${dims.join(', ')}] needs ${n} elements, got ${data.length}`);
  }
  return { dtype, dims: [...dims], data };
}

export const f32 = (dims: readonly number[], data: ArrayLike<number>): TensorOf<'float32'> =>
  makeTensor('float32', dims, Float32Array.from(data));

export const f64 = (dims: readonly number[], data: ArrayLike<number>): TensorOf<'float64'> =>
  makeTensor('float64', dims, Float64Array.from(data));

export const i64 = (dims: readonly number[], data: ArrayLike<number | bigint>): TensorOf<'int64'> =>
  makeTensor('int64', dims, BigInt64Array.from(Array.from(data, (v) => BigInt(v))));

export const zeros = <K extends DType>(dtype: K, dims: readonly number[]): TensorOf<K> =>
  makeTensor(dtype, dims, allocArray(dtype, numel(dims)));

/** Numeric view of any tensor's elements (int64 converted to number). */
export function toNumbers(t: Tensor): Float64Array {
  const out = new Float64Array(t.data.length);
  for (let i = 0; i < t.data.length; i++) out[i] = Number(t.data[i]);
  return out;
}

/** Value range of sub-byte and small integer types. */
export const intRange: Partial<Record<DType, readonly [number, number]>> = {
  int2: [-2, 1], uint2: [0, 3], int4: [-8, 7], uint4: [0, 15],
  int8: [-128, 127], uint8: [0, 255], int16: [-32768, 32767], uint16: [0, 65535],
};
