// Builds, once per model and option set, the two graphs an adapter runs:
// - inference: the model with BN parameters/statistics as inputs, normalising in the chosen mode,
//   plus predictions, per-sample confidence and entropy (and the mixed statistics in robust mode);
// - step: the same forward pass with the loss head, differentiated by sdk/autodiff: one run gives
//   logits, predictions, confidences, entropy, loss, ABL's per-class summaries and the gradients
//   of the adapted BN scales and biases.
import { buildGradientGraph, detach, inferValueShapes, type ConvGradOptions, type GradientGraph } from '../autodiff/index.ts';
import { TtaqError } from '../errors/index.ts';
import { GraphBuilder } from '../onnx/builder.ts';
import type { Model, ValueInfo } from '../onnx/types.ts';
import { defaultOpset, rewriteBn, type BnLayer } from './bn.ts';
import { addLossHead, addPredictionHead, HEAD } from './loss.ts';
import type { LossKind, NormMode } from './options.ts';

export interface AdaptGraphOptions {
  readonly norm: NormMode;
  readonly loss: LossKind;
  /** Unused (robust alpha is fed per step); kept for callers that pass it. */
  readonly robustAlpha?: number;
  /** Robust mode: no gradient through the mixed statistics (default true). */
  readonly detachRobustStats?: boolean;
  /** Entropy margin as a fraction of ln C. */
  readonly entropyMargin: number;
  readonly maxWeight: number;
  /** ABL: how the class weights are normalised (see HeadOptions.weightNorm; default 'batch'). */
  readonly weightNorm?: 'batch' | 'prior';
  readonly bnNodes?: readonly string[] | undefined;
  readonly freezeLast: number;
  /** Image input name (default: the model's first graph input). */
  readonly input?: string | undefined;
  /** Logits output name (default: the model's first graph output). */
  readonly logits?: string | undefined;
  /** Number of classes (default: from the logits' static shape). */
  readonly classes?: number | undefined;
  /**
   * How the autodiff Conv rule writes the convolutions' input gradients (default: per conv, the
   * fastest form: a Conv with flipped weights where no axis is strided; see sdk/autodiff/rules/convgrad.ts).
   */
  readonly convGrad?: ConvGradOptions;
  /** BN as BatchNormalization ops with closed-form backward ('fused', default) or op by op (see rewriteBn). */
  readonly batchLowering?: 'fused' | 'primitive';
  /** Batch statistics in one training-mode BatchNormalization op ('op', default) or from reductions ('fused'; see rewriteBn). */
  readonly statsLowering?: 'op' | 'fused';
  /** Batch size used when the step graph's shapes are inferred (default 2). */
  readonly sampleBatch?: number;
  readonly source?: string;
}

export interface AdaptGraphs {
  readonly inference: Model;
  /** null when the loss is 'none' (no parameter update). */
  readonly step: GradientGraph | null;
  /** Every rewritten BN layer of the inference graph, in graph order. */
  readonly layers: readonly BnLayer[];
  /** The same layers as the step graph takes them (parameter dims may differ: fused vs explicit BN). */
  readonly stepLayers: readonly BnLayer[];
  /** Layers whose scale and bias are updated (all but the last `freezeLast`). */
  readonly adapted: readonly BnLayer[];
  readonly input: string;
  readonly logits: string;
  readonly classes: number;
  /** Whether the BN statistics are graph inputs (source and robust modes). */
  readonly statsFed: boolean;
}

function findClasses(m: Model, logits: string, source: string): number {
  const info: ValueInfo | undefined = m.graph.outputs.find((v) => v.name === logits) ?? m.graph.valueInfo.get(logits);
  const last = info?.shape?.[info.shape.length - 1];
  if (typeof last === 'number' && last > 1) return last;
  throw new TtaqError('CONFIG_INVALID', `${source}: cannot tell the number of classes from output '${logits}' (shape ${JSON.stringify(info?.shape ?? null)}); pass classes (or a manifest with labels)`);
}

/** Removes the BN statistics inputs that no node reads (batch mode normalises without them). */
function dropUnusedInputs(m: Model): Model {
  const used = new Set<string>();
  for (const n of m.graph.nodes) n.inputs.forEach((x) => used.add(x));
  for (const v of m.graph.outputs) used.add(v.name);
  return { ...m, graph: { ...m.graph, inputs: m.graph.inputs.filter((v) => used.has(v.name)) } };
}

export async function buildAdaptGraphs(model: Model, o: AdaptGraphOptions): Promise<AdaptGraphs> {
  const source = o.source ?? `model '${model.graph.name}'`;
  const opset = defaultOpset(model);
  if (opset < 13) {
    throw new TtaqError('ONNX_UNSUPPORTED_OPSET', `${source} uses opset ${opset}; adaptation needs opset 13 or later (convert the model with onnx.version_converter)`);
  }
  const input = o.input ?? model.graph.inputs.find((v) => !model.graph.initializers.has(v.name))?.name;
  const logits = o.logits ?? model.graph.outputs[0]?.name;
  if (!input || !model.graph.inputs.some((v) => v.name === input)) throw new TtaqError('CONFIG_INVALID', `${source}: image input '${input ?? '(none)'}' is not a graph input`);
  if (!logits || !model.graph.outputs.some((v) => v.name === logits)) throw new TtaqError('CONFIG_INVALID', `${source}: logits '${logits ?? '(none)'}' is not a graph output`);
  const classes = o.classes ?? findClasses(model, logits, source);
  const statsFed = o.norm !== 'batch';
  const shapes = await inferValueShapes(model, { sampleBatch: 2 });
  const ranks = new Map<string, number>();
  for (const n of model.graph.nodes) {
    const x = n.opType === 'BatchNormalization' ? n.inputs[0] : undefined;
    const dims = x ? shapes.get(x)?.dims : undefined;
    if (x && dims) ranks.set(x, dims.length);
  }

  const finish = (withLoss: boolean): { model: Model; layers: readonly BnLayer[]; loss?: string } => {
    const rw = rewriteBn(model, { norm: o.norm, detachRobustStats: o.detachRobustStats ?? true, bnNodes: o.bnNodes, keepFusedOp: !withLoss, ranks, source, ...(o.batchLowering ? { batchLowering: o.batchLowering } : {}), ...(o.statsLowering ? { statsLowering: o.statsLowering } : {}) });
    const b = GraphBuilder.from(rw.graph);
    // Keep only the logits among the original outputs (plus the robust statistics).
    const keep = new Set([logits, ...rw.layers.flatMap((l) => (l.outputs ? [l.outputs.mean, l.outputs.var, l.outputs.batchMean, l.outputs.batchVar] : []))]);
    b.outputs.splice(0, b.outputs.length, ...b.outputs.filter((v) => keep.has(v.name)));
    const headOpts = { logits, classes, opset, loss: o.loss, margin: o.entropyMargin * Math.log(classes), maxWeight: o.maxWeight, weightNorm: o.weightNorm ?? 'batch', detach };
    const head = addPredictionHead(b, headOpts);
    const loss = withLoss ? addLossHead(b, headOpts, head) : undefined;
    const m = dropUnusedInputs({ ...model, graph: b.build() });
    return { model: m, layers: rw.layers, ...(loss ? { loss } : {}) };
  };

  const inf = finish(false);
  const layers = inf.layers;
  const adapted = layers.slice(0, Math.max(0, layers.length - o.freezeLast));
  let step: GradientGraph | null = null;
  let stepLayers: readonly BnLayer[] = layers;
  if (o.loss !== 'none') {
    if (adapted.length === 0) throw new TtaqError('CONFIG_INVALID', `${source}: freezeLast ${o.freezeLast} leaves no BN layer to adapt (the model has ${layers.length})`);
    const st = finish(true);
    stepLayers = st.layers;
    const outputs = st.model.graph.outputs.map((v) => v.name).filter((n) => n !== st.loss);
    try {
      step = await buildGradientGraph({
        model: st.model,
        loss: st.loss!,
        wrt: adapted.flatMap((l) => [l.inputs.scale, l.inputs.bias]),
        outputs,
        sampleBatch: o.sampleBatch ?? 2,
        ...(o.convGrad ? { ruleOptions: { conv: o.convGrad } } : {}),
      });
    } catch (e) {
      if (e instanceof TtaqError && e.code === 'AUTODIFF_NO_RULE') {
        throw new TtaqError('AUTODIFF_NO_RULE', `${source}: cannot build the adaptation step: ${e.message}`, e.details, { cause: e });
      }
      throw e;
    }
  }
  return { inference: inf.model, step, layers, stepLayers, adapted: stepLayers.slice(0, adapted.length), input, logits, classes, statsFed };
}

export { HEAD };
