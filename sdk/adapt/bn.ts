// BN rewriting for test-time adaptation. Every adapted BatchNormalization node gets its affine
// parameters and statistics as graph inputs shaped [1, C, 1, ...] (so updates never rebuild a
// session), and, for batch or robust normalisation, is replaced by explicit ops that compute the
// batch moments over every axis but the channel axis (M = N * H * W values per channel):
//
//   mu_b = sum(x) / M,  var_b = sum((x - mu_b)^2) / M                   (biased, like PyTorch)
//   batch:  mu = mu_b,                      var = var_b
//   robust: mu = m + alpha (mu_b - m),      var = v + alpha (var_b - v)  (m, v: EMA inputs;
//           alpha: scalar input, see ROBUST_ALPHA)
//   source: mu = m,                         var = v
//   y    = (x - mu) * (scale / sqrt(var + eps)) + bias
//
// In robust mode the mixed mu and var are graph outputs (the adapter's 'ema' memory feeds them back
// as the next EMA, RoTTA's update), and so are mu_b and var_b (its class-balanced memory is built
// from them); optionally the gradient does not flow through the mixed values (detachRobustStats).
// Per-channel loops here run at build time only.
import { detach } from '../autodiff/detach.ts';
import { lowerBatchNorm } from '../autodiff/bn.ts';
import { GraphBuilder, A } from '../onnx/builder.ts';
import type { Graph, Model, Node, Tensor } from '../onnx/types.ts';
import { TtaqError } from '../errors/index.ts';
import type { NormMode } from './options.ts';

/** One adapted BN layer: its node, the graph inputs that now carry its parameters, source values. */
export interface BnLayer {
  readonly node: string;
  readonly channels: number;
  readonly epsilon: number;
  /** Dims of the parameter inputs (and robust outputs): [1, C, 1, ...] like x, or [C] for the fused op. */
  readonly paramDims: readonly number[];
  /** Graph input names. */
  readonly inputs: { readonly scale: string; readonly bias: string; readonly mean: string; readonly var: string };
  /**
   * Robust mode: graph outputs with the mixed statistics and with the current batch's own moments
   * (length C each; the adapter's class-balanced memory is fed from the latter).
   */
  readonly outputs?: { readonly mean: string; readonly var: string; readonly batchMean: string; readonly batchVar: string };
  /** Source values (copies). */
  readonly source: { readonly scale: Float32Array; readonly bias: Float32Array; readonly mean: Float32Array; readonly var: Float32Array };
}

export interface BnRewriteOptions {
  readonly norm: NormMode;
  /** Unused: in robust mode the weight of the batch moments is the scalar graph input ROBUST_ALPHA. */
  readonly robustAlpha?: number;
  /** BN node names to rewrite; default every BatchNormalization node. */
  readonly bnNodes?: readonly string[] | undefined;
  /** Keep the fused BatchNormalization op where the mode allows it (source norm; inference only). */
  readonly keepFusedOp?: boolean;
  /**
   * 'fused' (default): batch norm computes the moments in primitive ops and normalises with a
   * BatchNormalization op whose closed-form backward (autodiff's BN lowering) replaces the
   * primitive chain's backward; source norm and robust norm with detached statistics normalise
   * with a BatchNormalization op fed the statistics they use. 'primitive': every mode writes the
   * normalisation out op by op (the former form, kept for A/B comparisons).
   */
  readonly batchLowering?: 'fused' | 'primitive';
  /**
   * Batch norm with 'fused' batchLowering: the statistics and the normalisation in one
   * training-mode BatchNormalization op ('op', default), or the statistics from reductions feeding
   * an inference-mode one ('fused'), for providers without the training mode (autodiff's
   * batchNormForSession, which gives this field's value).
   */
  readonly statsLowering?: 'op' | 'fused';
  /**
   * Robust mode: no gradient through the mixed statistics (they carry the batch moments with weight
   * alpha only); halves the backward BN ops, which dominate the step time at batch 1-8.
   */
  readonly detachRobustStats?: boolean;
  /** Rank of each BN input (default 4); from shape inference. */
  readonly ranks?: ReadonlyMap<string, number>;
  /** Where the model came from, for error messages. */
  readonly source?: string;
}

export interface BnRewrite {
  readonly graph: Graph;
  readonly layers: readonly BnLayer[];
}

/** Robust mode: the scalar graph input holding the weight of the batch moments (per step, so it can follow the batch size). */
export const ROBUST_ALPHA = 'ttaq::robust_alpha';

/** The default-domain opset of a model (ops here change form at 13 and 18). */
export function defaultOpset(m: Model): number {
  const o = m.opsetImports.find((x) => x.domain === '' || x.domain === 'ai.onnx');
  return o?.version ?? 13;
}

/** Reduce ops took `axes` as an attribute before these opsets and as an input from them on. */
const AXES_AS_INPUT_FROM: Record<string, number> = { ReduceSum: 13, ReduceMean: 18, ReduceMax: 18, ReduceMin: 18 };

/** Emits a reduction with the `axes` form the opset expects. */
export function reduce(b: GraphBuilder, opset: number, op: 'ReduceMean' | 'ReduceSum' | 'ReduceMax', x: string, axes: readonly number[], keepdims: boolean, name?: string): string {
  const opts = name ? { outputNames: [name] } : {};
  if (opset >= AXES_AS_INPUT_FROM[op]!) return b.op(op, [x, b.ints(axes)], { keepdims: A.int(keepdims ? 1 : 0) }, opts)[0]!;
  return b.op(op, [x], { axes: A.ints(axes), keepdims: A.int(keepdims ? 1 : 0) }, opts)[0]!;
}

function float32Copy(t: Tensor | undefined, what: string, node: Node, source: string): Float32Array {
  if (!t) {
    throw new TtaqError('ADAPT_NO_BN', `${source}: BatchNormalization '${node.name}' takes its ${what} from a computed value, not an initializer; adaptation needs constant BN parameters (export the model with BN parameters as initializers)`);
  }
  if (t.dtype !== 'float32') {
    throw new TtaqError('ADAPT_NO_BN', `${source}: BatchNormalization '${node.name}' has ${what} of type ${t.dtype}; adaptation supports float32 BN parameters (convert the model's BN to float32)`);
  }
  return Float32Array.from(t.data);
}

/** Lists the BN nodes of a graph in topological order. */
export const bnNodesOf = (g: Graph): string[] => g.nodes.filter((n) => n.opType === 'BatchNormalization' && (n.domain === '' || n.domain === 'ai.onnx')).map((n) => n.name);

/**
 * Rewrites the BN nodes of `model` for adaptation (see the file comment). The returned graph's
 * extra inputs are named `<node>::scale|bias|mean|var`; robust-mode outputs `<node>::mixed_mean|var`.
 */
export function rewriteBn(model: Model, o: BnRewriteOptions): BnRewrite {
  const g = model.graph;
  const source = o.source ?? `model '${g.name}'`;
  const opset = defaultOpset(model);
  const all = bnNodesOf(g);
  const wanted = o.bnNodes && o.bnNodes.length > 0 ? [...o.bnNodes] : all;
  if (wanted.length === 0) {
    throw new TtaqError('ADAPT_NO_BN', `${source} has no BatchNormalization node to adapt; a model with BN folded into its convolutions needs BN re-inserted first (ttaq quantize does this: quantize the model, or see docs/METHOD.md, Quantization)`);
  }
  for (const name of wanted) {
    if (!all.includes(name)) {
      throw new TtaqError('ADAPT_NO_BN', `${source}: BN node '${name}' (from the manifest's adaptation.bnNodes or options.bnNodes) is not a BatchNormalization node of the model; BN nodes present: ${all.slice(0, 8).join(', ')}${all.length > 8 ? ', …' : ''}`);
    }
  }
  const wantedSet = new Set(wanted);
  const bnOps = (o.batchLowering ?? 'fused') === 'fused';

  const taken = new Set<string>();
  for (const n of g.nodes) { taken.add(n.name); n.outputs.forEach((x) => taken.add(x)); }
  for (const v of g.inputs) taken.add(v.name);
  for (const k of g.initializers.keys()) taken.add(k);
  const b = new GraphBuilder(g.name, '', taken);
  for (const v of g.inputs) b.inputs.push(v);
  for (const v of g.outputs) b.outputs.push(v);
  for (const [k, t] of g.initializers) b.initializers.set(k, t);
  for (const [k, v] of g.valueInfo) b.valueInfo.set(k, v);

  const layers: BnLayer[] = [];
  for (const n of g.nodes) {
    if (!wantedSet.has(n.name)) { b.nodes.push(n); continue; }
    if (n.outputs.length > 1 && n.outputs.slice(1).some((x) => x !== '')) {
      throw new TtaqError('ADAPT_NO_BN', `${source}: BatchNormalization '${n.name}' is in training mode (it outputs running statistics); export the model in inference mode`);
    }
    const [x, sName, bName, mName, vName] = n.inputs;
    const sc = float32Copy(g.initializers.get(sName ?? ''), 'scale', n, source);
    const bi = float32Copy(g.initializers.get(bName ?? ''), 'bias', n, source);
    const mu = float32Copy(g.initializers.get(mName ?? ''), 'mean', n, source);
    const va = float32Copy(g.initializers.get(vName ?? ''), 'var', n, source);
    const C = sc.length;
    if (bi.length !== C || mu.length !== C || va.length !== C) {
      throw new TtaqError('ADAPT_NO_BN', `${source}: BatchNormalization '${n.name}' has parameters of lengths ${sc.length}/${bi.length}/${mu.length}/${va.length}; they must all equal the channel count`);
    }
    const epsAttr = n.attrs['epsilon'];
    const eps = epsAttr && epsAttr.kind === 'float' ? epsAttr.value : 1e-5;
    const inputs = { scale: `${n.name}::scale`, bias: `${n.name}::bias`, mean: `${n.name}::mean`, var: `${n.name}::var` };
    const y = n.outputs[0]!;
    const rank = o.ranks?.get(x!) ?? 4;
    if (rank < 2) throw new TtaqError('ADAPT_NO_BN', `${source}: BatchNormalization '${n.name}' normalises a rank-${rank} value; expected [N, C, ...]`);
    const fused = o.norm === 'source' && !!o.keepFusedOp;
    const fusedBatch = bnOps && o.norm === 'batch';
    // Statistics that get no gradient (source; robust with detached statistics) normalise with a
    // BatchNormalization op: one pass over x instead of three (Add, Mul, Add), and its backward
    // needs no more passes than the explicit form's.
    const opForm = bnOps && (o.norm === 'source' || (o.norm === 'robust' && !!o.detachRobustStats));
    // Parameters enter as [1, C, 1, ...] (broadcast against x directly), or [C] for a BN op.
    const paramDims = fused || fusedBatch || opForm ? [C] : [1, C, ...new Array<number>(rank - 2).fill(1)];
    for (const nm of Object.values(inputs)) {
      if (taken.has(nm)) throw new TtaqError('ONNX_INVALID_GRAPH', `${source}: value name '${nm}' already exists; rename it before adaptation`);
      b.input(nm, 'float32', paramDims);
    }
    let outputs: BnLayer['outputs'];
    if (fused) {
      b.op('BatchNormalization', [x!, inputs.scale, inputs.bias, inputs.mean, inputs.var], { epsilon: A.float(eps) }, { outputNames: [y], name: n.name });
    } else if (fusedBatch) {
      // A training-mode node, lowered below into batch moments feeding an inference-mode BN op.
      // Why: differentiated op by op, the normalisation's backward costs about nine passes over
      // the activation (expands, products and a sum per path through mu and var); the lowering's
      // closed form costs four. The mean/var inputs are not read (no running outputs).
      b.op('BatchNormalization', [x!, inputs.scale, inputs.bias, inputs.mean, inputs.var], { epsilon: A.float(eps), training_mode: A.int(1) }, { outputNames: [y], name: n.name });
    } else {
      const axes = [0, ...Array.from({ length: rank - 2 }, (_, i) => i + 2)];
      let meanUsed: string;
      let centered: string;
      let varUsed: string;
      // Written so that the backward pass stays cheap: sums times 1/M (the reduce rule then only
      // expands, no division of a full-size tensor), and x - mu as x + (-mu) (the negation acts
      // on the [1, C, 1, 1] vector, not on the full-size gradient).
      if (o.norm === 'source') {
        meanUsed = inputs.mean;
        varUsed = inputs.var;
        centered = opForm ? '' : b.op1('Add', [x!, b.op1('Neg', [meanUsed])]);
      } else {
        const count = b.op1('Div', [b.op1('Cast', [b.op1('Size', [x!])], { to: A.int(1) }), b.scalar(C)]);
        const invM = b.op1('Reciprocal', [count]);
        const muB4 = b.op1('Mul', [reduce(b, opset, 'ReduceSum', x!, axes, true), invM]);
        const dB = b.op1('Add', [x!, b.op1('Neg', [muB4])]);
        const varB4 = b.op1('Mul', [reduce(b, opset, 'ReduceSum', b.op1('Mul', [dB, dB]), axes, true), invM]);
        const flat = (v: string): string => (opForm ? b.op1('Reshape', [v, b.ints([-1])]) : v);
        const muB = flat(muB4);
        const varB = flat(varB4);
        if (o.norm === 'batch') {
          meanUsed = muB4;
          varUsed = varB4;
          centered = dB;
        } else {
          if (!b.inputs.some((v) => v.name === ROBUST_ALPHA)) b.input(ROBUST_ALPHA, 'float32', []);
          const alpha = ROBUST_ALPHA;
          const m = inputs.mean;
          const v = inputs.var;
          outputs = { mean: `${n.name}::mixed_mean`, var: `${n.name}::mixed_var`, batchMean: `${n.name}::batch_mean`, batchVar: `${n.name}::batch_var` };
          b.op('Identity', [muB], {}, { outputNames: [outputs.batchMean] });
          b.op('Identity', [varB], {}, { outputNames: [outputs.batchVar] });
          b.output(outputs.batchMean, 'float32', paramDims);
          b.output(outputs.batchVar, 'float32', paramDims);
          meanUsed = b.op1('Add', [m, b.op1('Mul', [alpha, b.op1('Sub', [muB, m])])], {}, { outputNames: [outputs.mean] });
          varUsed = b.op1('Add', [v, b.op1('Mul', [alpha, b.op1('Sub', [varB, v])])], {}, { outputNames: [outputs.var] });
          if (o.detachRobustStats) {
            meanUsed = detach(b, meanUsed);
            varUsed = detach(b, varUsed);
          }
          centered = opForm ? '' : b.op1('Add', [x!, b.op1('Neg', [meanUsed])]);
          b.output(outputs.mean, 'float32', paramDims);
          b.output(outputs.var, 'float32', paramDims);
        }
      }
      if (opForm) {
        b.op('BatchNormalization', [x!, inputs.scale, inputs.bias, meanUsed, varUsed], { epsilon: A.float(eps) }, { outputNames: [y], name: n.name });
      } else {
        const inv = b.op1('Reciprocal', [b.op1('Sqrt', [b.op1('Add', [varUsed, b.scalar(eps)])])]);
        b.op('Add', [b.op1('Mul', [centered, b.op1('Mul', [inv, inputs.scale])]), inputs.bias], {}, { outputNames: [y], name: n.name });
      }
    }
    layers.push({ node: n.name, channels: C, epsilon: eps, paramDims, inputs, ...(outputs ? { outputs } : {}), source: { scale: sc, bias: bi, mean: mu, var: va } });
  }
  let graph = pruneInitializers(b.build());
  if (bnOps && o.norm === 'batch') graph = lowerBatchNorm({ ...model, graph }, { stats: 'model', lowering: o.statsLowering ?? 'op' }, opset).graph;
  return { graph, layers };
}

/** Drops initializers no node reads and no output names. */
export function pruneInitializers(g: Graph): Graph {
  const used = new Set<string>();
  for (const n of g.nodes) n.inputs.forEach((i) => used.add(i));
  for (const v of g.outputs) used.add(v.name);
  const inits = new Map([...g.initializers].filter(([k]) => used.has(k)));
  return { ...g, initializers: inits };
}
