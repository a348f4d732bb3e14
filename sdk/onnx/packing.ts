// Packing of sub-byte integers (int4/uint4/int2/uint2) as ONNX stores them: elements are packed
// from the least significant bits up (int4: two per byte, low nibble first; int2: four per byte,
// bits 0-1 first), and an odd tail is zero-padded. The IR holds them unpacked, one per byte, so
// these run only when a model is encoded or decoded.
import { TtaqError } from '../errors/index.ts';
import type { DType } from './types.ts';

export type SubByteDType = 'int4' | 'uint4' | 'int2' | 'uint2';

export const isSubByte = (dtype: DType): dtype is SubByteDType =>
  dtype === 'int4' || dtype === 'uint4' || dtype === 'int2' || dtype === 'uint2';

/** Bits per element of a sub-byte dtype. */
export const subByteBits = (dtype: SubByteDType): 2 | 4 => (dtype === 'int4' || dtype === 'uint4' ? 4 : 2);

const isSigned = (dtype: SubByteDType): boolean => dtype === 'int4' || dtype === 'int2';

/** Bytes that `n` packed elements of `dtype` occupy. */
export function packedByteLength(dtype: SubByteDType, n: number): number {
  const perByte = 8 / subByteBits(dtype);
  return Math.ceil(n / perByte);
}

/**
 * Packs unpacked values (one per array element) into ONNX's packed layout. Values outside the
 * dtype's range are an error, never silently wrapped.
 */
export function packSubByte(dtype: SubByteDType, values: ArrayLike<number>, where = 'tensor'): Uint8Array {
  const bits = subByteBits(dtype);
  const perByte = 8 / bits;
  const mask = (1 << bits) - 1;
  const lo = isSigned(dtype) ? -(1 << (bits - 1)) : 0;
  const hi = isSigned(dtype) ? (1 << (bits - 1)) - 1 : mask;
  const out = new Uint8Array(packedByteLength(dtype, values.length));
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (!(v >= lo && v <= hi) || !Number.isInteger(v)) {
      throw new TtaqError(
        'ONNX_INVALID_GRAPH',
        `${where}: element ${i} is ${v}, outside the ${dtype} range [${lo}, ${hi}]; clamp or requantize before packing`,
        { dtype, index: i, value: v },
      );
    }
    out[(i / perByte) | 0]! |= (v & mask) << ((i % perByte) * bits);
  }
  return out;
}

/** Unpacks `n` elements from ONNX's packed layout (signed types sign-extended). */
export function unpackSubByte(dtype: 'int4' | 'int2', packed: Uint8Array, n: number, where?: string): Int8Array;
export function unpackSubByte(dtype: 'uint4' | 'uint2', packed: Uint8Array, n: number, where?: string): Uint8Array;
export function unpackSubByte(dtype: SubByteDType, packed: Uint8Array, n: number, where?: string): Int8Array | Uint8Array;
export function unpackSubByte(dtype: SubByteDType, packed: Uint8Array, n: number, where = 'tensor'): Int8Array | Uint8Array {
  const need = packedByteLength(dtype, n);
  if (packed.length !== need) {
    throw new TtaqError(
      'ONNX_INVALID_GRAPH',
      `${where}: ${n} ${dtype} elements need ${need} packed bytes, got ${packed.length}; the file is corrupt or was written with a different packing`,
      { dtype, elements: n, bytes: packed.length },
    );
  }
  const bits = subByteBits(dtype);
  const perByte = 8 / bits;
  const mask = (1 << bits) - 1;
  const shift = 32 - bits;
  if (isSigned(dtype)) {
    const out = new Int8Array(n);
    for (let i = 0; i < n; i++) out[i] = (((packed[(i / perByte) | 0]! >> ((i % perByte) * bits)) & mask) << shift) >> shift;
    return out;
  }
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (packed[(i / perByte) | 0]! >> ((i % perByte) * bits)) & mask;
  return out;
}
