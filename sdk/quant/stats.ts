// Calibration statistics measured by running calibration images through the FP model in
// onnxruntime, with the values of interest exposed as extra outputs and reduced inside the graph
// (min, max, per-channel sums), so only small vectors cross into JavaScript.
//
// A model that keeps a fixed batch size B (one batchdim.ts could not free) runs B images at a time,
// whatever the count: a last partial batch of n < B images is padded with repeats of its own
// images (paddedSlice), and only its first n rows count: per-image outputs are cut to them, and
// graphs that reduce over the batch first Gather the real rows (fed through REAL_ROWS). The results
// are those of the real images alone when an image's outputs do not depend on the other images of
// its batch, which quantize checks before it lets a batch be padded (batchdim.ts, independentRows).
import { TtaqError } from '../errors/index.ts';
import { A, GraphBuilder } from '../onnx/builder.ts';
import { f32, makeTensor } from '../onnx/tensor.ts';
import type { Model, Tensor } from '../onnx/types.ts';
import { getOpset } from '../onnx/versions.ts';
import { createSession, type Session } from '../runtime/index.ts';
import { rangeOf, type QuantSpec } from './quantizer.ts';

/** Preprocessed calibration images, NCHW float32 (what the model's input takes), optional labels. */
export interface CalibSet {
  readonly images: Float32Array;
  readonly dims: readonly number[];
  readonly labels?: ArrayLike<number>;
}

export const setSize = (s: CalibSet): number => s.dims[0]!;
export const sampleSize = (s: CalibSet): number => s.dims.slice(1).reduce((a, b) => a * b, 1);

/** Images [start, start + n) as a tensor (a view, no copy). */
export function sliceSet(s: CalibSet, start: number, n: number): Tensor {
  const per = sampleSize(s);
  return makeTensor('float32', [n, ...s.dims.slice(1)], s.images.subarray(start * per, (start + n) * per));
}

/**
 * Images [start, start + n) as a batch of `size` rows (n <= size): the n images, then repeats of
 * them in turn (image start, start + 1, ...) up to `size`. A view when n = size.
 */
export function paddedSlice(s: CalibSet, start: number, n: number, size: number): Tensor {
  if (n === size) return sliceSet(s, start, n);
  if (!(n >= 1 && n < size)) throw new TtaqError('INTERNAL', `paddedSlice: ${n} images cannot fill a batch of ${size}`);
  const per = sampleSize(s);
  const out = new Float32Array(size * per);
  for (let i = 0; i < size; i++) {
    const k = start + (i % n);
    out.set(s.images.subarray(k * per, (k + 1) * per), i * per);
  }
  return makeTensor('float32', [size, ...s.dims.slice(1)], out);
}

/** The first `n` rows (images) of an output whose leading dimension is the batch. */
export function realRows(t: Tensor, n: number): Float32Array {
  const d = t.data as Float32Array;
  const rows = t.dims[0] ?? 1;
  return rows === n ? d : d.subarray(0, (d.length / rows) * n);
}

/** The graph input (int64 [n]) that tells a statistics graph of a fixed-batch model which rows are real images: 0 .. n-1. */
export const REAL_ROWS = 'ttaq.real_rows';

/** How a pass runs a model over a set: at its fixed batch (padded at the end), else `dflt` images at a time. */
export function batching(model: Model, dflt: number): { readonly batch: number; readonly fixed: boolean } {
  const f = fixedBatch(model);
  return f === undefined ? { batch: dflt, fixed: false } : { batch: f, fixed: true };
}

/** In a statistics graph of a fixed-batch model: `v` cut to the real rows (REAL_ROWS, declared on first use); else `v`. */
function realPart(b: GraphBuilder, v: string, fixed: boolean): string {
  if (!fixed) return v;
  if (!b.inputs.some((i) => i.name === REAL_ROWS)) b.input(REAL_ROWS, 'int64', ['rows']);
  return b.op1('Gather', [v, REAL_ROWS], { axis: A.int(0) });
}

/** Emits ReduceX over `axes` (all axes when undefined), attribute or input form by opset. */
export function reduce(b: GraphBuilder, op: string, x: string, axes: readonly number[] | undefined, opset: number, keepdims = 0): string {
  const inputForm = op === 'ReduceSum' ? opset >= 13 : opset >= 18;
  if (!axes) return b.op1(op, [x], { keepdims: A.int(keepdims) });
  return inputForm
    ? b.op1(op, [x, b.ints(axes)], { keepdims: A.int(keepdims) })
    : b.op1(op, [x], { axes: A.ints(axes), keepdims: A.int(keepdims) });
}

/** A copy of the model whose outputs are `outputs` (values of the graph) instead of its own. */
export function withOutputs(model: Model, outputs: readonly string[]): Model {
  const inputs = new Set(model.graph.inputs.map((i) => i.name));
  const extra = outputs.filter((o) => inputs.has(o)).map((o) => ({ name: `${o}:as_output`, opType: 'Identity', domain: '', inputs: [o], outputs: [o + ':copy'], attrs: {} }));
  return {
    ...model,
    graph: {
      ...model.graph,
      nodes: [...extra, ...model.graph.nodes],
      outputs: outputs.map((name) => ({ name: inputs.has(name) ? name + ':copy' : name, dtype: 'float32' as const })),
    },
  };
}

/** The output name `withOutputs` gives a value. */
export const outputNameOf = (model: Model, v: string): string => (model.graph.inputs.some((i) => i.name === v) ? v + ':copy' : v);

const inputName = (m: Model): string => {
  const ins = m.graph.inputs.filter((i) => !m.graph.initializers.has(i.name));
  if (ins.length !== 1) throw new TtaqError('QUANT_BAD_MODEL', `model '${m.graph.name}' has ${ins.length} data inputs; the quantizer needs exactly one image input`);
  return ins[0]!.name;
};

export const modelInput = inputName;

/** The fixed batch size of the model's input, or undefined when the batch dimension is symbolic. */
export function fixedBatch(m: Model): number | undefined {
  const name = inputName(m);
  const d = m.graph.inputs.find((i) => i.name === name)?.shape?.[0];
  return typeof d === 'number' ? d : undefined;
}

export interface BatchRun {
  /** The session takes exactly `batch` images (a fixed batch dimension): a last partial batch is
   * padded (paddedSlice), and its outputs hold `batch` rows, the `n` real ones first. */
  readonly fixed?: boolean;
  /** Feed REAL_ROWS (0 .. n-1) with each batch: the graph Gathers the real rows itself. */
  readonly rows?: boolean;
}

/** Runs a session over the first `limit` images of the set in batches; `fn` receives each batch's outputs and its count of real images. */
export async function forBatches(
  s: Session,
  input: string,
  set: CalibSet,
  batch: number,
  fetch: readonly string[],
  fn: (out: Record<string, Tensor>, start: number, n: number) => void,
  limit = setSize(set),
  o: BatchRun = {},
): Promise<void> {
  for (let start = 0; start < limit; start += batch) {
    const n = Math.min(batch, limit - start);
    const x = o.fixed ? paddedSlice(set, start, n, batch) : sliceSet(set, start, n);
    const feeds = o.rows ? { [input]: x, [REAL_ROWS]: makeTensor('int64', [n], BigInt64Array.from({ length: n }, (_, i) => BigInt(i))) } : { [input]: x };
    fn(await s.run(feeds, fetch), start, n);
  }
}

/** Ranks of values, from one run of the model on one image. */
export async function valueDims(model: Model, values: readonly string[], set: CalibSet): Promise<Map<string, readonly number[]>> {
  const s = await createSession(withOutputs(model, values), { source: `shape probe of '${model.graph.name}'` });
  try {
    const f = fixedBatch(model);
    const out = await s.run({ [inputName(model)]: f === undefined ? sliceSet(set, 0, 1) : paddedSlice(set, 0, Math.min(f, setSize(set)), f) });
    return new Map(values.map((v) => [v, out[outputNameOf(model, v)]!.dims]));
  } finally {
    await s.release();
  }
}

export interface ValueStats {
  readonly min: number;
  readonly max: number;
  /** Per-channel mean and variance (channel = axis 1), over batch and spatial positions. */
  readonly mean: Float64Array;
  readonly variance: Float64Array;
  /** Mean per-sample energy Σx² (over one sample's elements). */
  readonly energy: number;
  readonly dims: readonly number[];
}

/**
 * Min, max, per-channel mean/variance and per-sample energy of `values` over the first `limit`
 * images, reduced inside onnxruntime.
 */
export async function collectStats(model: Model, values: readonly string[], set: CalibSet, opts: { batch?: number; limit?: number } = {}): Promise<Map<string, ValueStats>> {
  const uniq = [...new Set(values)];
  if (uniq.length === 0) return new Map();
  const dims = await valueDims(model, uniq, set);
  const opset = getOpset(model) ?? 13;
  const run = batching(model, opts.batch ?? 64);
  const b = GraphBuilder.from(model.graph);
  b.outputs.length = 0;
  const outs: { v: string; min: string; max: string; s1: string; s2: string; e: string }[] = [];
  for (const v of uniq) {
    const rank = dims.get(v)!.length;
    const axes = rank >= 2 ? [0, ...Array.from({ length: rank - 2 }, (_, i) => i + 2)] : [0];
    const x = realPart(b, v, run.fixed);
    const sq = b.op1('Mul', [x, x]);
    const o = {
      v,
      min: reduce(b, 'ReduceMin', x, undefined, opset),
      max: reduce(b, 'ReduceMax', x, undefined, opset),
      s1: reduce(b, 'ReduceSum', x, axes, opset),
      s2: reduce(b, 'ReduceSum', sq, axes, opset),
      e: reduce(b, 'ReduceSum', sq, undefined, opset),
    };
    for (const k of ['min', 'max', 's1', 's2', 'e'] as const) b.output(o[k]);
    outs.push(o);
  }
  const s = await createSession({ ...model, graph: b.build() }, { source: `statistics of '${model.graph.name}'` });
  const acc = outs.map((o) => {
    const d = dims.get(o.v)!;
    const c = d.length >= 2 ? d[1]! : 1;
    return { min: Infinity, max: -Infinity, s1: new Float64Array(c), s2: new Float64Array(c), e: 0, count: 0, perSample: d.slice(2).reduce((a, x) => a * x, 1) };
  });
  const limit = Math.min(opts.limit ?? setSize(set), setSize(set));
  try {
    await forBatches(s, inputName(model), set, run.batch, outs.flatMap((o) => [o.min, o.max, o.s1, o.s2, o.e]), (r, _start, n) => {
      outs.forEach((o, i) => {
        const a = acc[i]!;
        a.min = Math.min(a.min, r[o.min]!.data[0] as number);
        a.max = Math.max(a.max, r[o.max]!.data[0] as number);
        const s1 = r[o.s1]!.data as Float32Array;
        const s2 = r[o.s2]!.data as Float32Array;
        for (let c = 0; c < a.s1.length; c++) { a.s1[c]! += s1[c]!; a.s2[c]! += s2[c]!; }
        a.e += r[o.e]!.data[0] as number;
        a.count += n;
      });
    }, limit, { fixed: run.fixed, rows: run.fixed });
  } finally {
    await s.release();
  }
  const res = new Map<string, ValueStats>();
  outs.forEach((o, i) => {
    const a = acc[i]!;
    const m = a.count * a.perSample;
    const mean = a.s1.map((x) => x / m);
    const variance = a.s2.map((x, c) => Math.max(0, x / m - mean[c]! ** 2));
    res.set(o.v, { min: a.min, max: a.max, mean, variance, energy: a.e / a.count, dims: dims.get(o.v)! });
  });
  return res;
}

/**
 * Squared quantization error of every candidate (scale, zero point) for each value, summed over the
 * first `limit` images; evaluated inside onnxruntime, one [K, n] broadcast per value and batch.
 */
export async function candidateErrorsOrt(
  model: Model,
  sites: readonly { value: string; spec: QuantSpec; scale: Float32Array; zeroPoint: Float32Array }[],
  set: CalibSet,
  opts: { limit?: number; maxElements?: number } = {},
): Promise<Map<string, Float64Array>> {
  if (sites.length === 0) return new Map();
  const opset = getOpset(model) ?? 13;
  const dims = await valueDims(model, sites.map((s) => s.value), set);
  const fixed = fixedBatch(model);
  const b = GraphBuilder.from(model.graph);
  b.outputs.length = 0;
  const errOut = new Map<string, string>();
  let perSample = 1;
  for (const site of sites) {
    const k = site.scale.length;
    const { qmin, qmax } = rangeOf(site.spec);
    const d = dims.get(site.value)!;
    perSample = Math.max(perSample, d.slice(1).reduce((a, x) => a * x, 1) * k);
    const s = b.constant(f32([k, 1], site.scale), `${site.value}_cand_scale`);
    // Zero is exactly representable under every candidate (its zero point is an integer code), so an
    // exact zero adds no error: the search keeps only the nonzero values (about half of a ReLU's
    // output). After a ReLU every zero point is 0 and the two zero-point ops are skipped.
    const z = site.zeroPoint.every((v) => v === 0) ? undefined : b.constant(f32([k, 1], site.zeroPoint), `${site.value}_cand_zp`);
    const vec = b.op1('Reshape', [realPart(b, site.value, fixed !== undefined), b.ints([-1])]);
    const flat = b.op1('Gather', [vec, b.op1('NonZero', [vec])], { axis: A.int(0) }); // [1, nonzero count]
    const r = b.op1('Round', [b.op1('Div', [flat, s])]);
    const q = b.op1('Clip', [z ? b.op1('Add', [r, z]) : r, b.scalar(qmin), b.scalar(qmax)]);
    const dq = b.op1('Mul', [z ? b.op1('Sub', [q, z]) : q, s]);
    const e = reduce(b, 'ReduceSumSquare', b.op1('Sub', [dq, flat]), [1], opset);
    b.output(e);
    errOut.set(site.value, e);
  }
  const maxEl = opts.maxElements ?? 4_000_000;
  const batch = fixed ?? Math.max(1, Math.floor(maxEl / perSample));
  const s = await createSession({ ...model, graph: b.build() }, { source: `activation search of '${model.graph.name}'` });
  const acc = new Map(sites.map((x) => [x.value, new Float64Array(x.scale.length)]));
  try {
    await forBatches(s, inputName(model), set, batch, [...errOut.values()], (r) => {
      for (const [v, name] of errOut) {
        const e = r[name]!.data as Float32Array;
        const a = acc.get(v)!;
        for (let i = 0; i < a.length; i++) a[i]! += e[i]!;
      }
    }, Math.min(opts.limit ?? setSize(set), setSize(set)), { fixed: fixed !== undefined, rows: fixed !== undefined });
  } finally {
    await s.release();
  }
  return acc;
}

/** Raw values of `value` over the first `limit` images, subsampled to at most `cap` numbers (percentile, JS search). */
export async function sampleValues(model: Model, values: readonly string[], set: CalibSet, opts: { limit?: number; cap?: number; batch?: number } = {}): Promise<Map<string, Float32Array>> {
  const s = await createSession(withOutputs(model, values), { source: `value sampling of '${model.graph.name}'` });
  const cap = opts.cap ?? 1_000_000;
  const limit = Math.min(opts.limit ?? setSize(set), setSize(set));
  const chunks = new Map<string, Float32Array[]>(values.map((v) => [v, []]));
  try {
    const run = batching(model, opts.batch ?? 32);
    await forBatches(s, inputName(model), set, run.batch, values.map((v) => outputNameOf(model, v)), (r, _start, n) => {
      for (const v of values) {
        const d = realRows(r[outputNameOf(model, v)]!, n);
        const keep = Math.max(1, Math.floor((cap * n) / limit));
        const stride = Math.max(1, Math.floor(d.length / keep));
        if (stride === 1) { chunks.get(v)!.push(Float32Array.from(d)); continue; }
        const out = new Float32Array(Math.ceil(d.length / stride));
        for (let i = 0, k = 0; i < d.length; i += stride) out[k++] = d[i]!;
        chunks.get(v)!.push(out);
      }
    }, limit, { fixed: run.fixed });
  } finally {
    await s.release();
  }
  const res = new Map<string, Float32Array>();
  for (const [v, list] of chunks) {
    const total = list.reduce((a, c) => a + c.length, 0);
    const all = new Float32Array(total);
    let o = 0;
    for (const c of list) { all.set(c, o); o += c.length; }
    res.set(v, all);
  }
  return res;
}
