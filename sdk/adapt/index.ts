// sdk/adapt: test-time adaptation of the BN affine parameters of an FP32 or quantized (QDQ) model:
// TENT, EATA-style filtered entropy, and ttaq's ABL (adaptive balanced loss), with batch or robust
// (RoTTA-style) normalisation, a collapse guard and a serialisable state. The method and its
// measured choices: docs/METHOD.md (## ABL, ## Adaptation).
//
// API (for the device agent and sdk/eval):
//
//   const a = await Adapter.create({ model, manifest, method: 'abl:robust', options: { lr: 1e-3 } });
//     model     IR Model or ONNX bytes; manifest gives input/output names, labels and BN nodes
//     method    preset: source | bn | tent | eata | abl (= ttaq), with an optional normalisation
//               suffix :source | :batch | :robust; `options` (AdaptOptionsSchema) override it
//   const r = await a.step(x)        x: float32 [N, C, H, W], preprocessed as the manifest says
//     -> { logits [N, C], predictions Int32Array, confidences Float32Array (max softmax
//          probability), entropies Float32Array, entropy (mean, nats),
//          loss, selected, adapted, reset }
//     predictions and confidences come from the same forward pass that computes the update (one
//     onnxruntime run)
//   await a.infer(x)                 -> { logits, predictions, confidences, entropies, entropy };
//                                    changes nothing
//   a.reset()                        source parameters and statistics back; optimiser, ABL and
//                                    guard state forgotten (counters.manualResets++)
//   a.state(): Uint8Array            versioned blob: parameters, robust statistics, optimiser
//                                    moments, ABL statistics, counters; keyed by the model SHA-256
//   a.restore(blob)                  STATE_MISMATCH for another model / option set,
//                                    ADAPT_BAD_STATE for a corrupt blob
//   a.counters                       { steps, updates, skipped, samples, collapseResets,
//                                      nonFiniteResets, manualResets }
//   await a.close()                  releases the sessions; any later call: ADAPT_CLOSED
//
// Small batches (1-8, camera streams): robust normalisation keeps a class-balanced memory of BN
// moments, read as a shared domain component plus class offsets in the first half of the layers
// (options.robustMemory 'auto' -> robustSmallMemory 'shared', the default) and gradients are summed to updateEvery
// (64) images per optimiser step; docs/METHOD.md, ## Adaptation, has the measurements.
//
// Lower level: buildAdaptGraphs (the two graphs), rewriteBn (BN parameters as inputs, batch or
// robust normalisation as explicit ops), the robust statistics' memory (robust.ts), the ABL
// statistics (abl.ts), the state codec (state.ts).
export { Adapter, type AdapterCounters, type AdapterInit, type InferResult, type StepResult } from './adapter.ts';
export {
  AblOptionsSchema,
  AdaptOptionsSchema,
  LossKindSchema,
  METHOD_PRESETS,
  methodOptions,
  NormModeSchema,
  parseAdaptOptions,
  type AblOptions,
  type AdaptOptions,
  type AdaptOptionsInput,
  type LossKind,
  type NormMode,
} from './options.ts';
export { buildAdaptGraphs, type AdaptGraphOptions, type AdaptGraphs } from './graphs.ts';
export { bnNodesOf, rewriteBn, ROBUST_ALPHA, type BnLayer, type BnRewrite, type BnRewriteOptions } from './bn.ts';
export { HEAD } from './loss.ts';
export { classWeights, initAblStats, logitOffset, updateAblStats, type AblStats, type BatchClassSummary } from './abl.ts';
export { createVectorOptimizer, type VectorOptimizer, type VectorOptimizerOptions } from './optimizer.ts';
export { decodeState, encodeState, STATE_MAGIC, STATE_VERSION, type StateContent } from './state.ts';
