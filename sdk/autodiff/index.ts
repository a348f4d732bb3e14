// sdk/autodiff: backward passes as ONNX graphs, run by onnxruntime (onnxruntime-node has no
// training API). One rule per op under `rules/`, a registry, a loss helper and a step runner.
//
// API (stable; other modules build on it):
//
//   buildGradientGraph(req: GradientRequest): Promise<GradientGraph>
//     req.model   forward Model; req.loss: name of a scalar float value in it
//     req.wrt     values to differentiate with respect to: initializers (promoted to graph inputs,
//                 so each step feeds the current parameters) or graph inputs
//     req.outputs extra forward values to output ('graph' = every forward graph output)
//     req.stopGradient  values treated as constants (also: nodes made by `detach`)
//     req.batchNorm     'model' (default: training_mode=1 nodes use batch statistics, others the
//                       given running statistics) | 'batch' (every BN on batch statistics) | 'running'
//                       | { stats?: one of those, lowering?: 'fused' (default: one BN kernel fed the
//                       batch moments, closed-form backward) | 'primitive' (elementwise ops) }
//     req.ruleOptions   formulation choices, e.g. { conv: LEGACY_CONV_GRAD } (Conv's backward pass
//                       as ConvTranspose + batch-transposed Conv), { conv: CONCAT_GEMM_CONV_GRAD }
//                       (the dW form before the per-offset Gemms), { relu: 'where' }; default: the
//                       fastest measured form (per conv: chooseConvGrad)
//     req.shapes        static dtypes/shapes of values; inferred by running the forward model once
//                       (symbolic dims fed as req.sampleBatch, default 2) when not given
//   -> GradientGraph { model, loss, outputs, grads: Map<wrt, output name>, params: Map<wrt,
//      initial Tensor> (the promoted initializers), inputs: data inputs still to feed }
//   Gradient outputs are named `grad:<wrt>` unless req.gradName says otherwise. Each gradient
//   output has the dtype and shape of its wrt value. One run computes loss, outputs and gradients.
//
//   buildGradientGraphWithShapes(req, shapes): GradientGraph   synchronous, shapes given
//   inferValueShapes(model, opts?): Promise<ValueShapes>       dtype + dims of every value
//   softmaxCrossEntropy(b, logits, labels, { labels: 'int64' | 'onehot', classes }): loss name
//   withSoftmaxCrossEntropy(model, logits, opts): { model, loss, labels }   (adds a labels input)
//   detach(b, name): name of a copy of `name` that carries no gradient
//   GradientStep.create(graph, opts?) -> step.run(params, batch) -> { loss, outputs, grads }
//   copyParams(map): deep copies of parameter tensors (GradientGraph.params is the model's own data)
//   registerRule(rule) / getRule(opType, domain?)  the per-op registry (rules/index.ts)
//
// Example:
//   const { model, loss } = withSoftmaxCrossEntropy(net, 'logits', { labels: 'int64', classes: 10 });
//   const gg = await buildGradientGraph({ model, loss, wrt: paramNames, outputs: ['logits'] });
//   const step = await GradientStep.create(gg);
//   const params = copyParams(gg.params);                   // name -> float32 Tensor
//   const opt = new Sgd({ lr: 0.1, momentum: 0.9 });        // sdk/optim
//   for (const batch of batches) {
//     const r = await step.run(params, { input: batch.x, labels: batch.y });
//     opt.step(params, r.grads);                            // updates the Float32Arrays in place
//   }
//
// Errors: AUTODIFF_NO_RULE (names the op, the node and the model), AUTODIFF_BAD_REQUEST (unknown
// loss/wrt, non-scalar loss, integer wrt, opset below 13, unsupported attribute of an op).
export {
  buildGradientGraph,
  buildGradientGraphWithShapes,
  GRAD_PREFIX,
  type GradientGraph,
  type GradientRequest,
  type BatchNormMode,
} from './graph.ts';
export { inferValueShapes, type ValueShape, type ValueShapes, type InferShapesOptions } from './shapes.ts';
export { softmaxCrossEntropy, withSoftmaxCrossEntropy, type CrossEntropyOptions } from './loss.ts';
export { detach, STOP_GRADIENT_OP_NAME } from './detach.ts';
export { GradientStep, batchNormForSession, copyParams, executionSession, forExecution, type ConvLayout, type StepResult, type StepOptions, type ParamFeed } from './step.ts';
export { type RowFeed, type BatchFeed } from './feeds.ts';
export { DataParallelStep, chooseWorkers, chooseWorkersFor, idleStepWorkers, SLICE_MIN_SAMPLE_VALUES, threadsPerSlice, type ParallelStepOptions } from './parallel.ts';
export { registerRule, getRule, listRules, type GradRule, type RuleContext, type RuleOptions } from './rules/index.ts';
export { chooseConvGrad, CONCAT_GEMM_CONV_GRAD, CONV_TRANSPOSE_MAX_INPUT_CHANNELS, LEGACY_CONV_GRAD, type ConvCase, type ConvGradOptions, type ConvInputGrad, type ConvWeightGrad } from './rules/convgrad.ts';
