// The gradient-graph builder: forward model + scalar loss + wrt values -> one ONNX model whose
// outputs are the loss, requested forward values and the gradients. Reverse topological sweep over
// the forward nodes that lie between the wrt values and the loss; each node's backward pass comes
// from its rule (rules/); gradients of values with several consumers are summed.
import { TtaqError } from '../errors/index.ts';
import { A, GraphBuilder } from '../onnx/builder.ts';
import { ONNX_DTYPE } from '../onnx/codec.ts';
import { removeUnused } from '../onnx/edit.ts';
import { allocArray, makeTensor, numel } from '../onnx/tensor.ts';
import type { DType, Graph, Model, Node, Tensor, ValueInfo } from '../onnx/types.ts';
import { getOpset } from '../onnx/versions.ts';
import { lowerBatchNorm, type BatchNormMode } from './bn.ts';
import { isStopGradient } from './detach.ts';
import { getRule } from './rules/index.ts';
import type { RuleContext, RuleOptions } from './rules/types.ts';
import { inferValueShapes, type ValueShapes, type ValueShape } from './shapes.ts';

export type { BatchNormMode } from './bn.ts';

export const GRAD_PREFIX = 'grad:';

export interface GradientRequest {
  readonly model: Model;
  /** A scalar (one-element) float value of the model. */
  readonly loss: string;
  /** Initializers (promoted to graph inputs) or graph inputs; float dtypes only. */
  readonly wrt: readonly string[];
  /** Extra forward values to output; 'graph' = every output of the forward graph. Default none. */
  readonly outputs?: readonly string[] | 'graph';
  /** Values treated as constants: no gradient flows through them. */
  readonly stopGradient?: readonly string[];
  /** Default 'model'. */
  readonly batchNorm?: BatchNormMode;
  /** Static dtypes/dims of the values (of the model after BN lowering); inferred when absent. */
  readonly shapes?: ValueShapes;
  /** Size given to symbolic dims on the shape-inference run (default 2; avoid 1). */
  readonly sampleBatch?: number;
  /** Feeds for the shape-inference run (default: zeros). */
  readonly sampleFeeds?: Readonly<Record<string, Tensor>>;
  /** Output name of each gradient (default `grad:<name>`). */
  readonly gradName?: (wrt: string) => string;
  /**
   * Formulation choices of some rules, e.g. `{ conv: LEGACY_CONV_GRAD }` for Conv's pre-GEMM
   * backward pass. Default: each rule picks the fastest measured form.
   */
  readonly ruleOptions?: RuleOptions;
}

export interface GradientGraph {
  /** Inputs: data inputs then promoted parameters; outputs: loss, forward outputs, gradients. */
  readonly model: Model;
  readonly loss: string;
  readonly outputs: readonly string[];
  /** wrt value -> name of its gradient output. */
  readonly grads: ReadonlyMap<string, string>;
  /** Promoted initializers with their values in the forward model (the starting parameters). */
  readonly params: ReadonlyMap<string, Tensor>;
  /** Graph inputs to feed besides the parameters (data, labels, wrt inputs). */
  readonly inputs: readonly ValueInfo[];
}

const FLOATS: ReadonlySet<DType> = new Set(['float32', 'float64', 'float16']);

const modelName = (m: Model): string => m.graph.name || 'model';

function badRequest(m: Model, msg: string, details: Record<string, unknown> = {}): TtaqError {
  return new TtaqError('AUTODIFF_BAD_REQUEST', `gradient graph for model '${modelName(m)}': ${msg}`, details);
}

interface Prepared {
  readonly req: GradientRequest;
  readonly model: Model;
  readonly opset: number;
  readonly outputs: readonly string[];
}

function prepare(req: GradientRequest): Prepared {
  const m = req.model;
  const opset = getOpset(m);
  if (opset === undefined || opset < 13) {
    throw badRequest(m, `the model imports default-domain opset ${opset ?? 'none'}; gradients need opset 13 or later. Convert it (e.g. onnx.version_converter) first`);
  }
  const g = m.graph;
  const produced = new Set<string>();
  for (const n of g.nodes) for (const o of n.outputs) if (o) produced.add(o);
  const inputs = new Set(g.inputs.map((v) => v.name));
  const known = (n: string): boolean => produced.has(n) || inputs.has(n) || g.initializers.has(n);
  if (!known(req.loss)) throw badRequest(m, `the loss '${req.loss}' is not a value of the model; pass the name of a node output`, { loss: req.loss });
  if (req.wrt.length === 0) throw badRequest(m, 'wrt is empty; name the initializers or inputs to differentiate with respect to');
  const seen = new Set<string>();
  for (const w of req.wrt) {
    if (seen.has(w)) throw badRequest(m, `wrt names '${w}' twice`, { wrt: w });
    seen.add(w);
    if (!inputs.has(w) && !g.initializers.has(w)) {
      throw badRequest(m, `wrt value '${w}' is neither an initializer nor a graph input${produced.has(w) ? ' (it is a node output: differentiate with respect to the values it is computed from)' : ''}`, { wrt: w });
    }
    const dt = g.initializers.get(w)?.dtype ?? g.inputs.find((v) => v.name === w)?.dtype;
    if (dt && !FLOATS.has(dt)) throw badRequest(m, `wrt value '${w}' has dtype ${dt}; gradients exist only for float tensors`, { wrt: w });
  }
  const outputs = req.outputs === 'graph' ? g.outputs.map((v) => v.name).filter((n) => n !== req.loss) : [...(req.outputs ?? [])];
  for (const o of outputs) if (!known(o)) throw badRequest(m, `requested output '${o}' is not a value of the model`, { output: o });
  const lowered = lowerBatchNorm(m, req.batchNorm ?? 'model', opset);
  return { req, model: lowered, opset, outputs };
}

/** Builds the gradient graph, inferring static shapes by running the forward model once when needed. */
export async function buildGradientGraph(req: GradientRequest): Promise<GradientGraph> {
  const p = prepare(req);
  const shapes = req.shapes ?? (await inferValueShapes(p.model, { sampleBatch: req.sampleBatch, feeds: req.sampleFeeds }));
  return build(p, shapes);
}

/** Synchronous variant: `shapes` must cover the values of the model (after BN lowering). */
export function buildGradientGraphWithShapes(req: GradientRequest, shapes: ValueShapes): GradientGraph {
  return build(prepare(req), shapes);
}

function ancestors(nodes: readonly Node[], targets: Iterable<string>): { keep: boolean[]; needed: Set<string> } {
  const needed = new Set(targets);
  const keep = new Array<boolean>(nodes.length).fill(false);
  for (let i = nodes.length - 1; i >= 0; i--) {
    const n = nodes[i]!;
    if (n.outputs.some((o) => o && needed.has(o))) {
      keep[i] = true;
      for (const x of n.inputs) if (x) needed.add(x);
    }
  }
  return { keep, needed };
}

function build(p: Prepared, shapes: ValueShapes): GradientGraph {
  const { req, model, opset } = p;
  const g = model.graph;
  const mname = modelName(model);
  const wrtSet = new Set(req.wrt);
  const stop = new Set(req.stopGradient ?? []);

  // Forward part: ancestors of the loss and the requested outputs.
  const fw = ancestors(g.nodes, [req.loss, ...p.outputs]);
  const fwdNodes = g.nodes.filter((_, i) => fw.keep[i]);

  // Constants (initializers and Constant nodes) for rules that read attributes-as-inputs.
  const constants = new Map<string, Tensor>(g.initializers);
  for (const n of fwdNodes) {
    if (n.opType === 'Constant' && n.domain === '' && n.outputs[0]) {
      const v = n.attrs['value'];
      if (v?.kind === 'tensor') constants.set(n.outputs[0], v.value);
    }
  }
  for (const w of req.wrt) constants.delete(w);
  const producers = new Map<string, Node>();
  for (const n of fwdNodes) for (const o of n.outputs) if (o) producers.set(o, n);

  const shapeOfValue = (name: string): ValueShape | undefined => {
    const s = shapes.get(name);
    if (s) return s;
    const t = g.initializers.get(name);
    return t ? { dtype: t.dtype, dims: t.dims } : undefined;
  };
  const dtypeOf = (name: string): DType | undefined => shapeOfValue(name)?.dtype ?? g.inputs.find((v) => v.name === name)?.dtype;

  // Values that depend on a wrt value through differentiable edges.
  const active = new Set<string>(req.wrt);
  for (const n of fwdNodes) {
    if (isStopGradient(n)) continue;
    const rule = getRule(n.opType, n.domain);
    const hit = n.inputs.some((x, i) => x && active.has(x) && !rule?.nonDiffInputs?.includes(i));
    if (!hit) continue;
    for (const o of n.outputs) {
      if (!o || stop.has(o)) continue;
      const dt = dtypeOf(o);
      if (dt === undefined) throw badRequest(model, `no dtype known for value '${o}' (output of node '${n.name}'); pass shapes covering it or let buildGradientGraph infer them`, { value: o });
      if (FLOATS.has(dt) || rule?.intOutputsCarryGrad) active.add(o);
    }
  }
  const toLoss = ancestors(fwdNodes, [req.loss]).needed;
  const flows = (v: string): boolean => active.has(v) && toLoss.has(v) && !stop.has(v);

  const lossShape = shapeOfValue(req.loss);
  if (!lossShape) throw badRequest(model, `no shape known for the loss '${req.loss}'`);
  if (!FLOATS.has(lossShape.dtype)) throw badRequest(model, `the loss '${req.loss}' has dtype ${lossShape.dtype}; it must be a float scalar`);
  if (numel(lossShape.dims) !== 1) throw badRequest(model, `the loss '${req.loss}' has shape [${lossShape.dims.join(', ')}]; it must be a scalar (reduce it, e.g. ReduceMean over the batch)`);

  const taken: string[] = [];
  for (const n of g.nodes) { taken.push(n.name); for (const o of n.outputs) if (o) taken.push(o); }
  for (const v of g.inputs) taken.push(v.name);
  for (const k of g.initializers.keys()) taken.push(k);
  const b = new GraphBuilder(g.name, '', taken);

  // Shared emitters.
  const scalarCache = new Map<string, string>();
  const scalarOf = (value: number, dtype: DType): string => {
    const k = `${dtype}:${value}`;
    const hit = scalarCache.get(k);
    if (hit) return hit;
    const data = allocArray(dtype, 1);
    if (dtype === 'int64' || dtype === 'uint64') (data as BigInt64Array)[0] = BigInt(value);
    else (data as Float32Array)[0] = value;
    const name = b.constant(makeTensor(dtype, [], data) as Tensor, 'bw_scalar');
    scalarCache.set(k, name);
    return name;
  };
  const shapeCache = new Map<string, string>();
  const shapeOp = (x: string): string => {
    const hit = shapeCache.get(x);
    if (hit) return hit;
    const s = b.op1('Shape', [x], {}, { name: 'bw_shape' });
    shapeCache.set(x, s);
    return s;
  };
  const needShape = (name: string, where: string): ValueShape => {
    const s = shapeOfValue(name);
    if (!s) throw new TtaqError('AUTODIFF_BAD_REQUEST', `${where}: no static shape known for value '${name}'; let buildGradientGraph infer shapes or pass shapes that cover it`, { value: name });
    return s;
  };
  const reduce = (op: 'ReduceSum' | 'ReduceMean', x: string, axes: readonly number[], keepdims: boolean): string => {
    if (op === 'ReduceSum' || opset >= 18) return b.op1(op, [x, b.ints(axes)], { keepdims: A.int(keepdims ? 1 : 0) }, { name: `bw_${op}` });
    return b.op1(op, [x], { axes: A.ints(axes), keepdims: A.int(keepdims ? 1 : 0) }, { name: `bw_${op}` });
  };

  const scaled = new Map<string, { value: string; scale: string }>();
  const gradParts = new Map<string, string[]>();
  const summed = new Map<string, string>();
  const push = (v: string, gname: string): void => {
    if (summed.has(v)) throw new TtaqError('INTERNAL', `gradient for '${v}' arrived after it was consumed; the forward graph of '${mname}' is not topologically ordered`);
    const list = gradParts.get(v);
    if (list) list.push(gname); else gradParts.set(v, [gname]);
  };
  const gradOf = (v: string): string | null => {
    const hit = summed.get(v);
    if (hit) return hit;
    const parts = gradParts.get(v);
    if (!parts || parts.length === 0) return null;
    // two parts: Add, which onnxruntime's CPU kernel runs on every thread; its Sum took 0.52-0.67 ms
    // where Add took 0.16-0.24 for ResNet-20's 64x16x28x28 residual gradients (2 threads)
    const s = parts.length === 1 ? parts[0]! : b.op1(parts.length === 2 ? 'Add' : 'Sum', parts, {}, { name: 'bw_accumulate' });
    summed.set(v, s);
    return s;
  };

  // Seed: d loss / d loss = 1.
  const seedData = allocArray(lossShape.dtype, numel(lossShape.dims));
  (seedData as Float32Array).fill(lossShape.dtype === 'float16' ? 0x3c00 : 1);
  push(req.loss, b.constant(makeTensor(lossShape.dtype, lossShape.dims, seedData) as Tensor, 'bw_seed'));

  for (let i = fwdNodes.length - 1; i >= 0; i--) {
    const node = fwdNodes[i]!;
    if (isStopGradient(node)) continue;
    const gy = node.outputs.map((o) => (o && flows(o) ? gradOf(o) : null));
    if (gy.every((x) => x === null)) continue;
    const rule = getRule(node.opType, node.domain);
    const needs = node.inputs.map((x, k) => !!x && flows(x) && !rule?.nonDiffInputs?.includes(k));
    if (!needs.some(Boolean)) continue;
    const where = `node '${node.name}' (${node.domain ? `${node.domain}::` : ''}${node.opType}) of model '${mname}'`;
    if (!rule) {
      throw new TtaqError('AUTODIFF_NO_RULE',
        `no gradient rule for op ${node.opType}${node.domain ? ` (domain ${node.domain})` : ''} at ${where}; add sdk/autodiff/rules/${node.opType}.ts (or registerRule), or keep the op off the path from the wrt values to the loss (stopGradient)`,
        { op: node.opType, domain: node.domain, node: node.name, model: mname });
    }
    const ctx: RuleContext = {
      node, b, opset, gy, needs, where, options: req.ruleOptions ?? {},
      dtype: (name) => {
        const d = dtypeOf(name);
        if (!d) throw new TtaqError('AUTODIFF_BAD_REQUEST', `${where}: no dtype known for value '${name}'`, { value: name });
        return d;
      },
      shape: (name) => needShape(name, where).dims,
      rank: (name) => needShape(name, where).dims.length,
      constant: (name) => constants.get(name),
      producer: (name) => producers.get(name),
      addGrad: (value, grad) => { if (flows(value)) push(value, grad); },
      fail: (message) => { throw new TtaqError('AUTODIFF_BAD_REQUEST', `${where}: ${message}`, { op: node.opType, node: node.name, model: mname }); },
      scalar: (value, like) => scalarOf(value, ctx.dtype(like)),
      ints: (values) => b.ints(values),
      shapeOf: shapeOp,
      unbroadcast: (gr, target) => {
        const full = node.outputs[0]!;
        const ts = needShape(target, where).dims;
        const fs = needShape(full, where).dims;
        const d = fs.length - ts.length;
        const axes: number[] = [];
        for (let k = 0; k < d; k++) axes.push(k);
        for (let k = 0; k < ts.length; k++) if (ts[k] === 1 && fs[k + d] !== 1) axes.push(k + d);
        if (axes.length === 0) return gr;
        const r = reduce('ReduceSum', gr, axes, true);
        return d > 0 ? b.op1('Reshape', [r, shapeOp(target)], {}, { name: 'bw_unbroadcast' }) : r;
      },
      reduceSum: (x, axes, keep) => reduce('ReduceSum', x, axes, keep),
      reduceMean: (x, axes, keep) => reduce('ReduceMean', x, axes, keep),
      zerosLike: (x) => b.op1('Expand', [scalarOf(0, ctx.dtype(x)), shapeOp(x)], {}, { name: 'bw_zeros' }),
      maskAs: (mask, like) => b.op1('Cast', [mask], { to: A.int(ONNX_DTYPE[ctx.dtype(like)]) }, { name: 'bw_mask' }),
      noteChannelScale: (out, value, scale) => { scaled.set(out, { value, scale }); },
      channelScaled: (v) => scaled.get(v),
    };
    const res = rule.backward(ctx);
    node.inputs.forEach((x, k) => {
      const r = res[k];
      if (needs[k] && r) push(x, r);
    });
  }

  // Gradient outputs.
  const gradName = req.gradName ?? ((w: string) => `${GRAD_PREFIX}${w}`);
  const grads = new Map<string, string>();
  const outInfo: ValueInfo[] = [];
  const inputInfo = new Map(g.inputs.map((v) => [v.name, v]));
  const findOut = (n: string): ValueInfo | undefined => g.outputs.find((v) => v.name === n);
  const lossInfo = findOut(req.loss) ?? { name: req.loss, dtype: lossShape.dtype, shape: lossShape.dims };
  outInfo.push(lossInfo);
  for (const o of p.outputs) {
    if (o === req.loss) continue;
    outInfo.push(findOut(o) ?? inputInfo.get(o) ?? { name: o, dtype: dtypeOf(o) ?? 'float32' });
  }
  const params = new Map<string, Tensor>();
  const paramInputs: ValueInfo[] = [];
  for (const w of req.wrt) {
    const init = g.initializers.get(w);
    if (init) { params.set(w, init); paramInputs.push({ name: w, dtype: init.dtype, shape: [...init.dims] }); }
    const info: ValueInfo = init ? { name: w, dtype: init.dtype, shape: [...init.dims] } : inputInfo.get(w)!;
    const gv = gradOf(w) ?? (b.op1('Expand', [scalarOf(0, info.dtype), shapeOp(w)], {}, { name: 'bw_zero_grad' }));
    const out = gradName(w);
    if (out === gv) throw new TtaqError('INTERNAL', `gradient output name '${out}' collides with a value`);
    b.op('Identity', [gv], {}, { outputNames: [out], name: 'bw_grad_out' });
    grads.set(w, out);
    outInfo.push({ name: out, dtype: info.dtype, ...(info.shape ? { shape: [...info.shape] } : {}) });
  }

  // Assemble: forward nodes, backward nodes (less those a rule left unread: a channel scale folded
  // into a weight); prune unused inputs and initializers.
  const nodes = removeUnused({ ...g, nodes: [...fwdNodes, ...b.nodes], outputs: outInfo }).nodes;
  const used = new Set<string>();
  for (const n of nodes) for (const x of n.inputs) if (x) used.add(x);
  for (const o of outInfo) used.add(o.name);
  const dataInputs = g.inputs.filter((v) => used.has(v.name) || wrtSet.has(v.name));
  const initializers = new Map<string, Tensor>();
  for (const [k, t] of g.initializers) if (used.has(k) && !wrtSet.has(k)) initializers.set(k, t);
  for (const [k, t] of b.initializers) if (used.has(k)) initializers.set(k, t);
  const graph: Graph = {
    name: g.name,
    nodes,
    inputs: [...dataInputs, ...paramInputs],
    outputs: outInfo,
    initializers,
    valueInfo: new Map(),
  };
  return {
    model: { ...model, graph, docString: `gradient graph of '${mname}' (loss '${req.loss}')` },
    loss: req.loss,
    outputs: p.outputs.filter((o) => o !== req.loss),
    grads,
    params,
    inputs: dataInputs,
  };
}
