// Softmax cross-entropy with integer labels, mean over the batch, built from differentiable ops:
//   loss = -mean_n sum_k t[n,k] * log_softmax(z)[n,k]
// with t the one-hot labels (fed as float, or int64 class indices turned one-hot by OneHot, which
// carries no gradient).
import { TtaqError } from '../errors/index.ts';
import { A, GraphBuilder } from '../onnx/builder.ts';
import { f32, i64 } from '../onnx/tensor.ts';
import type { Model } from '../onnx/types.ts';
import { getOpset } from '../onnx/versions.ts';

export interface CrossEntropyOptions {
  /** 'int64': labels [N] of class indices; 'onehot': labels [N, C] float. */
  readonly labels: 'int64' | 'onehot';
  readonly classes: number;
  /** Default-domain opset of the graph (decides ReduceMean's form). Default 17. */
  readonly opset?: number;
  /** Output name of the loss (default: a fresh name). */
  readonly lossName?: string;
}

/** Appends the loss nodes to `b`; returns the scalar loss value name. */
export function softmaxCrossEntropy(b: GraphBuilder, logits: string, labels: string, o: CrossEntropyOptions): string {
  if (!Number.isInteger(o.classes) || o.classes < 2) {
    throw new TtaqError('AUTODIFF_BAD_REQUEST', `softmaxCrossEntropy: classes must be an integer >= 2, got ${o.classes}`);
  }
  const opset = o.opset ?? 17;
  const onehot = o.labels === 'onehot'
    ? labels
    : b.op1('OneHot', [labels, b.constant(i64([1], [o.classes]), 'ce_depth'), b.constant(f32([2], [0, 1]), 'ce_values')], { axis: A.int(-1) }, { name: 'ce.onehot' });
  const logp = b.op1('LogSoftmax', [logits], { axis: A.int(1) }, { name: 'ce.log_softmax' });
  const perSample = b.op1('ReduceSum', [b.op1('Mul', [logp, onehot], {}, { name: 'ce.pick' }), b.ints([1])], { keepdims: A.int(0) }, { name: 'ce.sum_classes' });
  const mean = opset >= 18
    ? b.op1('ReduceMean', [perSample, b.ints([0])], { keepdims: A.int(0) }, { name: 'ce.mean' })
    : b.op1('ReduceMean', [perSample], { axes: A.ints([0]), keepdims: A.int(0) }, { name: 'ce.mean' });
  const opts = o.lossName ? { name: 'ce.neg', outputNames: [o.lossName] } : { name: 'ce.neg' };
  return b.op1('Neg', [mean], {}, opts);
}

/**
 * A copy of `model` with a labels input (`labelsName`, default 'labels') and the cross-entropy of
 * `logits` as a scalar output (`lossName`, default 'loss'), listed first.
 */
export function withSoftmaxCrossEntropy(
  model: Model,
  logits: string,
  o: CrossEntropyOptions & { readonly labelsName?: string },
): { model: Model; loss: string; labels: string } {
  const g = model.graph;
  const b = GraphBuilder.from(g, 'ce_');
  const labels = o.labelsName ?? 'labels';
  const lossName = o.lossName ?? 'loss';
  for (const n of [labels, lossName]) {
    if (g.inputs.some((v) => v.name === n) || g.initializers.has(n) || g.nodes.some((x) => x.outputs.includes(n))) {
      throw new TtaqError('AUTODIFF_BAD_REQUEST', `withSoftmaxCrossEntropy: model '${g.name}' already has a value '${n}'; pass another labelsName/lossName`, { name: n });
    }
  }
  const batch = g.outputs.find((v) => v.name === logits)?.shape?.[0] ?? g.inputs[0]?.shape?.[0] ?? 'N';
  if (o.labels === 'int64') b.input(labels, 'int64', [batch]);
  else b.input(labels, 'float32', [batch, o.classes]);
  const loss = softmaxCrossEntropy(b, logits, labels, { ...o, opset: o.opset ?? getOpset(model) ?? 17, lossName });
  const built = b.build();
  const lossInfo = { name: loss, dtype: 'float32' as const, shape: [] };
  return { model: { ...model, graph: { ...built, outputs: [lossInfo, ...g.outputs] } }, loss, labels };
}
