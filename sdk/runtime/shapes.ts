// Shape and dtype inference by running the model once: every intermediate value is exposed as an
// untyped graph output, onnxruntime infers the types, and one run on zero (or given) inputs gives
// concrete shapes. Results are cached by a hash of the probe model's bytes and the input shapes.
// It lives beside the sessions because it runs one; sdk/onnx stays free of onnxruntime.
import { createHash } from 'node:crypto';
import { TtaqError } from '../errors/index.ts';
import { ONNX_DTYPE, encodeModel, tensorRawBytes } from '../onnx/codec.ts';
import { nameAllocator } from '../onnx/edit.ts';
import { subByteValues } from '../onnx/subbyte-values.ts';
import { zeros } from '../onnx/tensor.ts';
import type { DType, Graph, Model, Node, Tensor, ValueInfo } from '../onnx/types.ts';
import { createSession, type SessionOptions } from './session.ts';
import { rewriteSubByteIO } from './subbyte.ts';

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
