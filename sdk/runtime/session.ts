// Sessions: the one place ttaq creates onnxruntime inference sessions. A session takes IR tensors
// in and gives IR tensors out (wrapping typed arrays, no copies), picks its execution provider
// from a preference list, and turns every onnxruntime failure into a coded TtaqError.
import * as ort from 'onnxruntime-node';
import { isTtaqError, TtaqError } from '../errors/index.ts';
import { decodeModel, encodeModel } from '../onnx/codec.ts';
import { makeTensor } from '../onnx/tensor.ts';
import type { Dim, DType, Model, Tensor, ValueInfo } from '../onnx/types.ts';
import {
  DEFAULT_PROVIDERS,
  defaultAvailableProviders,
  defaultLogger,
  resolveProviders,
  type ProviderName,
  type RuntimeLogger,
} from './providers.ts';
import { hasSubByteIO, rewriteSubByteIO, splitClipsBeforeSubByteQuantize, widenSubByteActivations, widenTwoBitWeightsBeforeTranspose, type SubByteRewrite } from './subbyte.ts';
import { fromOrt, toOrt } from './tensors.ts';

/** The IR rewrites that keep onnxruntime 1.30's optimizer bugs on sub-byte types from tripping (see subbyte.ts). */
const dodgeSubByteBugs = (m: Model): Model => widenTwoBitWeightsBeforeTranspose(splitClipsBeforeSubByteQuantize(widenSubByteActivations(m)));

export type GraphOptimization = 'disabled' | 'basic' | 'extended' | 'all';

/** TensorRT options. onnxruntime-node 1.30's binding reads only `deviceId` from the provider
 * object; the rest are passed through there too (for bindings that read them) and mirrored into
 * the ORT_TENSORRT_* environment variables that the TensorRT provider reads. */
export interface TensorRtOptions {
  readonly deviceId?: number;
  /** Directory for serialized engines (enables the engine cache). */
  readonly engineCacheDir?: string;
  readonly fp16?: boolean;
  readonly int8?: boolean;
  readonly [key: string]: unknown;
}

export interface CudaOptions {
  readonly deviceId?: number;
  readonly [key: string]: unknown;
}

export interface SessionOptions {
  /** Execution providers in order of preference. Default ['tensorrt', 'cuda', 'cpu']. */
  readonly providers?: readonly ProviderName[];
  /** Threads inside one operator. Default: onnxruntime's choice (one per core). */
  readonly intraOpThreads?: number;
  /** Threads across independent operators. Default: onnxruntime's choice. */
  readonly interOpThreads?: number;
  /** Graph optimisation level. Default 'all'. */
  readonly graphOptimization?: GraphOptimization;
  /** Extra session config entries (onnxruntime's AddConfigEntry), e.g. {'session.use_env_allocators': '1'}. */
  readonly extra?: Readonly<Record<string, string>>;
  readonly tensorrt?: TensorRtOptions;
  readonly cuda?: CudaOptions;
  /** onnxruntime's own log severity (0 verbose .. 4 fatal). Default 3 (errors only). */
  readonly ortLogLevel?: 0 | 1 | 2 | 3 | 4;
  /** Receives one event per provider skipped or failed. Default: `defaultLogger`. */
  readonly logger?: RuntimeLogger;
  /** Writes onnxruntime's profile (every node's kernel time, every run) to `<prefix>_<date>.json`
   * when the session is released. Default: $TTAQ_ORT_PROFILE, so that any command can be profiled
   * (`TTAQ_ORT_PROFILE=/tmp/prof/step node bin/ttaq.js quantize ...`); unset, no profile. */
  readonly profilePrefix?: string;
  /** Which providers the binary supports. Default: asks onnxruntime-node (tests inject fakes). */
  readonly availableProviders?: () => readonly string[];
  /** Name used in error messages (e.g. the model file). */
  readonly source?: string;
}

export interface Session {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  /** Inputs/outputs as onnxruntime sees them (dtype and shape, symbolic dims as strings). */
  readonly inputs: readonly ValueInfo[];
  readonly outputs: readonly ValueInfo[];
  /** The execution provider actually used (the first one of the list the session was created with). */
  readonly provider: ProviderName;
  /** Runs the model; `fetch` limits the outputs computed (default: all). */
  run(feeds: Readonly<Record<string, Tensor>>, fetch?: readonly string[]): Promise<Record<string, Tensor>>;
  release(): Promise<void>;
}

type OrtSession = ort.InferenceSession;

function providerConfig(p: ProviderName, opts: SessionOptions): ort.InferenceSession.ExecutionProviderConfig {
  if (p === 'tensorrt' && opts.tensorrt) {
    const { engineCacheDir, fp16, int8, ...rest } = opts.tensorrt;
    if (engineCacheDir !== undefined) {
      process.env.ORT_TENSORRT_ENGINE_CACHE_ENABLE = '1';
      process.env.ORT_TENSORRT_CACHE_PATH = engineCacheDir;
    }
    if (fp16 !== undefined) process.env.ORT_TENSORRT_FP16_ENABLE = fp16 ? '1' : '0';
    if (int8 !== undefined) process.env.ORT_TENSORRT_INT8_ENABLE = int8 ? '1' : '0';
    return {
      ...rest,
      name: 'tensorrt',
      ...(engineCacheDir !== undefined ? { trtEngineCacheEnable: true, trtEngineCachePath: engineCacheDir } : {}),
      ...(fp16 !== undefined ? { trtFp16Enable: fp16 } : {}),
      ...(int8 !== undefined ? { trtInt8Enable: int8 } : {}),
    } as ort.InferenceSession.ExecutionProviderConfig;
  }
  if (p === 'cuda' && opts.cuda) return { ...opts.cuda, name: 'cuda' } as ort.InferenceSession.ExecutionProviderConfig;
  return p;
}

/**
 * Session config entries every session gets unless `extra` sets them.
 * 'session.intra_op.allow_spinning' = '0': onnxruntime's workers otherwise spin after each run, and
 * ttaq processes hold several sessions (an adapter's inference and step graphs, the eval harness's
 * source model beside them, the agent beside its capture process): the idle sessions' spinning
 * workers take the cores from the busy one. Measured on the 2-core machine (sdk/eval's
 * measureStepCost, which interleaves the sessions as the harness does; ResNet-20, TENT, batch 64):
 * step 109-154 ms spinning vs 76-79 ms asleep, source inference 41-58 vs 23 ms; batch 8 21 vs
 * 14-18 ms. A process with one session and nothing else to run may turn it back on.
 */
export const SESSION_DEFAULTS: Readonly<Record<string, string>> = { 'session.intra_op.allow_spinning': '0' };

/**
 * Added on CPU sessions. 'session.disable_quant_qdq': onnxruntime's CPU fuses DequantizeLinear →
 * Conv → QuantizeLinear into an integer conv, a pattern our QDQ models never have (the float BN
 * adaptation site follows each conv); left on, it only keeps the weights' DequantizeLinear from
 * constant folding, so every run dequantizes the weights and the convs lose their prepacked NCHWc
 * weights. Off, quantized models run 1.7-2x faster at batch 1-64 with the same quantized values
 * (docs/METHOD.md). GPU providers keep the QDQ nodes: TensorRT builds its INT8 engine from them.
 * 'session.set_denormal_as_zero': values below 1.2e-38 count as zero (flush-to-zero and
 * denormals-are-zero). Gradient graphs produce such values (a rounding regulariser's Exp of a large
 * negative number, products of small gradients), and x86 cores take a slow path on each: a layer2.0
 * reconstruction step ran 5.9-6.4 ms with them and 5.5 ms without (`sdk/quant/bench.ts --images
 * 1024`, two runs each), the same block error to six digits. onnxruntime applies the setting to the
 * thread that creates the process's first session (once) and to every session's pool threads;
 * worker threads started later inherit the creating thread's setting. Every session ttaq creates
 * asks for it, so the first one sets it; 'session.set_denormal_as_zero': '0' in `extra` opts out.
 * The flag belongs to the thread: JavaScript arithmetic there then flushes double denormals (below
 * 2.2e-308) too, which no ttaq computation relies on.
 */
export const CPU_SESSION_DEFAULTS: Readonly<Record<string, string>> = { 'session.disable_quant_qdq': '1', 'session.set_denormal_as_zero': '1' };

export function ortOptions(opts: SessionOptions, providers: readonly ProviderName[]): ort.InferenceSession.SessionOptions {
  const extra = { ...SESSION_DEFAULTS, ...(providers[0] === 'cpu' ? CPU_SESSION_DEFAULTS : {}), ...opts.extra };
  const profile = opts.profilePrefix ?? (process.env.TTAQ_ORT_PROFILE || undefined);
  return {
    executionProviders: providers.map((p) => providerConfig(p, opts)),
    graphOptimizationLevel: opts.graphOptimization ?? 'all',
    logSeverityLevel: opts.ortLogLevel ?? 3,
    ...(opts.intraOpThreads !== undefined ? { intraOpNumThreads: opts.intraOpThreads } : {}),
    ...(opts.interOpThreads !== undefined ? { interOpNumThreads: opts.interOpThreads } : {}),
    extra,
    ...(profile ? { enableProfiling: true, profileFilePrefix: profile } : {}),
  };
}

// IR objects are immutable by convention, so the bytes of a Model object can be reused when the
// same object is turned into sessions again (autodiff and calibration loops do that).
const encoded = new WeakMap<Model, Uint8Array>();
function encodedBytes(m: Model): Uint8Array {
  let b = encoded.get(m);
  if (!b) {
    b = encodeModel(m);
    encoded.set(m, b);
  }
  return b;
}

const message = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/** Creates the ORT session, walking down the provider list when a GPU provider fails to start. */
async function createOrt(bytes: Uint8Array, opts: SessionOptions, providers: readonly ProviderName[], log: RuntimeLogger, source: string): Promise<{ s: OrtSession; provider: ProviderName }> {
  for (let i = 0; ; i++) {
    const list = providers.slice(i);
    try {
      return { s: await ort.InferenceSession.create(bytes, ortOptions(opts, list)), provider: list[0]! };
    } catch (e) {
      if (list.length > 1 && list[0] !== 'cpu') {
        const reason = message(e).split('\n')[0]!;
        log({ level: 'warn', provider: list[0], reason, message: `provider '${list[0]}' failed to create a session for ${source}: ${reason}; trying '${list[1]}'` });
        continue;
      }
      throw new TtaqError(
        'RUNTIME_SESSION_FAILED',
        `onnxruntime could not load ${source} with provider '${list[0]}': ${message(e)}. Check the model with 'ttaq inspect', or fix the node named in the message`,
        { source, provider: list[0], ortMessage: message(e) },
        { cause: e },
      );
    }
  }
}

let registered: ReadonlySet<string> | undefined;
const registeredBackends = (): ReadonlySet<string> => (registered ??= new Set(ort.listSupportedBackends().map((b) => b.name)));

const SUBBYTE_ORT_TYPES = new Set(['int4', 'uint4']);

function metaToValueInfo(m: ort.InferenceSession.ValueMetadata): ValueInfo {
  if (!m.isTensor) return { name: m.name, dtype: 'float32' };
  return { name: m.name, dtype: m.type as DType, shape: m.shape.map((d): Dim => d) };
}

/**
 * The providers `opts` asks for that this binary can run, in preference order, each one skipped
 * logged once with its reason. Throws RUNTIME_NO_PROVIDER when none is left.
 */
function sessionProviders(opts: SessionOptions): ProviderName[] {
  const log = opts.logger ?? defaultLogger;
  const available = (opts.availableProviders ?? defaultAvailableProviders)();
  const providers = resolveProviders(opts.providers ?? DEFAULT_PROVIDERS, available, log, opts.providers !== undefined)
    .filter((p, i, list) => {
      // onnxruntime-common silently drops names the binding never registered; say so instead.
      if (registeredBackends().has(p)) return true;
      const next = list.slice(i + 1).find((q) => registeredBackends().has(q));
      const reason = `onnxruntime-node on ${process.platform} has no '${p}' backend (registered: ${[...registeredBackends()].join(', ')})`;
      log({ level: 'warn', provider: p, reason, message: `provider '${p}' skipped: ${reason}${next ? `; trying '${next}'` : ''}` });
      return false;
    });
  if (providers.length === 0) {
    throw new TtaqError('RUNTIME_NO_PROVIDER', `none of the requested execution providers is registered in onnxruntime-node (registered: ${[...registeredBackends()].join(', ')}); add 'cpu' to the providers option`);
  }
  return providers;
}

/**
 * `opts` with its provider list resolved against this binary: for a caller that creates several
 * sessions from one set of options (the adapter's inference and step graphs), so a provider the
 * binary lacks is reported once, not once per session.
 */
export const resolveSessionOptions = (opts: SessionOptions = {}): SessionOptions => ({ ...opts, providers: sessionProviders(opts) });

/**
 * Creates a session for a model (IR or ONNX bytes). Throws RUNTIME_NO_PROVIDER when no preferred
 * provider is available and RUNTIME_SESSION_FAILED (with onnxruntime's message) when loading fails.
 */
export async function createSession(model: Model | Uint8Array, opts: SessionOptions = {}): Promise<Session> {
  const log = opts.logger ?? defaultLogger;
  const source = opts.source ?? 'the model';
  const providers = sessionProviders(opts);

  if (!(model instanceof Uint8Array) && !Array.isArray((model as Model | undefined)?.graph?.nodes)) {
    throw new TtaqError('RUNTIME_SESSION_FAILED', `createSession for ${source}: takes a loaded model or the bytes of an ONNX file, got ${typeof model === 'string' ? `the string '${model}'` : typeof model}; read the file with loadModel(path) or readModelBytes(path) from sdk/onnx`);
  }
  let rewrite: SubByteRewrite | undefined;
  let bytes: Uint8Array;
  if (model instanceof Uint8Array) {
    bytes = model;
  } else {
    model = dodgeSubByteBugs(model);
    if (hasSubByteIO(model.graph)) {
      rewrite = rewriteSubByteIO(model);
      model = rewrite.model;
    }
    bytes = encodedBytes(model);
  }

  let created: { s: OrtSession; provider: ProviderName } | undefined;
  try {
    created = await createOrt(bytes, opts, providers, log, source);
  } catch (e) {
    // Bytes with int2/uint2 inputs or outputs fail in the binding, a Clip before a sub-byte
    // QuantizeLinear trips onnxruntime's ClipQuantFusion, and a transposed 2-bit weight its constant
    // folding; retry through the IR rewrites.
    if (!(model instanceof Uint8Array) || !/Unsupported data type|input y_zero_point|Element type mismatch between tensor proto/.test(message((e as Error).cause ?? e))) throw e;
  }
  if (model instanceof Uint8Array) {
    const meta = created ? [...created.s.inputMetadata, ...created.s.outputMetadata] : [];
    if (!created || meta.some((m) => m.isTensor && SUBBYTE_ORT_TYPES.has(m.type))) {
      await created?.s.release();
      const decoded = decodeModel(model, source);
      if (!decoded.ok) throw decoded.error;
      rewrite = rewriteSubByteIO(dodgeSubByteBugs(decoded.value));
      created = await createOrt(encodeModel(rewrite.model), opts, providers, log, source);
    }
  }
  return wrap(created!.s, created!.provider, rewrite, source);
}

function wrap(s: OrtSession, provider: ProviderName, rw: SubByteRewrite | undefined, source: string): Session {
  const feedOf = new Map<string, { feed: string; dtype: DType }>(rw?.inputs ?? []);
  const fetchOf = new Map<string, { fetch: string; dtype: DType }>(rw?.outputs ?? []);
  const origIn = new Map([...feedOf].map(([k, v]) => [v.feed, { name: k, dtype: v.dtype }]));
  const origOut = new Map([...fetchOf].map(([k, v]) => [v.fetch, { name: k, dtype: v.dtype }]));
  const rename = (v: ValueInfo, m: Map<string, { name: string; dtype: DType }>): ValueInfo => {
    const o = m.get(v.name);
    return o ? { ...v, name: o.name, dtype: o.dtype } : v;
  };
  const inputs = s.inputMetadata.map(metaToValueInfo).map((v) => rename(v, origIn));
  const outputs = s.outputMetadata.map(metaToValueInfo).map((v) => rename(v, origOut));
  const inputNames = inputs.map((v) => v.name);
  const outputNames = outputs.map((v) => v.name);
  let released = false;

  return {
    inputNames,
    outputNames,
    inputs,
    outputs,
    provider,
    async run(feeds, fetch) {
      if (released) throw new TtaqError('RUNTIME_RUN_FAILED', `session for ${source} was released; create a new one`, { source });
      const missing = inputNames.filter((n) => !(n in feeds));
      const unknown = Object.keys(feeds).filter((n) => !inputNames.includes(n));
      if (missing.length || unknown.length) {
        throw new TtaqError(
          'RUNTIME_RUN_FAILED',
          `feeds for ${source} do not match its inputs: ${missing.length ? `missing [${missing.join(', ')}]` : ''}${missing.length && unknown.length ? ', ' : ''}${unknown.length ? `unknown [${unknown.join(', ')}]` : ''}; expected [${inputNames.join(', ')}]`,
          { source, missing, unknown },
        );
      }
      const badFetch = (fetch ?? []).filter((n) => !outputNames.includes(n));
      if (badFetch.length) {
        throw new TtaqError('RUNTIME_RUN_FAILED', `cannot fetch [${badFetch.join(', ')}] from ${source}: not graph outputs (outputs: [${outputNames.join(', ')}]); expose them as outputs first (exposeOutputs)`, { source, fetch: badFetch });
      }
      const ortFeeds: Record<string, ort.Tensor> = {};
      for (const [name, t] of Object.entries(feeds)) {
        const sub = feedOf.get(name);
        if (sub) {
          if (t.dtype !== sub.dtype) throw new TtaqError('RUNTIME_RUN_FAILED', `feed '${name}' of ${source} must be ${sub.dtype}, got ${t.dtype}`, { source, input: name });
          const w = sub.dtype === 'int4' || sub.dtype === 'int2' ? 'int8' : 'uint8';
          ortFeeds[sub.feed] = toOrt(makeTensor(w, t.dims, t.data as Int8Array & Uint8Array) as Tensor, name);
        } else {
          ortFeeds[name] = toOrt(t, name);
        }
      }
      const wanted = fetch ?? outputNames;
      const ortFetch = wanted.map((n) => fetchOf.get(n)?.fetch ?? n);
      let res: ort.InferenceSession.ReturnType;
      try {
        res = await s.run(ortFeeds, ortFetch);
      } catch (e) {
        if (isTtaqError(e)) throw e;
        // feed names were checked above; on a GPU provider a kernel that took a node may still refuse
        // it at run time (WebGPU's training-mode BatchNormalization), which no feed change fixes
        const hint = provider === 'cpu'
          ? 'Check feed dtypes and shapes against session.inputs'
          : `Check feed dtypes and shapes against session.inputs; if they match, provider '${provider}' cannot run a node of this graph: put the next provider (e.g. cpu) first`;
        throw new TtaqError('RUNTIME_RUN_FAILED', `running ${source} on '${provider}' failed: ${message(e)}. ${hint}`, { source, provider, ortMessage: message(e) }, { cause: e });
      }
      const out: Record<string, Tensor> = {};
      for (const n of wanted) {
        const sub = fetchOf.get(n);
        const v = res[sub?.fetch ?? n]!;
        const t = fromOrt(v, n);
        out[n] = sub ? ({ dtype: sub.dtype, dims: t.dims, data: t.data } as Tensor) : t;
      }
      return out;
    },
    async release() {
      if (released) return;
      released = true;
      await s.release();
    },
  };
}
