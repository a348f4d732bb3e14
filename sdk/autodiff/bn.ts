// BatchNormalization on batch statistics, rewritten before differentiation. Three lowerings:
//
// 'op' (default): one training-mode BatchNormalization node with momentum 0, whose second and third
// outputs are then the batch mean and population variance, with a closed-form backward
// (rules/BatchNormTraining.ts); onnxruntime's CPU kernel computes the statistics and normalises in
// one op (ResNet-20's TENT step: about a pass and a half over each activation fewer than 'fused').
// Its running-statistics inputs are constants computed from the scale (momentum 0 ignores them), so
// the node reads no other value. Models below opset 15 get 'fused' instead (OP_LOWERING_MIN_OPSET).
// 'fused': the statistics in primitive ops, the normalisation as an inference-mode
// BatchNormalization node fed with them, whose closed-form backward (rules/BatchNormTraining.ts)
// covers the path through the statistics:
//   x3 = Reshape(X, [0, 0, -1]);  mu3 = mean(x3, [0, 2]);  d3 = x3 - mu3;  v3 = mean(d3*d3, [0, 2])
//   mu = Reshape(mu3, [-1]);  v = Reshape(v3, [-1]);  Y = BatchNormalization(X, scale, B, mu, v)
// 'primitive' (the former lowering, kept for comparison): every step a primitive op, each
// differentiated by its own rule:
//   x3 as above;  Y = Reshape(d3 / sqrt(v3 + eps) * scale + B, Shape(X))
// Both: running_mean_out = m * input_mean + (1 - m) * mu, running_var_out likewise with v (with
// momentum 0 the outputs are the batch statistics themselves). v is the population (biased)
// variance, as in ONNX's training mode. Output names are kept.
import { TtaqError } from '../errors/index.ts';
import { A, GraphBuilder } from '../onnx/builder.ts';
import { makeTensor, allocArray } from '../onnx/tensor.ts';
import type { DType, Model, Node, Tensor } from '../onnx/types.ts';

/**
 * 'model': BN nodes with training_mode = 1 use batch statistics, the others their inputs' running
 * statistics; 'batch': every BN uses batch statistics (TENT-style adaptation, training);
 * 'running': every BN uses the running statistics it is given.
 */
export type BatchNormStats = 'model' | 'batch' | 'running';

/** How batch-statistics BN is differentiated: closed-form backward on a training-mode node (default)
 * or on an inference node fed with statistics from primitive ops, or primitive ops throughout. */
export type BatchNormLowering = 'op' | 'fused' | 'primitive';

export interface BatchNormOptions {
  /** Default 'model'. */
  readonly stats?: BatchNormStats;
  /** Default 'fused'. */
  readonly lowering?: BatchNormLowering;
}

/** GradientRequest.batchNorm: a statistics mode, or an options object that may also pick the lowering. */
export type BatchNormMode = BatchNormStats | BatchNormOptions;

/**
 * Name prefix of the inference-mode BatchNormalization nodes that the 'fused' lowering feeds with
 * batch statistics; the BatchNormalization rule gives them the closed-form training backward. The
 * '.static' variant marks graphs whose inputs have only fixed dims (element counts are constants).
 */
export const BN_BATCH_STATS_PREFIX = 'ttaq.bn_batch_stats';
const DYNAMIC_TAG = `${BN_BATCH_STATS_PREFIX}/`;
const STATIC_TAG = `${BN_BATCH_STATS_PREFIX}.static/`;
/** Models below this opset get the 'fused' lowering where 'op' is asked for (see lowerBatchNorm). */
export const OP_LOWERING_MIN_OPSET = 15;

/** Name prefix of the training-mode BatchNormalization nodes of the 'op' lowering. */
export const BN_BATCH_OP_PREFIX = 'ttaq.bn_batch_op';
const OP_DYNAMIC_TAG = `${BN_BATCH_OP_PREFIX}/`;
const OP_STATIC_TAG = `${BN_BATCH_OP_PREFIX}.static/`;

/**
 * Whether a node is a batch-statistics BN made by the 'fused' lowering (op false: statistics are
 * its inputs) or the 'op' lowering (op true: statistics are its outputs 1 and 2), and whether its
 * graph is static.
 */
export function batchStatsBn(n: Node): { readonly static: boolean; readonly op: boolean } | null {
  if (n.opType !== 'BatchNormalization' || n.domain !== '') return null;
  if (n.name.startsWith(STATIC_TAG)) return { static: true, op: false };
  if (n.name.startsWith(DYNAMIC_TAG)) return { static: false, op: false };
  if (n.name.startsWith(OP_STATIC_TAG)) return { static: true, op: true };
  if (n.name.startsWith(OP_DYNAMIC_TAG)) return { static: false, op: true };
  return null;
}

const isTraining = (n: Node, opset: number): boolean => {
  const a = n.attrs['training_mode'];
  if (a?.kind === 'int') return a.value === 1;
  return opset < 14 && n.outputs.filter(Boolean).length > 1;
};

const STATS: ReadonlySet<string> = new Set(['model', 'batch', 'running']);

function resolve(mode: BatchNormMode, where: string): { stats: BatchNormStats; lowering: BatchNormLowering } {
  const o: BatchNormOptions = typeof mode === 'string' ? { stats: mode } : mode;
  const stats = o.stats ?? 'model';
  const lowering = o.lowering ?? 'op';
  if (!STATS.has(stats)) throw new TtaqError('AUTODIFF_BAD_REQUEST', `${where}: batchNorm statistics mode '${String(stats)}' is unknown; use 'model', 'batch' or 'running'`);
  if (lowering !== 'op' && lowering !== 'fused' && lowering !== 'primitive') throw new TtaqError('AUTODIFF_BAD_REQUEST', `${where}: batchNorm lowering '${String(lowering)}' is unknown; use 'op', 'fused' or 'primitive'`);
  return { stats, lowering };
}

/** Returns the model with BN nodes rewritten per `mode` (the same object when nothing changes). */
export function lowerBatchNorm(model: Model, mode: BatchNormMode, opset: number): Model {
  const g = model.graph;
  const resolved = resolve(mode, `gradient graph for model '${g.name || 'model'}'`);
  const { stats } = resolved;
  // the op form needs BatchNormalization-15 or later: version 9 has no training mode, and
  // onnxruntime's CUDA kernel refuses training mode at version 14
  const lowering = resolved.lowering === 'op' && opset < OP_LOWERING_MIN_OPSET ? 'fused' : resolved.lowering;
  const bns = g.nodes.filter((n) => n.opType === 'BatchNormalization' && n.domain === '');
  if (bns.length === 0) return model;
  const taken: string[] = [];
  for (const n of g.nodes) { taken.push(n.name); for (const o of n.outputs) if (o) taken.push(o); }
  for (const v of g.inputs) taken.push(v.name);
  for (const k of g.initializers.keys()) taken.push(k);
  const b = new GraphBuilder(g.name, '', taken);
  const dtypeOf = (name: string): DType =>
    g.initializers.get(name)?.dtype ?? g.inputs.find((v) => v.name === name)?.dtype ?? g.valueInfo.get(name)?.dtype ?? 'float32';
  const scalar = (v: number, dt: DType): string => {
    const data = allocArray(dt, 1);
    (data as Float32Array)[0] = v;
    return b.constant(makeTensor(dt, [], data) as Tensor, 'bn_const');
  };
  // Element counts are constants when every data input has fixed dims.
  const staticDims = g.inputs.every((v) => g.initializers.has(v.name) || (!!v.shape && v.shape.every((d) => typeof d === 'number')));
  const nodes: Node[] = [];
  let changed = false;
  for (const n of g.nodes) {
    // a node an earlier 'op' lowering made is final (its statistics inputs are placeholders)
    if (n.opType !== 'BatchNormalization' || n.domain !== '' || batchStatsBn(n)?.op) { nodes.push(n); continue; }
    const training = stats === 'batch' || (stats === 'model' && isTraining(n, opset));
    const outs = n.outputs;
    if (outs.length > 3 && outs.slice(3).some(Boolean)) {
      throw new TtaqError('AUTODIFF_BAD_REQUEST', `BatchNormalization node '${n.name}' of model '${g.name}' uses the saved_mean/saved_var outputs of opset < 14; re-export the model at opset 14 or later`, { node: n.name });
    }
    const [X, scale, B, inMean, inVar] = n.inputs as [string, string, string, string, string];
    const eps = n.attrs['epsilon']?.kind === 'float' ? n.attrs['epsilon'].value : 1e-5;
    const momentum = n.attrs['momentum']?.kind === 'float' ? n.attrs['momentum'].value : 0.9;
    const start = b.nodes.length;
    const pre = n.name;
    const dt = dtypeOf(scale);
    // running_out = momentum * running_in + (1 - momentum) * batch statistic (a [C] vector)
    const blend = (stat: string, given: string, out: string, what: string): void => {
      const a = b.op1('Mul', [given, scalar(momentum, dt)], {}, { name: `${pre}.${what}_old` });
      const c = b.op1('Mul', [stat, scalar(1 - momentum, dt)], {}, { name: `${pre}.${what}_new` });
      b.op('Add', [a, c], {}, { outputNames: [out], name: `${pre}.${what}` });
    };
    if (!training) {
      if (!isTraining(n, opset)) { nodes.push(n); continue; }
      // Training node evaluated on running statistics: inference BN, running outputs pass through.
      const { training_mode: _t, ...attrs } = n.attrs;
      b.op('BatchNormalization', n.inputs, attrs, { outputNames: [outs[0]!], name: n.name });
      if (outs[1]) b.op('Identity', [inMean], {}, { outputNames: [outs[1]], name: `${n.name}.running_mean` });
      if (outs[2]) b.op('Identity', [inVar], {}, { outputNames: [outs[2]], name: `${n.name}.running_var` });
    } else if (lowering === 'op') {
      // two distinct values: onnxruntime may compute outputs 1 and 2 in place of inputs 3 and 4, and
      // one buffer fed to both made the mean come out as the variance
      const noMean = b.op1('Mul', [scale, scalar(0, dt)], {}, { name: `${pre}.no_running_mean` });
      const noVar = b.op1('Add', [noMean, scalar(1, dt)], {}, { name: `${pre}.no_running_var` });
      // with momentum 0 the node's statistics are the running outputs themselves
      const statName = (out: string | undefined, what: string): string => (momentum === 0 && out ? out : b.fresh(`${pre}.batch_${what}`));
      const [, mu, v] = b.op('BatchNormalization', [X, scale, B, noMean, noVar], { epsilon: A.float(eps), momentum: A.float(0), training_mode: A.int(1) },
        { outputNames: [outs[0]!, statName(outs[1], 'mean'), statName(outs[2], 'var')], name: `${staticDims ? OP_STATIC_TAG : OP_DYNAMIC_TAG}${pre}` });
      if (momentum !== 0 && outs[1]) blend(mu!, inMean, outs[1], 'running_mean');
      if (momentum !== 0 && outs[2]) blend(v!, inVar, outs[2], 'running_var');
    } else {
      const reduceMean = (x: string, name: string): string => opset >= 18
        ? b.op1('ReduceMean', [x, b.ints([0, 2])], { keepdims: A.int(1) }, { name })
        : b.op1('ReduceMean', [x], { axes: A.ints([0, 2]), keepdims: A.int(1) }, { name });
      const x3 = b.op1('Reshape', [X, b.ints([0, 0, -1])], {}, { name: `${pre}.flatten` });
      const mu = reduceMean(x3, `${pre}.batch_mean`);
      const d = b.op1('Sub', [x3, mu], {}, { name: `${pre}.center` });
      const v = reduceMean(b.op1('Mul', [d, d], {}, { name: `${pre}.square` }), `${pre}.batch_var`);
      // Per-channel [C] statistics; with momentum 0 they are the running outputs themselves.
      const flat = (stat: string, out: string | undefined, what: string): string => (momentum === 0 && out)
        ? b.op1('Reshape', [stat, b.ints([-1])], {}, { outputNames: [out], name: `${pre}.${what}` })
        : b.op1('Reshape', [stat, b.ints([-1])], {}, { name: `${pre}.${what}_flat` });
      if (lowering === 'fused') {
        const mu1 = flat(mu, outs[1], 'running_mean');
        const v1 = flat(v, outs[2], 'running_var');
        b.op('BatchNormalization', [X, scale, B, mu1, v1], { epsilon: A.float(eps) },
          { outputNames: [outs[0]!], name: `${staticDims ? STATIC_TAG : DYNAMIC_TAG}${pre}` });
        if (momentum !== 0 && outs[1]) blend(mu1, inMean, outs[1], 'running_mean');
        if (momentum !== 0 && outs[2]) blend(v1, inVar, outs[2], 'running_var');
      } else {
        const inv = b.op1('Reciprocal', [b.op1('Sqrt', [b.op1('Add', [v, scalar(eps, dt)], {}, { name: `${pre}.add_eps` })], {}, { name: `${pre}.std` })], {}, { name: `${pre}.inv_std` });
        const shape = b.ints([1, -1, 1]);
        const s3 = b.op1('Reshape', [scale, shape], {}, { name: `${pre}.scale3` });
        const b3 = b.op1('Reshape', [B, shape], {}, { name: `${pre}.bias3` });
        const y3 = b.op1('Add', [b.op1('Mul', [b.op1('Mul', [d, inv], {}, { name: `${pre}.normalize` }), s3], {}, { name: `${pre}.scale` }), b3], {}, { name: `${pre}.shift` });
        b.op('Reshape', [y3, b.op1('Shape', [X], {}, { name: `${pre}.shape` })], {}, { outputNames: [outs[0]!], name: pre });
        const running = (stat: string, given: string, out: string, what: string): void => {
          if (momentum === 0) flat(stat, out, what);
          else blend(flat(stat, undefined, what), given, out, what);
        };
        if (outs[1]) running(mu, inMean, outs[1], 'running_mean');
        if (outs[2]) running(v, inVar, outs[2], 'running_var');
      }
    }
    nodes.push(...b.nodes.slice(start));
    changed = true;
  }
  if (!changed) return model;
  const initializers = new Map(g.initializers);
  for (const [k, t] of b.initializers) initializers.set(k, t);
  return { ...model, graph: { ...g, nodes, initializers } };
}
