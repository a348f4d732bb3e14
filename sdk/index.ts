// The SDK's public surface, what `import … from 'ttaq'` gives: each module as a namespace
// (`import { quant, adapt } from 'ttaq'`) and the handful of entry points most programs start from
// by name. One module alone also comes by its path: `import { TelemetryClient } from 'ttaq/sdk/telemetry'`.
export * as adapt from './adapt/index.ts';
export * as autodiff from './autodiff/index.ts';
export * as bundled from './bundled/index.ts';
export * as data from './data/index.ts';
export * as errors from './errors/index.ts';
export * as evaluation from './eval/index.ts';
export * as files from './files/index.ts';
export * as manifest from './manifest/index.ts';
export * as nn from './nn/index.ts';
export * as onnx from './onnx/index.ts';
export * as optim from './optim/index.ts';
export * as progress from './progress/index.ts';
export * as quant from './quant/index.ts';
export * as random from './random/index.ts';
export * as runtime from './runtime/index.ts';
export * as telemetry from './telemetry/index.ts';
export * as train from './train/index.ts';

export { Adapter } from './adapt/index.ts';
export { bundledModelPath, DEFAULT_MODEL_PATH, type BundledModel } from './bundled/index.ts';
export { TtaqError } from './errors/index.ts';
export { evaluate, loadEvalModel } from './eval/index.ts';
export { manifestPathFor, readManifest, type Manifest } from './manifest/index.ts';
export { loadModel, saveModel } from './onnx/index.ts';
export { quantize, type QuantizeInput, type QuantizeResult } from './quant/index.ts';
export { createSession } from './runtime/index.ts';
export { TelemetryClient } from './telemetry/index.ts';
export { runTraining } from './train/index.ts';
