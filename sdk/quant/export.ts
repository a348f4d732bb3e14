// QDQ export. Weights are stored as integer initializers at their true width (INT2/UINT2 at opset
// 25, INT4/UINT4 at opset 21 — 3-bit values inside 4-bit containers — INT8/UINT8) followed by a
// per-axis DequantizeLinear whose output keeps the weight's original name, so the consumers are
// untouched. Activations get QuantizeLinear → DequantizeLinear pairs in front of their quantized
// consumers, in the narrowest container onnxruntime 1.30 runs on CPU: in the true-width variant
// UINT2 (opset 25) for 2-bit, UINT4 (opset 21) for 3- and 4-bit, UINT8 for 8-bit activations; in
// the int8-container variant always UINT8. Where the container is wider than the configured width
// (3-bit in UINT4, 2/3/4-bit in UINT8) a clamp to [s·(qmin − z), s·(qmax − z)] goes in front (a
// Clip before UINT8; Max then Min before UINT4, which onnxruntime's ClipQuantFusion would reject as
// a Clip), so the saturating cast only ever sees the configured 2^b levels and both variants
// compute identical numbers.
import { TtaqError } from '../errors/index.ts';
import { A, GraphBuilder } from '../onnx/builder.ts';
import { f32, makeTensor } from '../onnx/tensor.ts';
import type { DType, Graph, Model, Node, Tensor } from '../onnx/types.ts';
import { getOpset, setOpset } from '../onnx/versions.ts';
import type { QuantPlan } from './plan.ts';
import { splitClipsBeforeSubByteQuantize } from '../runtime/index.ts';
import { containerDType, dequantize, rangeOf, type QuantParams } from './quantizer.ts';

export type ExportVariant = 'true-width' | 'int8-container';

/** The learned quantizer values of a whole model. */
export interface QuantValues {
  readonly plan: QuantPlan;
  /** Per weighted node: scale/zero point and the integer codes (same layout as the float weight). */
  readonly weights: ReadonlyMap<string, { readonly params: QuantParams; readonly codes: Int32Array }>;
  /** Per activation value. */
  readonly acts: ReadonlyMap<string, QuantParams>;
  /** Replacement biases (bias correction), by initializer name. */
  readonly biases?: ReadonlyMap<string, Float32Array>;
}

function intTensor(dtype: DType, dims: readonly number[], values: ArrayLike<number>): Tensor {
  const n = values.length;
  switch (dtype) {
    case 'int8': case 'int4': case 'int2': return makeTensor(dtype, dims, Int8Array.from({ length: n }, (_, i) => values[i]!));
    case 'uint8': case 'uint4': case 'uint2': return makeTensor(dtype, dims, Uint8Array.from({ length: n }, (_, i) => values[i]!));
    default: throw new TtaqError('INTERNAL', `no integer container ${dtype}`);
  }
}

/** The opset an export variant needs for the widths in `values`. */
export function requiredOpset(values: QuantValues, variant: ExportVariant): number {
  if (variant === 'int8-container') return 13;
  let need = 13;
  for (const w of values.plan.weights) if (values.weights.has(w.node)) need = Math.max(need, w.spec.bits <= 2 ? 25 : w.spec.bits <= 4 ? 21 : 13);
  for (const a of values.plan.acts) if (values.acts.has(a.value)) need = Math.max(need, a.spec.bits <= 2 ? 25 : a.spec.bits <= 4 ? 21 : 13);
  return need;
}

const REDUCE_AXES_INPUT_SINCE: Record<string, number> = {
  ReduceSum: 13, ReduceMean: 18, ReduceMax: 18, ReduceMin: 18, ReduceProd: 18, ReduceL1: 18, ReduceL2: 18,
  ReduceLogSum: 18, ReduceLogSumExp: 18, ReduceSumSquare: 18,
};

/** Raises a graph's opset where the quantized types need it, moving Reduce* `axes` attributes to inputs. */
function upgradeNodes(g: GraphBuilder, from: number, to: number): void {
  for (let i = 0; i < g.nodes.length; i++) {
    const n = g.nodes[i]!;
    const since = REDUCE_AXES_INPUT_SINCE[n.opType];
    if (since && from < since && to >= since && n.attrs.axes) {
      const ax = n.attrs.axes;
      if (ax.kind !== 'ints') continue;
      const { axes: _drop, ...rest } = n.attrs;
      g.nodes[i] = { ...n, inputs: [n.inputs[0]!, g.ints(ax.value)], attrs: rest };
    }
    if (n.opType === 'Split' && from < 18 && to >= 18 && n.attrs.split) {
      throw new TtaqError('QUANT_BAD_MODEL', `node '${n.name}' (Split with a 'split' attribute) cannot be carried to opset ${to}; re-export the model at opset 18 or newer`);
    }
  }
}

/** Returns `g` with quantized weights and activation Q/DQ pairs (sites absent from `values` stay float). */
export function qdqGraph(graph: Graph, values: QuantValues, variant: ExportVariant, opsetFrom = 17, opsetTo = requiredOpset(values, variant)): Graph {
  const b = GraphBuilder.from(graph);
  if (opsetTo > opsetFrom) upgradeNodes(b, opsetFrom, opsetTo);
  // weights
  for (const site of values.plan.weights) {
    const v = values.weights.get(site.node);
    if (!v || !b.initializers.has(site.weight)) continue;
    const dt = containerDType(v.params.spec, variant);
    const perTensor = v.params.scale.length === 1 && v.params.spec.axis === undefined;
    const sdims = perTensor ? [] : [v.params.scale.length];
    b.initializers.delete(site.weight);
    const q = b.initializer(b.fresh(`${site.weight}_quantized`), intTensor(dt, site.dims, v.codes));
    const s = b.initializer(b.fresh(`${site.weight}_scale`), f32(sdims, v.params.scale));
    const z = b.initializer(b.fresh(`${site.weight}_zero_point`), intTensor(dt, sdims, v.params.zeroPoint));
    b.nodes.unshift({
      name: b.fresh(`${site.node}_weight_dq`), opType: 'DequantizeLinear', domain: '',
      inputs: [q, s, z], outputs: [site.weight],
      attrs: perTensor ? {} : { axis: A.int(v.params.spec.axis!) },
    });
  }
  for (const [name, bias] of values.biases ?? []) {
    const old = b.initializers.get(name);
    if (old) b.initializers.set(name, makeTensor('float32', old.dims, Float32Array.from(bias)));
  }
  // activations: insert before the first consumer, rewire the quantized consumers
  const nodes = b.nodes;
  const rewired = new Map<string, string>();
  const inserts = new Map<number, Node[]>();
  for (const site of values.plan.acts) {
    const p = values.acts.get(site.value);
    if (!p) continue;
    const consumers = new Set(site.consumers);
    const firstIdx = nodes.findIndex((n) => consumers.has(n.name));
    if (firstIdx < 0) continue;
    const { qmin, qmax } = rangeOf(p.spec);
    const trueDt = containerDType(p.spec, 'true-width');
    const dt: DType = variant === 'true-width' ? trueDt : containerDType(p.spec, 'int8-container');
    const s = b.initializer(b.fresh(`${site.value}_scale`), f32([], [p.scale[0]!]));
    const z = b.initializer(b.fresh(`${site.value}_zero_point`), intTensor(dt, [], [p.zeroPoint[0]!]));
    const pending: Node[] = [];
    let src = site.value;
    const fullRange = dt === trueDt && rangeOf({ bits: trueDt.endsWith('8') ? 8 : trueDt.endsWith('4') ? 4 : 2, signed: p.spec.signed, symmetric: p.spec.symmetric }).qmax === qmax;
    if (!fullRange) {
      const lo = b.initializer(b.fresh(`${site.value}_clip_lo`), f32([], [p.scale[0]! * (qmin - p.zeroPoint[0]!)]));
      const hi = b.initializer(b.fresh(`${site.value}_clip_hi`), f32([], [p.scale[0]! * (qmax - p.zeroPoint[0]!)]));
      const c = b.fresh(`${site.value}_clipped`);
      if (dt.endsWith('8')) {
        pending.push({ name: b.fresh(`${site.value}_clip`), opType: 'Clip', domain: '', inputs: [src, lo, hi], outputs: [c], attrs: {} });
      } else {
        // In front of a sub-byte QuantizeLinear the clamp is Max then Min: onnxruntime 1.30's
        // ClipQuantFusion rejects a Clip there (8-bit zero points only), so the file loads in a
        // plain onnxruntime too, not only through sdk/runtime's rewrite.
        const m = b.fresh(`${site.value}_clip_max_out`);
        pending.push({ name: b.fresh(`${site.value}_clip_max`), opType: 'Max', domain: '', inputs: [src, lo], outputs: [m], attrs: {} });
        pending.push({ name: b.fresh(`${site.value}_clip_min`), opType: 'Min', domain: '', inputs: [m, hi], outputs: [c], attrs: {} });
      }
      src = c;
    }
    const qv = b.fresh(`${site.value}_quantized`);
    const dqv = b.fresh(`${site.value}_dequantized`);
    pending.push({ name: b.fresh(`${site.value}_q`), opType: 'QuantizeLinear', domain: '', inputs: [src, s, z], outputs: [qv], attrs: {} });
    pending.push({ name: b.fresh(`${site.value}_dq`), opType: 'DequantizeLinear', domain: '', inputs: [qv, s, z], outputs: [dqv], attrs: {} });
    const key = nodes[firstIdx]!.name;
    const list = inserts.get(firstIdx) ?? [];
    list.push(...pending);
    inserts.set(firstIdx, list);
    for (const c of consumers) rewired.set(`${c}\u0000${site.value}`, dqv);
    void key;
  }
  const out: Node[] = [];
  nodes.forEach((n, i) => {
    out.push(...(inserts.get(i) ?? []));
    const ins = n.inputs.map((v) => rewired.get(`${n.name}\u0000${v}`) ?? v);
    out.push(ins.some((v, k) => v !== n.inputs[k]) ? { ...n, inputs: ins } : n);
  });
  const built = b.build();
  return { ...built, nodes: out };
}

/** A quantized model: QDQ graph at the opset the chosen widths need, metadata added. */
export function exportQdq(model: Model, values: QuantValues, variant: ExportVariant, metadata: Record<string, string> = {}): Model {
  const from = getOpset(model) ?? 13;
  const to = Math.max(from, requiredOpset(values, variant));
  const graph = qdqGraph(model.graph, values, variant, from, to);
  // INT4 needs IR 10, INT2 needs IR 11 (ONNX 1.18+); onnxruntime 1.30 reads up to 13.
  const ir = Math.max(model.irVersion, to >= 25 ? 11 : to >= 21 ? 10 : 7);
  // A ReLU6 (Clip) in front of a sub-byte QuantizeLinear is written as Max+Min: onnxruntime 1.30's
  // ClipQuantFusion accepts only 8-bit zero points and refuses the whole file otherwise. sdk/runtime
  // rewrites such models at load too, but the file itself must load in a plain onnxruntime.
  return splitClipsBeforeSubByteQuantize(setOpset({ ...model, irVersion: ir, graph, metadata: { ...model.metadata, ...metadata } }, to));
}

/** Float weights s·(q − z) of every quantized layer: the simulation model's view of the codes. */
export function dequantizedWeights(values: QuantValues): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const site of values.plan.weights) {
    const v = values.weights.get(site.node);
    if (v) out.set(site.weight, dequantize(v.codes, site.dims, v.params));
  }
  return out;
}

/** Bytes of the weights as stored: per dtype, packed sub-byte widths, plus scales and zero points. */
export function weightBytesByDType(model: Model): Record<string, number> {
  const out: Record<string, number> = {};
  const bits: Partial<Record<DType, number>> = { int2: 2, uint2: 2, int4: 4, uint4: 4, int8: 8, uint8: 8, float32: 32, float16: 16, int64: 64, int32: 32, float64: 64 };
  for (const t of model.graph.initializers.values()) {
    const bytes = Math.ceil((t.data.length * (bits[t.dtype] ?? 32)) / 8);
    out[t.dtype] = (out[t.dtype] ?? 0) + bytes;
  }
  return out;
}
