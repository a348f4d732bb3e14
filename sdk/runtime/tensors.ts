// IR Tensor <-> ort.Tensor. The typed array is wrapped, never copied, in both directions.
// Sub-byte types never cross this seam: the session rewrites them to int8/uint8 (see subbyte.ts),
// because onnxruntime-node 1.30 crashes fetching int4 outputs and cannot describe int2 at all.
import * as ort from 'onnxruntime-node';
import { TtaqError } from '../errors/index.ts';
import type { DType, Tensor } from '../onnx/types.ts';

const ORT_TYPES: ReadonlySet<string> = new Set([
  'float32', 'float64', 'float16', 'int8', 'uint8', 'int16', 'uint16', 'int32', 'uint32', 'int64', 'uint64', 'bool',
]);

/** Wraps an IR tensor as an ort.Tensor without copying its data. */
export function toOrt(t: Tensor, name: string): ort.Tensor {
  if (!ORT_TYPES.has(t.dtype)) {
    throw new TtaqError('RUNTIME_RUN_FAILED', `feed '${name}' has dtype ${t.dtype}, which cannot be fed directly; this is a bug in sdk/runtime (sub-byte feeds are cast to int8)`, { input: name });
  }
  return new ort.Tensor(t.dtype as ort.Tensor.Type, t.data as ort.Tensor.DataType, t.dims as number[]);
}

/** Wraps an ort.Tensor as an IR tensor without copying its data. */
export function fromOrt(v: ort.OnnxValue, name: string): Tensor {
  const t = v as ort.Tensor;
  const dtype = t.type as string;
  if (!ORT_TYPES.has(dtype)) {
    throw new TtaqError('RUNTIME_RUN_FAILED', `output '${name}' has type ${dtype}, which ttaq cannot hold; cast it to a supported dtype in the model`, { output: name, type: dtype });
  }
  let data = t.data as Tensor['data'];
  // float16 stays raw bits (Uint16Array) in the IR, whatever the binding returns.
  if (dtype === 'float16' && !(data instanceof Uint16Array)) {
    const d = data as unknown as ArrayBufferView;
    data = new Uint16Array(d.buffer, d.byteOffset, d.byteLength / 2);
  }
  return { dtype: dtype as DType, dims: [...t.dims], data } as Tensor;
}
