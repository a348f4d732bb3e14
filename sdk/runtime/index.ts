// The one seam around onnxruntime-node: sessions, execution providers, tensors, and shape inference
// by running a model. Nothing else in ttaq imports onnxruntime-node.
export { createSession, resolveSessionOptions } from './session.ts';
export type { CudaOptions, GraphOptimization, Session, SessionOptions, TensorRtOptions } from './session.ts';
export { DEFAULT_PROVIDERS, GPU_INSTALL_COMMAND, PROVIDER_NAMES, defaultAvailableProviders, defaultLogger, gpuInstallHint, resolveProviders, runsBatchNormTraining } from './providers.ts';
export type { ProviderName, RuntimeLogEvent, RuntimeLogger } from './providers.ts';
export { clipsBeforeSubByteQuantize, hasSubByteIO, rewriteSubByteIO, splitClipsBeforeSubByteQuantize, widenableActivationZeroPoints, widenSubByteActivations, widenTwoBitWeightsBeforeTranspose, type SubByteRewrite } from './subbyte.ts';
export { clearShapeCache, inferShapes, type InferShapesOptions } from './shapes.ts';
export { summarizeProfile, type ProfileEvent, type ProfileNode, type ProfileSummary } from './profile.ts';
export { convsToNchwc, nchwcBlockSize, NCHWC_DOMAIN, NCHWC_SESSION_EXTRA } from './nchwc.ts';
