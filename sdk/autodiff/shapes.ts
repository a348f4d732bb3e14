// Static dtypes and dims of every value of a model, for the rules that need them (spatial extents
// of Conv/pools, broadcast axes). A thin adapter over sdk/onnx/shapes.ts (one onnxruntime run with
// every intermediate exposed): symbolic input dims are fed at `sampleBatch` (default 2, so that a
// batch dim is never mistaken for a broadcast dim of size 1).
import type { DType, Model, Tensor } from '../onnx/types.ts';
import { inferShapes } from '../runtime/shapes.ts';
import type { SessionOptions } from '../runtime/index.ts';

export interface ValueShape {
  readonly dtype: DType;
  readonly dims: readonly number[];
}
export type ValueShapes = ReadonlyMap<string, ValueShape>;

export interface InferShapesOptions {
  /** Size of symbolic dims in the sample feeds (default 2). */
  readonly sampleBatch?: number | undefined;
  /** Feeds for some or all inputs (default: zeros). */
  readonly feeds?: Readonly<Record<string, Tensor>> | undefined;
  /** Session options for the one run (default: CPU). */
  readonly session?: SessionOptions | undefined;
}

/** dtype and dims of every input, initializer and node output of `model`. */
export async function inferValueShapes(model: Model, opts: InferShapesOptions = {}): Promise<ValueShapes> {
  const batch = opts.sampleBatch ?? 2;
  const inputShapes: Record<string, number[]> = {};
  for (const v of model.graph.inputs) {
    if (opts.feeds?.[v.name] || !v.shape || v.shape.every((d) => typeof d === 'number')) continue;
    inputShapes[v.name] = v.shape.map((d) => (typeof d === 'number' ? d : batch));
  }
  const infos = await inferShapes(model, {
    inputShapes,
    ...(opts.feeds ? { feeds: opts.feeds } : {}),
    ...(opts.session ? { session: opts.session } : {}),
  });
  const out = new Map<string, ValueShape>();
  for (const [k, v] of infos) {
    if (v.shape && v.shape.every((d) => typeof d === 'number')) out.set(k, { dtype: v.dtype, dims: v.shape as number[] });
  }
  return out;
}
