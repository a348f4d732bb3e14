// The adaptation heads appended to the logits z [N, C]: predictions, confidences (max softmax
// probability) and entropies for every graph,
// plus, for the adapt-step graph, the loss and the per-class batch summaries ABL needs.
//
//   H_i   = -sum_k p_ik log p_ik,  p = softmax(z)                     (raw entropy, nats)
//   entropy: L = mean_i H_i                                           (TENT)
//   eata:    L = sum_i m_i c_i H_i / N,  m_i = [H_i < E0],  c_i = exp(E0 - H_i) (detached)
//   abl:     L = sum_i m_i w_i H'_i / N, H'_i = H(softmax(z_i + o)),  o = tau log pi (input),
//            w_i = min(v[yhat_i] / mean_j v[yhat_j], wmax),  v = per-class weights (input)
//
// The mask, the EATA coefficient and the ABL weights carry no gradient. For ABL the graph also
// outputs sum_i p_i, the predicted-class counts, the predicted-class entropy sums (normalised by
// ln C) and sum_i |dL/dz_i|, the last computed in closed form:
// dL/dz_ik = -(m_i w_i / N) p'_ik (log p'_ik + H'_i).
import { GraphBuilder, A } from '../onnx/builder.ts';
import { reduce } from './bn.ts';
import type { LossKind } from './options.ts';

/** Names of the values the heads add. */
export const HEAD = {
  pred: 'ttaq::pred',
  confidence: 'ttaq::confidence',
  entropy: 'ttaq::entropy',
  loss: 'ttaq::loss',
  selected: 'ttaq::selected',
  classWeight: 'ttaq::class_weight',
  logitOffset: 'ttaq::logit_offset',
  probSum: 'ttaq::prob_sum',
  predCount: 'ttaq::pred_count',
  predEntropySum: 'ttaq::pred_entropy_sum',
  gradAbsSum: 'ttaq::grad_abs_sum',
} as const;

export interface HeadOptions {
  readonly logits: string;
  readonly classes: number;
  readonly opset: number;
  readonly loss: LossKind;
  /** Entropy margin E0 in nats (eata, abl). */
  readonly margin: number;
  /** ABL: cap of a normalised sample weight. */
  readonly maxWeight: number;
  /**
   * ABL: 'batch' divides the gathered class weights by their batch mean; 'prior' uses them as fed
   * (the adapter normalises them by their expectation under the class-frequency estimate).
   */
  readonly weightNorm?: 'batch' | 'prior';
  /**
   * Marks a value as constant for differentiation (returns the name to use downstream). The
   * autodiff decides how; the default is the identity (correct where the value's producers are
   * non-differentiable anyway).
   */
  readonly detach?: (b: GraphBuilder, name: string) => string;
}

/**
 * Appends predictions, per-sample confidence (the predicted class's softmax probability) and
 * per-sample entropy as outputs; returns the log-softmax of the raw logits and its exponential.
 */
export function addPredictionHead(b: GraphBuilder, o: HeadOptions): { logp: string; p: string; pred: string; entropy: string } {
  const logp = b.op1('LogSoftmax', [o.logits], { axis: A.int(1) });
  const p = b.op1('Exp', [logp]);
  b.op('ArgMax', [o.logits], { axis: A.int(1), keepdims: A.int(0) }, { outputNames: [HEAD.pred] });
  reduce(b, o.opset, 'ReduceMax', p, [1], false, HEAD.confidence);
  b.op('Neg', [reduce(b, o.opset, 'ReduceSum', b.op1('Mul', [p, logp]), [1], false)], {}, { outputNames: [HEAD.entropy] });
  b.output(HEAD.pred, 'int64', [null]);
  b.output(HEAD.confidence, 'float32', [null]);
  b.output(HEAD.entropy, 'float32', [null]);
  return { logp, p, pred: HEAD.pred, entropy: HEAD.entropy };
}

/**
 * Appends the loss (and ABL's summaries) for the adapt-step graph. Returns the scalar loss name.
 * Adds graph inputs `ttaq::class_weight` and `ttaq::logit_offset` [C] for ABL.
 */
export function addLossHead(b: GraphBuilder, o: HeadOptions, head: { logp: string; p: string; pred: string; entropy: string }): string {
  const detach = o.detach ?? ((_b, n) => n);
  const C = o.classes;
  const red = (op: 'ReduceMean' | 'ReduceSum', x: string, axes: number[], keep: boolean, name?: string) => reduce(b, o.opset, op, x, axes, keep, name);
  if (o.loss === 'entropy') {
    red('ReduceMean', head.entropy, [0], false, HEAD.loss);
    b.output(HEAD.loss, 'float32', []);
    return HEAD.loss;
  }
  const margin = b.scalar(o.margin);
  const hConst = detach(b, head.entropy);
  const mask = b.op1('Cast', [b.op1('Less', [hConst, margin])], { to: A.int(1) });
  b.op('ReduceSum', [mask, b.ints([0])], { keepdims: A.int(0) }, { outputNames: [HEAD.selected] });
  b.output(HEAD.selected, 'float32', []);
  if (o.loss === 'eata') {
    const coef = b.op1('Exp', [b.op1('Sub', [margin, hConst])]);
    const c = detach(b, b.op1('Mul', [mask, coef]));
    red('ReduceMean', b.op1('Mul', [c, head.entropy]), [0], false, HEAD.loss);
    b.output(HEAD.loss, 'float32', []);
    return HEAD.loss;
  }
  // ABL
  b.input(HEAD.classWeight, 'float32', [C]);
  b.input(HEAD.logitOffset, 'float32', [C]);
  const zAdj = b.op1('Add', [o.logits, HEAD.logitOffset]);
  const logpA = b.op1('LogSoftmax', [zAdj], { axis: A.int(1) });
  const pA = b.op1('Exp', [logpA]);
  const hA = b.op1('Neg', [red('ReduceSum', b.op1('Mul', [pA, logpA]), [1], false)]);
  const wRaw = b.op1('Gather', [HEAD.classWeight, head.pred], { axis: A.int(0) });
  const wNorm = o.weightNorm === 'prior' ? wRaw : b.op1('Div', [wRaw, red('ReduceMean', wRaw, [0], true)]);
  const w = b.op1('Min', [wNorm, b.scalar(o.maxWeight)]);
  const c = detach(b, b.op1('Mul', [mask, w]));
  red('ReduceMean', b.op1('Mul', [c, hA]), [0], false, HEAD.loss);
  b.output(HEAD.loss, 'float32', []);

  // Per-class batch summaries (forward values only; nothing below feeds the loss).
  red('ReduceSum', head.p, [0], false, HEAD.probSum);
  const onehot = b.op1('OneHot', [head.pred, b.scalar(C, 'int64'), b.constant({ dtype: 'float32', dims: [2], data: Float32Array.from([0, 1]) }, 'onehot_values')], { axis: A.int(-1) });
  red('ReduceSum', onehot, [0], false, HEAD.predCount);
  const hNorm = b.op1('Mul', [head.entropy, b.scalar(1 / Math.log(C))]);
  const hCol = b.op1('Unsqueeze', [hNorm, b.ints([1])]);
  red('ReduceSum', b.op1('Mul', [onehot, hCol]), [0], false, HEAD.predEntropySum);
  const inner = b.op1('Add', [logpA, b.op1('Unsqueeze', [hA, b.ints([1])])]);
  const perSample = b.op1('Mul', [b.op1('Unsqueeze', [c, b.ints([1])]), b.op1('Abs', [b.op1('Mul', [pA, inner])])]);
  const n = b.op1('Cast', [b.op1('Gather', [b.op1('Shape', [o.logits]), b.scalar(0, 'int64')], { axis: A.int(0) })], { to: A.int(1) });
  b.op('Div', [red('ReduceSum', perSample, [0], false), n], {}, { outputNames: [HEAD.gradAbsSum] });
  for (const name of [HEAD.probSum, HEAD.predCount, HEAD.predEntropySum, HEAD.gradAbsSum]) b.output(name, 'float32', [C]);
  return HEAD.loss;
}
