// ModelRunners on sdk/runtime: plain inference (the model plus a small prediction head appended
// as ONNX nodes, so onnxruntime computes predictions, confidences and entropies), and adaptive
// inference through sdk/adapt's Adapter. `createRunnerFactory` picks one per the agent config.
import { availableParallelism } from 'node:os';
import { TtaqError } from '../sdk/errors/index.ts';
import { Adapter } from '../sdk/adapt/index.ts';
import { readManifest, manifestPathFor, sha256Hex, type Manifest } from '../sdk/manifest/index.ts';
import { decodeModel } from '../sdk/onnx/codec.ts';
import { A, GraphBuilder } from '../sdk/onnx/builder.ts';
import { readModelBytes } from '../sdk/onnx/io.ts';
import { f32, makeTensor } from '../sdk/onnx/tensor.ts';
import type { Model, TensorOf } from '../sdk/onnx/types.ts';
import {
  createSession,
  DEFAULT_PROVIDERS,
  defaultAvailableProviders,
  resolveProviders,
  type ProviderName,
  type RuntimeLogEvent,
  type SessionOptions,
} from '../sdk/runtime/index.ts';
import type { AgentConfig } from './config.ts';
import type { AdaptOutput, FrameBatch, InferOutput, ModelRunner, RunnerFactory, RunnerInfo } from './ports.ts';

const OUT = { pred: 'ttaq_agent::pred', conf: 'ttaq_agent::confidence', entropy: 'ttaq_agent::entropy' } as const;

export interface LoadedModel {
  readonly path: string;
  readonly bytes: Uint8Array;
  readonly sha256: string;
  readonly manifest: Manifest;
}

/** Reads a model and its manifest; the manifest's SHA-256 must match the file. */
export async function loadModelFiles(path: string, manifestPath?: string): Promise<LoadedModel> {
  const bytes = await readModelBytes(path);
  const manifest = await readManifest(manifestPath ?? manifestPathFor(path));
  const sha256 = sha256Hex(bytes);
  if (sha256 !== manifest.sha256) {
    throw new TtaqError('STATE_MISMATCH', `model '${path}' has SHA-256 ${sha256.slice(0, 12)}…, its manifest says ${manifest.sha256.slice(0, 12)}…; use the manifest written with this model (or regenerate it)`, { path });
  }
  return { path, bytes, sha256, manifest };
}

/**
 * Appends the prediction head to the logits (any shape [N, C, ...1]): TopK(1) of the softmax gives
 * the predicted class (int32) and its probability; the entropy is -sum(p log p), the sum as a
 * MatMul with ones so it needs no opset-specific reduction.
 */
export function withPredictionHead(model: Model, logits: string, classes: number): Model {
  const b = GraphBuilder.from(model.graph, 'ttaq_agent_');
  const z = b.op1('Flatten', [logits], { axis: A.int(1) });
  const p = b.op1('Softmax', [z], { axis: A.int(1) });
  const logp = b.op1('LogSoftmax', [z], { axis: A.int(1) });
  const [val, idx] = b.op('TopK', [p, b.ints([1])], { axis: A.int(1) }, { outputs: 2 });
  const flat = b.ints([-1]);
  b.op('Reshape', [val!, flat], {}, { outputNames: [OUT.conf] });
  b.op('Cast', [b.op1('Reshape', [idx!, flat])], { to: A.int(6) }, { outputNames: [OUT.pred] });
  const ones = b.constant(f32([classes, 1], new Float32Array(classes).fill(1)), 'ones');
  const plogp = b.op1('MatMul', [b.op1('Mul', [p, logp]), ones]);
  b.op('Neg', [b.op1('Reshape', [plogp, flat])], {}, { outputNames: [OUT.entropy] });
  b.output(OUT.pred, 'int32', [null]);
  b.output(OUT.conf, 'float32', [null]);
  b.output(OUT.entropy, 'float32', [null]);
  return { ...model, graph: b.build() };
}

/** One onnxruntime thread per core, less the one the capture process works on. */
export const defaultIntraOpThreads = (): number => Math.max(1, availableParallelism() - 1);

export function sessionOptions(c: AgentConfig['model'], logger: (e: RuntimeLogEvent) => void): SessionOptions {
  return {
    providers: c.providers,
    tensorrt: { engineCacheDir: c.tensorrt.cacheDir, fp16: c.tensorrt.fp16, int8: c.tensorrt.int8, ...(c.tensorrt.workspaceMb ? { trtMaxWorkspaceSize: c.tensorrt.workspaceMb * 1024 * 1024 } : {}), deviceId: c.cuda.deviceId },
    cuda: { deviceId: c.cuda.deviceId },
    intraOpThreads: c.intraOpThreads || defaultIntraOpThreads(),
    extra: { 'session.intra_op.allow_spinning': c.spinning ? '1' : '0' },
    logger,
  };
}

function baseInfo(m: LoadedModel, model: Model, provider: string): Omit<RunnerInfo, 'adaptive'> {
  const pre = m.manifest.preprocess;
  const inDims = model.graph.inputs.find((v) => v.name === m.manifest.input.name)?.shape;
  const b0 = inDims?.[0];
  return {
    modelName: m.manifest.name,
    modelPath: m.path,
    modelSha256: m.sha256,
    provider,
    classes: m.manifest.labels.length,
    labels: m.manifest.labels,
    channels: pre.channels,
    height: pre.height,
    width: pre.width,
    preprocess: { height: pre.height, width: pre.width, channels: pre.channels, resize: pre.resize, mean: pre.mean, std: pre.std },
    ...(typeof b0 === 'number' && b0 > 0 ? { fixedBatch: b0 } : {}),
  };
}

/** Pads a partial batch to the model's fixed batch size. */
function inputTensor(batch: FrameBatch, fixed: number | undefined): TensorOf<'float32'> {
  const [n, c, h, w] = batch.dims;
  if (fixed === undefined || n === fixed) return makeTensor('float32', [n, c, h, w], batch.data);
  if (n > fixed) throw new TtaqError('INTERNAL', `batch of ${n} frames for a model with fixed batch size ${fixed}`);
  const data = new Float32Array(fixed * c * h * w);
  data.set(batch.data);
  return makeTensor('float32', [fixed, c, h, w], data);
}

/** Zero frames of the runner's image size: warm-up input. */
const zeroBatch = (info: RunnerInfo, n: number): FrameBatch =>
  ({ data: new Float32Array(n * info.channels * info.height * info.width), dims: [n, info.channels, info.height, info.width], frames: [] });

/** Largest batch size warmed at start; bigger partial batches warm on first use (start-up stays short). */
export const WARM_MAX_BATCH = 64;

/**
 * The batch sizes an agent with batches of up to `maxBatch` frames can run: every size from 1 (a
 * batch runs partial when its wait expires), or only the model's fixed size (partial batches are padded).
 */
export function warmSizes(maxBatch: number, fixedBatch?: number): number[] {
  if (fixedBatch !== undefined) return [fixedBatch];
  return Array.from({ length: Math.min(maxBatch, WARM_MAX_BATCH) }, (_, i) => i + 1);
}

/** Plain inference: the model with the prediction head, one session. */
export async function createPlainRunner(m: LoadedModel, opts: SessionOptions): Promise<ModelRunner> {
  const decoded = decodeModel(m.bytes, `'${m.path}'`);
  if (!decoded.ok) throw decoded.error;
  const classes = m.manifest.labels.length;
  const model = withPredictionHead(decoded.value, m.manifest.output.name, classes);
  const session = await createSession(model, { ...opts, source: `'${m.path}'` });
  const info: RunnerInfo = { ...baseInfo(m, decoded.value, session.provider), adaptive: false };
  return {
    info,
    async infer(batch: FrameBatch): Promise<InferOutput> {
      const n = batch.dims[0];
      const out = await session.run({ [m.manifest.input.name]: inputTensor(batch, info.fixedBatch) }, [OUT.pred, OUT.conf, OUT.entropy]);
      const entropy = (out[OUT.entropy] as TensorOf<'float32'>).data.subarray(0, n);
      return {
        predictions: (out[OUT.pred] as TensorOf<'int32'>).data.subarray(0, n),
        confidence: (out[OUT.conf] as TensorOf<'float32'>).data.subarray(0, n),
        entropy,
        meanEntropy: mean(entropy),
      };
    },
    async warmUp(sizes) {
      // twice per size: onnxruntime allocates by a shape's memory pattern from its second run
      for (const n of sizes.flatMap((k) => [k, k])) await session.run({ [m.manifest.input.name]: inputTensor(zeroBatch(info, n), info.fixedBatch) }, [OUT.pred, OUT.conf, OUT.entropy]);
    },
    async dispose() {
      await session.release();
    },
  };
}

const mean = (a: Float32Array): number => (a.length ? a.reduce((s, v) => s + v, 0) / a.length : 0);

/**
 * The provider a component's sessions run on, as far as the runtime's log tells: the first of the
 * resolved preference list that did not report a failure.
 */
function providerTracker(preference: readonly string[]): { logger: (e: RuntimeLogEvent) => void; provider: () => string } {
  const failed = new Set<string>();
  let resolved: string[] = [];
  try {
    resolved = resolveProviders(preference.length ? preference : DEFAULT_PROVIDERS, defaultAvailableProviders(), () => {}, false);
  } catch {
    resolved = [];
  }
  return {
    logger: (e) => { if (e.level === 'warn' && e.provider && /failed to create/.test(e.message)) failed.add(e.provider); },
    provider: () => resolved.find((p) => !failed.has(p)) ?? 'unknown',
  };
}

/**
 * Adaptive inference through sdk/adapt: `adapt` is one Adapter.step, whose single onnxruntime run
 * gives the update, the predictions and their confidences.
 */
export async function createAdaptiveRunner(m: LoadedModel, method: string, options: Record<string, unknown>, opts: SessionOptions, log: (e: RuntimeLogEvent) => void): Promise<ModelRunner> {
  const tracker = providerTracker(opts.providers ?? DEFAULT_PROVIDERS);
  const logger = (e: RuntimeLogEvent) => { tracker.logger(e); log(e); };
  const adapter = await Adapter.create({
    model: m.bytes,
    manifest: m.manifest,
    method,
    options,
    modelSha256: m.sha256,
    session: { ...opts, logger },
    source: `'${m.path}'`,
  });
  const decoded = decodeModel(m.bytes, `'${m.path}'`);
  if (!decoded.ok) throw decoded.error;
  const info: RunnerInfo = { ...baseInfo(m, decoded.value, tracker.provider()), adaptive: true, method };
  return {
    info,
    get step() {
      return adapter.counters.steps;
    },
    async infer(batch) {
      const n = batch.dims[0];
      const r = await adapter.infer(inputTensor(batch, info.fixedBatch));
      const entropy = r.entropies.subarray(0, n);
      return { predictions: r.predictions.subarray(0, n), confidence: r.confidences.subarray(0, n), entropy, meanEntropy: mean(entropy) };
    },
    async adapt(batch): Promise<AdaptOutput> {
      const n = batch.dims[0];
      const r = await adapter.step(inputTensor(batch, info.fixedBatch));
      const entropy = r.entropies.subarray(0, n);
      return {
        predictions: r.predictions.subarray(0, n),
        confidence: r.confidences.subarray(0, n),
        entropy,
        meanEntropy: mean(entropy),
        loss: r.loss,
        step: adapter.counters.steps,
        reset: r.reset,
      };
    },
    saveState: () => adapter.state(),
    loadState: (blob) => adapter.restore(blob),
    resetState: () => adapter.reset(),
    ablPriors: () => (adapter.options.loss === 'abl' ? adapter.ablStatistics().freq : undefined),
    async warmUp(sizes) {
      await adapter.warmUp(sizes.map((n) => info.fixedBatch ?? n), [info.channels, info.height, info.width]);
    },
    async dispose() {
      await adapter.close();
    },
  };
}

/**
 * The runner factory for an agent config: adaptive when adaptation is enabled, plain otherwise.
 * `log` receives the runtime's provider events (skips and fallbacks).
 */
export function createRunnerFactory(c: AgentConfig, log: (e: RuntimeLogEvent) => void): RunnerFactory {
  return async ({ path, manifest }) => {
    const m = await loadModelFiles(path, manifest);
    const build = async (providers: readonly ProviderName[]): Promise<ModelRunner> => {
      const opts = { ...sessionOptions(c.model, log), providers };
      return c.adaptation.enabled
        ? createAdaptiveRunner(m, c.adaptation.method, c.adaptation.options, opts, log)
        : createPlainRunner(m, opts);
    };
    // every batch size the stream can produce, before the first frame: memory stays flat while
    // serving (onnxruntime keeps a memory plan per input shape) and no batch pays a first run
    const warm = async (r: ModelRunner): Promise<void> => { await r.warmUp?.(warmSizes(c.batch.size, r.info.fixedBatch)); };
    return buildWarmRunner(c.model.providers, build, warm, log);
  };
}

/**
 * Builds a runner on a provider chain and warms it up. A provider can create its session and still
 * fail the first runs: TensorRT builds its engine then, and onnxruntime's WebGPU provider has
 * kernels that take a node and refuse it at run time. Such a provider leaves the chain with its
 * reason logged, and the runner is built again on the providers after it; the CPU, or the last
 * provider of the chain, fails as it is.
 */
export async function buildWarmRunner(
  preference: readonly ProviderName[],
  build: (providers: readonly ProviderName[]) => Promise<ModelRunner>,
  warm: (runner: ModelRunner) => Promise<void>,
  log: (e: RuntimeLogEvent) => void,
): Promise<ModelRunner> {
  let chain = [...preference];
  for (;;) {
    const runner = await build(chain);
    try {
      await warm(runner);
      return runner;
    } catch (e) {
      await runner.dispose().catch(() => {});
      const failed = runner.info.provider;
      const at = chain.indexOf(failed);
      const rest = at >= 0 ? chain.slice(at + 1) : [];
      if (failed === 'cpu' || rest.length === 0) throw e;
      const reason = (e instanceof Error ? e.message : String(e)).split('\n')[0]!;
      log({ level: 'warn', provider: failed, reason, message: `provider '${failed}' failed its warm-up run: ${reason}; trying '${rest[0]}'` });
      chain = rest;
    }
  }
}
