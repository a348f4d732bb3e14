// Shape and dtype inference by running the model once: every intermediate value is exposed as an
// untyped graph output, onnxruntime infers the types, and one run on zero (or given) inputs gives
// concrete shapes. Results are cached by a hash of the probe model's bytes and the input shapes.
import { createHash } from 'node:crypto';
import { TtaqError } from '../errors/index.ts';
import { createSession, rewriteSubByteIO, type SessionOptions } from '../runtime/index.ts';
import { ONNX_DTYPE, encodeModel, dtypeFromOnnx, tensorRawBytes } from './codec.ts';
import { isSubByte, type SubByteDType } from './packing.ts';
import { nameAllocator } from './edit.ts';
import { zeros } from './tensor.ts';
import type { DType, Graph, Model, Node, Tensor, ValueInfo } from './types.ts';

export interface InferShapesOptions {
  /** Concrete shapes for inputs whose declared shape has dynamic dims. */
  readonly inputShapes?: Readonly<Record<string, readonly number[]>>;
  /** Input values to run with (default: zeros of the input's shape). Needed when shapes depend on data. */
  readonly feeds?: Readonly<Record<string, Tensor>>;
  /** Session options for the probe run (default: cpu, quiet). */
  readonly session?: SessionOptions;
  /** Bypass the cache. */
  readonly noCache?: boolean;
}

/** Ops whose output has the dtype of their first input (used to track sub-byte values statically). */
const SAME_DTYPE_OPS = new Set([
  'Identity', 'Reshape', 'Transpose', 'Squeeze', 'Unsqueeze', 'Flatten', 'Slice', 'Gather', 'GatherElements',
  'GatherND', 'Concat', 'Split', 'Expand', 'Tile', 'Pad', 'DepthToSpace', 'SpaceToDepth', 'Compress', 'ReverseSequence',
]);

/**
 * Values of sub-byte dtype, found statically (onnxruntime-node cannot hand them over, so the
 * probe exposes them through a Cast to int8/uint8): sub-byte inputs and initializers, Constants,
 * QuantizeLinear with a sub-byte zero point or output_dtype, Cast/CastLike to a sub-byte type, and
 * data-movement ops applied to any of these.
 */
export function subByteValues(g: Graph): Map<string, SubByteDType> {
  const sub = new Map<string, SubByteDType>();
  for (const v of g.inputs) if (isSubByte(v.dtype)) sub.set(v.name, v.dtype);
  for (const [k, t] of g.initializers) if (isSubByte(t.dtype)) sub.set(k, t.dtype);
  const fromCode = (code: number | undefined): SubByteDType | undefined => {
    const d = code === undefined ? undefined : dtypeFromOnnx(code);
    return d && isSubByte(d) ? d : undefined;
  };
  const intAttr = (n: Node, k: string): number | undefined => {
    const a = n.attrs[k];
    return a?.kind === 'int' ? a.value : undefined;
  };
  for (const n of g.nodes) {
    let d: SubByteDType | undefined;
    if (n.domain !== '') continue;
    switch (n.opType) {
      case 'Constant': {
        const a = n.attrs.value;
        if (a?.kind === 'tensor' && isSubByte(a.value.dtype)) d = a.value.dtype;
        break;
      }
      case 'QuantizeLinear':
        d = (n.inputs[2] ? sub.get(n.inputs[2]) : undefined) ?? fromCode(intAttr(n, 'output_dtype'));
        break;
      case 'Cast':
        d = fromCode(intAttr(n, 'to'));
        break;
      case 'CastLike':
        d = n.inputs[1] ? sub.get(n.inputs[1]) : undefined;
        break;
      default:
        if (SAME_DTYPE_OPS.has(n.opType)) d = n.inputs.map((v) => sub.get(v)).find((x) => x !== undefined);
    }
    if (d) for (const o of n.outputs) if (o !== '') sub.set(o, d);
  }
  return sub;
}

const cache = new Map<string, ReadonlyMap<string, ValueInfo>>();
const CACHE_SIZE = 32;

function concreteInputShape(v: ValueInfo, opts: InferShapesOptions): number[] {
  const given = opts.feeds?.[v.name]?.dims ?? opts.inputShapes?.[v.name];
  if (given) return [...given];
  if (!v.shape) {
    throw new TtaqError('ONNX_DYNAMIC_SHAPE', `input '${v.name}' has no declared shape; pass a concrete one, e.g. inputShapes: { '${v.name}': [1, 3, 32, 32] }`, { input: v.name });
  }
  const bad = v.shape.findIndex((d) => typeof d !== 'number' || d < 0);
  if (bad >= 0) {
    const d = v.shape[bad];
    throw new TtaqError(
      'ONNX_DYNAMIC_SHAPE',
      `input '${v.name}' has a dynamic dimension ${bad} (${d === null ? 'unnamed' : `'${d}'`}) in shape [${v.shape.map((x) => x ?? '?').join(', ')}]; ` +
        `pass a concrete shape, e.g. inputShapes: { '${v.name}': [${v.shape.map((x) => (typeof x === 'number' ? x : 1)).join(', ')}] }`,
      { input: v.name, dim: bad },
    );
  }
  return v.shape as number[];
}

/**
 * Dtype and concrete shape of every value in the model's top-level graph (inputs, initializers and
 * node outputs). Throws ONNX_DYNAMIC_SHAPE naming the input when an input has a non-static
 * dimension and no concrete shape or feed is given.
 */
export async function inferShapes(model: Model, opts: InferShapesOptions = {}): Promise<Map<string, ValueInfo>> {
  const g = model.graph;
  const shapes = new Map(g.inputs.map((v) => [v.name, concreteInputShape(v, opts)]));

  const sub = subByteValues(g);
  const exposed: ValueInfo[] = [];
  const casts: Node[] = [];
  const fetchOf = new Map<string, string>();
  const fresh = nameAllocator(g);
  for (const n of g.nodes) {
    for (const o of n.outputs) {
      if (o === '' || fetchOf.has(o)) continue;
      const d = sub.get(o);
      if (d) {
        const wide: DType = d === 'int4' || d === 'int2' ? 'int8' : 'uint8';
        const c = fresh(`${o}__ttaq_probe`);
        casts.push({ name: fresh(`${o}__ttaq_probe_cast`), opType: 'Cast', domain: '', inputs: [o], outputs: [c], attrs: { to: { kind: 'int', value: ONNX_DTYPE[wide] } } });
        fetchOf.set(o, c);
        exposed.push({ name: c, dtype: wide });
      } else {
        fetchOf.set(o, o);
        exposed.push({ name: o, dtype: 'float32' });
      }
    }
  }
  const probeGraph: Graph = { ...g, nodes: [...g.nodes, ...casts], outputs: exposed, valueInfo: new Map() };
  const rw = rewriteSubByteIO({ ...model, graph: probeGraph });
  const untyped = new Set(exposed.filter((v) => !casts.some((c) => c.outputs[0] === v.name)).map((v) => v.name));
  const bytes = encodeModel(rw.model, { untypedOutputs: untyped });

  const feeds: Record<string, Tensor> = {};
  for (const v of g.inputs) {
    const t = opts.feeds?.[v.name] ?? (zeros(v.dtype, shapes.get(v.name)!) as Tensor);
    const r = rw.inputs.get(v.name);
    feeds[r?.feed ?? v.name] = r ? ({ dtype: v.dtype === 'int4' || v.dtype === 'int2' ? 'int8' : 'uint8', dims: t.dims, data: t.data } as Tensor) : t;
  }

  const h = createHash('sha256').update(bytes);
  for (const [k, t] of Object.entries(feeds)) {
    h.update(`${k}:${t.dtype}:${t.dims.join('x')};`);
    if (opts.feeds?.[k]) h.update(tensorRawBytes(t));
  }
  const key = h.digest('hex');
  const hit = opts.noCache ? undefined : cache.get(key);
  if (hit) return new Map(hit);

  const result = new Map<string, ValueInfo>();
  for (const v of g.inputs) result.set(v.name, { name: v.name, dtype: v.dtype, shape: shapes.get(v.name)! });
  for (const [k, t] of g.initializers) result.set(k, { name: k, dtype: t.dtype, shape: [...t.dims] });

  if (exposed.length > 0) {
    const session = await createSession(bytes, { providers: ['cpu'], logger: () => {}, graphOptimization: 'disabled', source: 'the shape-inference probe', ...opts.session });
    try {
      const out = await session.run(feeds);
      for (const [name, fetch] of fetchOf) {
        const t = out[fetch]!;
        result.set(name, { name, dtype: sub.get(name) ?? t.dtype, shape: [...t.dims] });
      }
    } finally {
      await session.release();
    }
  }
  cache.set(key, result);
  if (cache.size > CACHE_SIZE) cache.delete(cache.keys().next().value!);
  return new Map(result);
}

/** Empties the shape cache (tests, long-running processes after large models). */
export function clearShapeCache(): void {
  cache.clear();
}
