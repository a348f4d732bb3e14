// onnxruntime-node 1.30 cannot move sub-byte tensors across its JavaScript boundary: fetching an
// int4/uint4 output aborts the process (out of memory in OrtValueToNapiValue), and a model with an
// int2/uint2 input or output fails session creation ("Unsupported data type"). onnxruntime's Cast
// handles these types, and the IR holds them unpacked as int8/uint8 anyway, so a session rewrites
// every sub-byte graph input to an int8/uint8 input followed by a Cast, and every sub-byte graph
// output to a Cast to int8/uint8. Callers still see the original names and dtypes.
import { ONNX_DTYPE } from '../onnx/codec.ts';
import { nameAllocator } from '../onnx/edit.ts';
import { indexGraph } from '../onnx/graph.ts';
import { isSubByte } from '../onnx/packing.ts';
import type { DType, Graph, Model, Node, Tensor, ValueInfo } from '../onnx/types.ts';

export interface SubByteRewrite {
  readonly model: Model;
  /** Original input name -> the name fed to onnxruntime (only rewritten inputs). */
  readonly inputs: ReadonlyMap<string, { readonly feed: string; readonly dtype: DType }>;
  /** Original output name -> the name fetched from onnxruntime (only rewritten outputs). */
  readonly outputs: ReadonlyMap<string, { readonly fetch: string; readonly dtype: DType }>;
}

const wide = (d: DType): DType => (d === 'int4' || d === 'int2' ? 'int8' : 'uint8');

export const hasSubByteIO = (g: Graph): boolean =>
  g.inputs.some((v) => isSubByte(v.dtype)) || g.outputs.some((v) => isSubByte(v.dtype));

/** Rewrites sub-byte graph inputs/outputs as described above; a no-op when there are none. */
export function rewriteSubByteIO(model: Model): SubByteRewrite {
  const g = model.graph;
  const inputs = new Map<string, { feed: string; dtype: DType }>();
  const outputs = new Map<string, { fetch: string; dtype: DType }>();
  if (!hasSubByteIO(g)) return { model, inputs, outputs };
  const fresh = nameAllocator(g);
  const pre: Node[] = [];
  const post: Node[] = [];
  const newInputs: ValueInfo[] = g.inputs.map((v) => {
    if (!isSubByte(v.dtype)) return v;
    const feed = fresh(`${v.name}__ttaq_${wide(v.dtype)}`);
    inputs.set(v.name, { feed, dtype: v.dtype });
    pre.push({ name: fresh(`${v.name}__ttaq_cast_in`), opType: 'Cast', domain: '', inputs: [feed], outputs: [v.name], attrs: { to: { kind: 'int', value: ONNX_DTYPE[v.dtype] } } });
    return { ...v, name: feed, dtype: wide(v.dtype) };
  });
  const newOutputs: ValueInfo[] = g.outputs.map((v) => {
    if (!isSubByte(v.dtype)) return v;
    const fetch = fresh(`${v.name}__ttaq_${wide(v.dtype)}`);
    outputs.set(v.name, { fetch, dtype: v.dtype });
    post.push({ name: fresh(`${v.name}__ttaq_cast_out`), opType: 'Cast', domain: '', inputs: [v.name], outputs: [fetch], attrs: { to: { kind: 'int', value: ONNX_DTYPE[wide(v.dtype)] } } });
    return { ...v, name: fetch, dtype: wide(v.dtype) };
  });
  const graph: Graph = { ...g, nodes: [...pre, ...g.nodes, ...post], inputs: newInputs, outputs: newOutputs };
  return { model: { ...model, graph }, inputs, outputs };
}

// onnxruntime 1.30's ClipQuantFusion (a level-1 rewrite) throws "Unexpected data type for
// QuantizeLinear input y_zero_point of 21" when a Clip feeds a QuantizeLinear whose zero point is
// int4/uint4/int2/uint2: it only knows 8-bit zero points. Writing such a Clip as Max then Min
// computes the same values and keeps the rule from matching.
const zeroPointDType = (g: Graph, n: Node): DType | undefined => {
  const zp = n.inputs[2];
  return zp ? (g.initializers.get(zp)?.dtype ?? g.valueInfo.get(zp)?.dtype) : undefined;
};

/** Clip nodes whose output feeds a sub-byte QuantizeLinear (see above). */
export function clipsBeforeSubByteQuantize(g: Graph): Set<string> {
  const { producer } = indexGraph(g);
  const found = new Set<string>();
  for (const n of g.nodes) {
    if (n.opType !== 'QuantizeLinear' || n.domain !== '') continue;
    const dt = zeroPointDType(g, n);
    if (!dt || !isSubByte(dt)) continue;
    const p = producer.get(n.inputs[0] ?? '');
    if (p && p.opType === 'Clip' && p.domain === '') found.add(p.name);
  }
  return found;
}

/** Rewrites the Clips found by `clipsBeforeSubByteQuantize` as Max/Min; a no-op when there are none. */
export function splitClipsBeforeSubByteQuantize(model: Model): Model {
  const g = model.graph;
  const clips = clipsBeforeSubByteQuantize(g);
  if (clips.size === 0) return model;
  const fresh = nameAllocator(g);
  const nodes: Node[] = [];
  for (const n of g.nodes) {
    if (!clips.has(n.name) || n.inputs.length > 3 || Object.keys(n.attrs).length > 0) {
      nodes.push(n);
      continue;
    }
    const [x, lo, hi] = [n.inputs[0]!, n.inputs[1] ?? '', n.inputs[2] ?? ''];
    const out = n.outputs[0]!;
    if (!lo && !hi) {
      nodes.push({ ...n, opType: 'Identity', inputs: [x] });
      continue;
    }
    const mid = lo && hi ? fresh(`${out}__ttaq_max`) : out;
    if (lo) nodes.push({ name: fresh(`${n.name}__ttaq_max`), opType: 'Max', domain: '', inputs: [x, lo], outputs: [mid], attrs: {} });
    if (hi) nodes.push({ name: fresh(`${n.name}__ttaq_min`), opType: 'Min', domain: '', inputs: [lo ? mid : x, hi], outputs: [out], attrs: {} });
  }
  return { ...model, graph: { ...g, nodes } };
}

// onnxruntime 1.30 cannot constant-fold a Transpose of an int2/uint2 initializer larger than 127
// packed bytes: ConstantFolding fails in AddInitializedOrtValue with "Element type mismatch between
// tensor proto and ortvalue_initializer" (smaller ones and 4-bit ones fold fine). The level-1
// transpose optimizer creates exactly that Transpose when a Transpose follows a DequantizeLinear of a
// 2-bit weight (it moves the Transpose onto the quantized initializer), which is how the autodiff
// writes a Conv's input gradient with flipped weights. Storing such a weight (and its zero point) in
// an 8-bit container (int8/uint8, the same integers) dequantizes to the same floats and folds fine.
const TWO_BIT = new Set<DType>(['int2', 'uint2']);
const container = (d: DType): DType => (d === 'int2' ? 'int8' : 'uint8');

/**
 * DequantizeLinear nodes with a 2-bit initializer input whose constant downstream (the values
 * computed from initializers alone, which onnxruntime folds) contains a Transpose.
 */
export function twoBitDequantizesBeforeTranspose(g: Graph): Set<string> {
  const { consumers } = indexGraph(g);
  const constant = new Set<string>(g.initializers.keys());
  for (const n of g.nodes) {
    if (n.opType === 'Constant' || n.inputs.every((x) => !x || constant.has(x))) n.outputs.forEach((o) => constant.add(o));
  }
  const found = new Set<string>();
  for (const n of g.nodes) {
    if (n.opType !== 'DequantizeLinear' || n.domain !== '') continue;
    const w = g.initializers.get(n.inputs[0] ?? '');
    if (!w || !TWO_BIT.has(w.dtype)) continue;
    const seen = new Set<string>();
    const stack = [...n.outputs];
    let transposed = false;
    while (stack.length && !transposed) {
      const v = stack.pop()!;
      if (seen.has(v)) continue;
      seen.add(v);
      for (const c of consumers.get(v) ?? []) {
        if (c.opType === 'Transpose') transposed = true;
        if (c.outputs.every((o) => constant.has(o))) stack.push(...c.outputs);
      }
    }
    if (transposed) found.add(n.name);
  }
  return found;
}

/**
 * Gives every DequantizeLinear found by `twoBitDequantizesBeforeTranspose` its input and zero point
 * as 8-bit copies (new initializers; the 2-bit originals stay for other readers). A no-op when none.
 */
export function widenTwoBitWeightsBeforeTranspose(model: Model): Model {
  const g = model.graph;
  const dqs = twoBitDequantizesBeforeTranspose(g);
  if (dqs.size === 0) return model;
  const fresh = nameAllocator(g);
  const initializers = new Map(g.initializers);
  const widened = new Map<string, string>();
  const widen = (name: string): string => {
    let w = widened.get(name);
    if (w) return w;
    const t = g.initializers.get(name)!;
    w = fresh(`${name}__ttaq_${container(t.dtype)}`);
    initializers.set(w, { dtype: container(t.dtype), dims: t.dims, data: t.data } as Tensor);
    widened.set(name, w);
    return w;
  };
  const nodes = g.nodes.map((n) => {
    if (!dqs.has(n.name)) return n;
    const zp = n.inputs[2];
    const zpInit = zp ? g.initializers.get(zp) : undefined;
    // A zero point that is not a 2-bit initializer cannot be widened here; leave the node as it is.
    if (zp && (!zpInit || !TWO_BIT.has(zpInit.dtype))) return n;
    const inputs = [widen(n.inputs[0]!), n.inputs[1] ?? '', ...(zp ? [widen(zp)] : [])];
    return { ...n, inputs: [...inputs, ...n.inputs.slice(3)] };
  });
  return { ...model, graph: { ...g, nodes, initializers } };
}

// onnxruntime 1.30's memory planner mis-sizes reused buffers around sub-byte activations: in a
// gradient graph of a model with UINT4 activation QDQ (the adaptation step of a true-width W2A4
// ResNet), a later 1-byte-per-element value (a bool mask of the same shape) is given the packed
// 4-bit value's freed buffer, half the size it needs, and writes past it. valgrind shows "Invalid
// write of size 8 ... 0 bytes after a block of size 128" (a [8, 8, 2, 2] UINT4 value is 128 bytes),
// and the heap damage surfaces as garbage BN statistics and gradients 10^6 too large, or as
// "free(): invalid next size" with the CPU arena off. An isolated sub-byte QDQ pair and the plain
// inference graph of a true-width W4A4 ResNet-20 ran clean under valgrind; widening the UINT4 zero points to UINT8 makes the gradient graph
// clean too. So every sub-byte activation QDQ pair runs in an 8-bit container behind a clamp to the
// sub-byte range, exactly the int8-container export's form (sdk/quant/export.ts), whose numbers
// equal the true-width ones: the clamp keeps round(x / s) + z inside [qmin, qmax], where the
// sub-byte QuantizeLinear would have saturated.

/** Integer range of a sub-byte type. */
const subByteRange = (d: DType): [number, number] => {
  const bits = d.endsWith('4') ? 4 : 2;
  return d.startsWith('u') ? [0, 2 ** bits - 1] : [-(2 ** (bits - 1)), 2 ** (bits - 1) - 1];
};

/** The scalar float32 initializer value of a QuantizeLinear's scale, if it has one. */
const scalarScale = (g: Graph, n: Node): number | undefined => {
  const t = g.initializers.get(n.inputs[1] ?? '');
  return t && t.dtype === 'float32' && t.data.length === 1 ? (t.data[0] as number) : undefined;
};

/**
 * Sub-byte zero-point initializers that can be widened in place: every reader is a QuantizeLinear
 * with a float input and a scalar initializer scale (one clamp fits it), a DequantizeLinear of
 * such a QuantizeLinear's output, or a Cast (a gradient graph's straight-through mask reads the
 * zero point that way); the quantized values stay inside the graph. A zero point shared with
 * sub-byte weight codes does not qualify.
 */
export function widenableActivationZeroPoints(g: Graph): Set<string> {
  const { consumers } = indexGraph(g);
  const outputs = new Set(g.outputs.map((v) => v.name));
  const found = new Set<string>();
  for (const [name, t] of g.initializers) {
    if (!isSubByte(t.dtype) || t.dims.length > 0) continue;
    const rs = consumers.get(name) ?? [];
    const quantized = new Set(rs.filter((n) => n.opType === 'QuantizeLinear' && n.domain === '' && n.inputs[2] === name).map((n) => n.outputs[0]!));
    if (quantized.size === 0) continue;
    const ok = rs.every((n) => {
      if (n.domain !== '') return false;
      if (n.opType === 'Cast') return true;
      if (n.opType === 'QuantizeLinear') return n.inputs[2] === name && scalarScale(g, n) !== undefined && !g.initializers.has(n.inputs[0] ?? '') && !outputs.has(n.outputs[0]!);
      if (n.opType === 'DequantizeLinear') return n.inputs[2] === name && quantized.has(n.inputs[0] ?? '');
      return false;
    });
    // Every reader of a quantized value must be a DequantizeLinear (its type changes to 8 bits).
    const consumersOk = [...quantized].every((q) => (consumers.get(q) ?? []).every((n) => n.opType === 'DequantizeLinear' && n.domain === '' && n.inputs[2] === name));
    if (ok && consumersOk) found.add(name);
  }
  return found;
}

/**
 * Runs the sub-byte activation QDQ pairs found by `widenableActivationZeroPoints` in 8-bit
 * containers: the zero point keeps its name with an int8/uint8 dtype, and each QuantizeLinear gets
 * a Clip to [s (qmin - z), s (qmax - z)] in front. A no-op when there is none.
 */
export function widenSubByteActivations(model: Model): Model {
  const g = model.graph;
  const zps = widenableActivationZeroPoints(g);
  if (zps.size === 0) return model;
  const fresh = nameAllocator(g);
  const initializers = new Map(g.initializers);
  const valueInfo = new Map(g.valueInfo);
  for (const name of zps) {
    const t = g.initializers.get(name)!;
    initializers.set(name, { dtype: wide(t.dtype), dims: t.dims, data: t.data } as Tensor);
  }
  const nodes: Node[] = [];
  for (const n of g.nodes) {
    const zp = n.inputs[2] ?? '';
    if (n.opType !== 'QuantizeLinear' || n.domain !== '' || !zps.has(zp)) { nodes.push(n); continue; }
    const s = scalarScale(g, n)!;
    const zt = g.initializers.get(zp)!;
    const z = Number(zt.data[0]);
    const [qmin, qmax] = subByteRange(zt.dtype);
    const lo = fresh(`${n.name}__ttaq_lo`);
    const hi = fresh(`${n.name}__ttaq_hi`);
    initializers.set(lo, { dtype: 'float32', dims: [], data: Float32Array.of(s * (qmin - z)) } as Tensor);
    initializers.set(hi, { dtype: 'float32', dims: [], data: Float32Array.of(s * (qmax - z)) } as Tensor);
    const clamped = fresh(`${n.inputs[0]}__ttaq_clamped`);
    nodes.push({ name: fresh(`${n.name}__ttaq_clamp`), opType: 'Clip', domain: '', inputs: [n.inputs[0]!, lo, hi], outputs: [clamped], attrs: {} });
    nodes.push({ ...n, inputs: [clamped, ...n.inputs.slice(1)] });
    valueInfo.delete(n.outputs[0]!);
  }
  return { ...model, graph: { ...g, nodes, initializers, valueInfo } };
}
