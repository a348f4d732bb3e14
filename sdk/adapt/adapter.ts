// The Adapter: one model, one option set, two sessions (inference and adapt step), and the state
// that evolves over a stream (BN parameters, optimiser moments, robust statistics, ABL statistics,
// counters). Everything here that loops does so over BN channels or classes, never over images (but
// for refuseNonFiniteInput, which scans a batch only once its logits came out non-finite).
import { createHash } from 'node:crypto';
import { TtaqError } from '../errors/index.ts';
import type { Manifest } from '../manifest/index.ts';
import { sha256Hex } from '../manifest/index.ts';
import { decodeModel, encodeModel } from '../onnx/codec.ts';
import { f32 } from '../onnx/tensor.ts';
import type { Model, Tensor, TensorOf } from '../onnx/types.ts';
import { batchNormForSession } from '../autodiff/index.ts';
import { createSession, resolveSessionOptions, type Session, type SessionOptions } from '../runtime/index.ts';
import { classWeights, initAblStats, logitOffset, updateAblStats, type AblStats } from './abl.ts';
import { ROBUST_ALPHA, type BnLayer } from './bn.ts';
import { buildAdaptGraphs, HEAD, type AdaptGraphs } from './graphs.ts';
import { createVectorOptimizer, type VectorOptimizer } from './optimizer.ts';
import { methodOptions, parseAdaptOptions, type AdaptOptions, type AdaptOptionsInput } from './options.ts';
import { RobustMemory } from './robust.ts';
import { decodeState, encodeState } from './state.ts';

export interface AdapterInit {
  /** The model: IR, or the bytes of an ONNX file (then its SHA-256 keys the state). */
  readonly model: Model | Uint8Array;
  /** The model's manifest: input/output names, labels (classes), BN nodes, SHA-256. */
  readonly manifest?: Manifest;
  /** A method preset (`source`, `bn`, `tent`, `eata`, `abl`/`ttaq`, optionally `:robust` etc.). */
  readonly method?: string;
  /** Options (applied over the preset when both are given). */
  readonly options?: AdaptOptionsInput;
  /** SHA-256 identifying the model in the state blob (default: manifest.sha256, else computed). */
  readonly modelSha256?: string;
  readonly session?: SessionOptions;
  /** Name used in error messages. */
  readonly source?: string;
}

export interface InferResult {
  /** [N, C] */
  readonly logits: TensorOf<'float32'>;
  /** Predicted class per sample. */
  readonly predictions: Int32Array;
  /** Confidence per sample: the predicted class's softmax probability (from the same pass). */
  readonly confidences: Float32Array;
  /** Prediction entropy per sample (nats). */
  readonly entropies: Float32Array;
  /** Mean prediction entropy of the batch (nats). */
  readonly entropy: number;
}

export interface StepResult extends InferResult {
  /** The adaptation loss of the batch (NaN when the method has none). */
  readonly loss: number;
  /**
   * Whether the BN parameters were updated after this batch (with options.updateEvery, batches
   * smaller than it only add to the gradient sum until enough images are in).
   */
  readonly adapted: boolean;
  /** Samples that passed the entropy filter (N for plain entropy, 0 for no-update methods). */
  readonly selected: number;
  /** Whether this batch triggered a reset (collapse guard or non-finite values). */
  readonly reset: boolean;
}

export interface AdapterCounters {
  /** Batches seen by step(). */
  steps: number;
  /** Batches that updated the parameters. */
  updates: number;
  /** Batches whose entropy filter kept no sample (no update). */
  skipped: number;
  /** Images seen by step(). */
  samples: number;
  /** Resets by the collapse guard. */
  collapseResets: number;
  /** Resets after a non-finite loss or gradient. */
  nonFiniteResets: number;
  /** Resets asked for by the caller (reset()). */
  manualResets: number;
}

const zeroCounters = (): AdapterCounters => ({ steps: 0, updates: 0, skipped: 0, samples: 0, collapseResets: 0, nonFiniteResets: 0, manualResets: 0 });

export class Adapter {
  readonly options: AdaptOptions;
  readonly classes: number;
  readonly modelSha256: string;
  readonly counters: AdapterCounters = zeroCounters();
  /** The BN layers whose affine parameters adapt, in graph order. */
  readonly adaptedLayers: readonly string[];

  private readonly scale: Float32Array[];
  private readonly bias: Float32Array[];
  private readonly mean: Float32Array[];
  private readonly var: Float32Array[];
  /** Robust normalisation's class slots and uncertainties; writes `mean`/`var` in place. */
  private readonly robust: RobustMemory;
  /** Gradient sums (weighted by images) waiting for the next optimiser step (options.updateEvery). */
  private accGrads: Float32Array[] | null = null;
  private accImages = 0;
  private abl: AblStats;
  private entropyEma = NaN;
  private stepsSinceReset = 0;
  private closed = false;
  private readonly opt: VectorOptimizer | null;
  /** What the inference graph is asked for by infer(), and by step() without a step graph (plus the robust statistics). */
  private readonly inferFetch: readonly string[];
  private readonly normaliseFetch: readonly string[];
  /** The model input's declared dims after the batch; null entries are free (symbolic). */
  private readonly sampleDims: readonly (number | null)[] | undefined;

  private constructor(
    private readonly graphs: AdaptGraphs,
    private readonly inferSession: Session,
    private readonly stepSession: Session | null,
    options: AdaptOptions,
    modelSha256: string,
    private readonly source: string,
  ) {
    this.options = options;
    this.classes = graphs.classes;
    this.modelSha256 = modelSha256;
    const L = graphs.layers;
    this.scale = L.map((l) => Float32Array.from(l.source.scale));
    this.bias = L.map((l) => Float32Array.from(l.source.bias));
    this.mean = L.map((l) => Float32Array.from(l.source.mean));
    this.var = L.map((l) => Float32Array.from(l.source.var));
    this.robust = new RobustMemory(L, graphs.classes, options, this.mean, this.var);
    this.abl = initAblStats(graphs.classes);
    this.adaptedLayers = graphs.adapted.map((l) => l.node);
    this.inferFetch = [graphs.logits, HEAD.pred, HEAD.confidence, HEAD.entropy];
    const declared = graphs.inference.graph.inputs.find((v) => v.name === graphs.input)?.shape;
    this.sampleDims = declared?.slice(1).map((d) => (typeof d === 'number' && d > 0 ? d : null));
    this.normaliseFetch = [...this.inferFetch, ...L.flatMap((l) => (l.outputs ? [l.outputs.mean, l.outputs.var, l.outputs.batchMean, l.outputs.batchVar] : []))];
    this.opt = stepSession
      ? createVectorOptimizer(graphs.adapted.flatMap((l) => [l.channels, l.channels]), {
        kind: options.optimizer, lr: options.lr, beta1: options.beta1, beta2: options.beta2, momentum: options.momentum, weightDecay: options.weightDecay,
      })
      : null;
  }

  /** Builds the graphs and sessions for a model. */
  static async create(init: AdapterInit): Promise<Adapter> {
    const source = init.source ?? (init.manifest ? `model '${init.manifest.name}'` : 'the model');
    const options = init.method ? methodOptions(init.method, init.options) : parseAdaptOptions(init.options ?? {});
    let model: Model;
    let sha = init.modelSha256 ?? init.manifest?.sha256;
    if (!(init.model instanceof Uint8Array) && !Array.isArray((init.model as Model | undefined)?.graph?.nodes)) {
      throw new TtaqError('CONFIG_INVALID', `${source}: 'model' must be a loaded model or the bytes of an ONNX file, got ${typeof init.model === 'string' ? `the string '${init.model}'` : typeof init.model}; read the file with loadModel(path) or readModelBytes(path) from sdk/onnx`);
    }
    if (init.model instanceof Uint8Array) {
      const r = decodeModel(init.model, source);
      if (!r.ok) throw r.error;
      model = r.value;
      sha ??= sha256Hex(init.model);
    } else {
      model = init.model;
      sha ??= sha256Hex(encodeModel(model));
    }
    const m = init.manifest;
    const bnNodes = options.bnNodes ?? (m && m.adaptation.bnNodes.length > 0 ? m.adaptation.bnNodes : undefined);
    const graphs = await buildAdaptGraphs(model, {
      norm: options.norm,
      loss: options.loss,
      detachRobustStats: options.robustDetachStats,
      entropyMargin: options.entropyMargin,
      maxWeight: options.abl.maxWeight,
      weightNorm: options.abl.weightNorm,
      bnNodes,
      freezeLast: options.freezeLast,
      input: m?.input.name,
      logits: m?.output.name,
      classes: m?.labels.length,
      source,
      // the graphs run on whichever provider of the chain takes them: all must run the BN op
      statsLowering: batchNormForSession(init.session).lowering,
    });
    // both sessions take the same providers: resolved once, so each one skipped is reported once
    const sopts: SessionOptions = resolveSessionOptions({ ...init.session, source });
    const inferSession = await createSession(graphs.inference, { ...sopts, source: `${source} (adaptation inference graph)` });
    const stepSession = graphs.step ? await createSession(graphs.step.model, { ...sopts, source: `${source} (adaptation step graph)` }) : null;
    return new Adapter(graphs, inferSession, stepSession, options, sha, source);
  }

  /** Releases the onnxruntime sessions; a second call does nothing. Every other method refuses afterwards. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.inferSession.release();
    await this.stepSession?.release();
  }

  /**
   * After close() the sessions are gone (a run would fail inside onnxruntime), and a state read or
   * a reset would act on an adapter nothing can use any more: most likely the caller kept a stale
   * reference, e.g. across a model reload.
   */
  private checkOpen(what: string): void {
    if (this.closed) throw new TtaqError('ADAPT_CLOSED', `${this.source}: ${what}() on an adapter that was closed; create a new one with Adapter.create (and restore() a state() saved before closing to carry the adaptation over)`);
  }

  /** Predictions with the current parameters; changes no state. */
  async infer(batch: TensorOf<'float32'>): Promise<InferResult> {
    this.checkOpen('infer');
    this.checkBatch(batch);
    const out = await this.inferSession.run(this.feeds(batch, false), this.inferFetch);
    return this.inferResult(out);
  }

  /**
   * One adaptation step: predictions come from the same forward pass that computes the update.
   * Methods without a loss (source, bn) only normalise (and update the robust statistics).
   */
  async step(batch: TensorOf<'float32'>): Promise<StepResult> {
    this.checkOpen('step');
    this.checkBatch(batch);
    const o = this.options;
    // Episodic mode starts each batch from the source; what the last batch left stays readable
    // (state(), parameters()) until this one is known to be usable, so a refused batch changes nothing.
    const before = o.episodic ? this.state() : undefined;
    if (o.episodic) this.restoreSource(false);
    const n = batch.dims[0]!;

    if (!this.stepSession) {
      const out = await this.inferSession.run(this.feeds(batch, false), this.normaliseFetch);
      const r = this.inferResult(out);
      this.refuseNonFiniteInput(batch, r.logits.data, before);
      this.counters.steps++;
      this.counters.samples += n;
      this.robust.take(out, r.predictions, r.logits);
      return { ...r, loss: NaN, adapted: false, selected: 0, reset: this.guard(r.entropy, true, n) };
    }

    const step = this.graphs.step!;
    const out = await this.stepSession.run(this.feeds(batch, true));
    const r = this.inferResult(out);
    this.refuseNonFiniteInput(batch, r.logits.data, before);
    this.counters.steps++;
    this.counters.samples += n;
    const loss = Number((out[step.loss] as Tensor).data[0]);
    const selected = o.loss === 'entropy' ? n : Number((out[HEAD.selected] as Tensor).data[0]);
    const grads: Float32Array[] = this.graphs.adapted.flatMap((l) => [l.inputs.scale, l.inputs.bias]).map((w) => (out[step.grads.get(w)!] as TensorOf<'float32'>).data);

    const finite = Number.isFinite(loss) && grads.every((g) => g.every(Number.isFinite));
    if (!finite) {
      this.counters.nonFiniteResets++;
      this.restoreSource(true);
      return { ...r, loss, adapted: false, selected, reset: true };
    }
    this.robust.take(out, r.predictions, r.logits);
    let adapted = false;
    if (selected > 0) {
      // Gradient accumulation to options.updateEvery images (each batch's mean gradient weighted by
      // its image count); a batch of at least that many with nothing pending steps directly.
      let ready = true;
      // Episodic mode starts every batch from the source, so there is nothing to accumulate across.
      if (o.updateEvery > 1 && !o.episodic && (this.accImages > 0 || n < o.updateEvery)) {
        if (!this.accGrads) this.accGrads = grads.map((g) => new Float32Array(g.length));
        this.accGrads.forEach((acc, i) => {
          const g = grads[i]!;
          for (let j = 0; j < acc.length; j++) acc[j] = acc[j]! + n * g[j]!;
        });
        this.accImages += n;
        ready = this.accImages >= o.updateEvery;
        if (ready) {
          const inv = 1 / this.accImages;
          this.accGrads.forEach((acc, i) => { grads[i] = acc.map((x) => x * inv); });
          this.accGrads = null;
          this.accImages = 0;
        }
      }
      if (ready) this.stepParameters(grads);
      adapted = ready;
      if (ready) this.counters.updates++;
    } else {
      this.counters.skipped++;
    }
    if (o.loss === 'abl') {
      const v = (name: string) => (out[name] as TensorOf<'float32'>).data;
      updateAblStats(this.abl, {
        n,
        probSum: v(HEAD.probSum),
        predCount: v(HEAD.predCount),
        predEntropySum: v(HEAD.predEntropySum),
        ...(selected > 0 ? { gradAbsSum: v(HEAD.gradAbsSum) } : {}),
      }, o.abl);
    }
    const reset = this.guard(r.entropy, false, n);
    return { ...r, loss, adapted: adapted && !reset, selected, reset };
  }

  /**
   * Runs the inference and step graphs once per batch size on zero images, changing no state.
   * onnxruntime plans and keeps memory per input shape, so a stream of mixed batch sizes (an agent
   * with a maximum batch wait) grows the process by a step the first time each size appears, about
   * 4.5 MB per size on ResNet-20, and pays a slower first run; warming every size up front moves
   * both to start-up, so memory is flat while serving. `sample` is one image's dims ([C, H, W]).
   */
  async warmUp(batchSizes: readonly number[], sample: readonly number[]): Promise<void> {
    this.checkOpen('warmUp');
    const size = sample.reduce((a, b) => a * b, 1);
    // twice per size: onnxruntime records a shape's memory pattern on its first run and allocates
    // by it from the second
    for (const n of batchSizes.flatMap((k) => [k, k])) {
      const x = f32([n, ...sample], new Float32Array(n * size));
      this.checkBatch(x);
      // the same fetch lists as infer() and step() (a plan belongs to its inputs and outputs)
      await this.inferSession.run(this.feeds(x, false), this.inferFetch);
      if (this.stepSession) await this.stepSession.run(this.feeds(x, true));
      else await this.inferSession.run(this.feeds(x, false), this.normaliseFetch);
    }
  }

  /** Back to the source parameters and statistics; forgets optimiser moments and ABL statistics. */
  reset(): void {
    this.checkOpen('reset');
    this.counters.manualResets++;
    this.restoreSource(true);
  }

  /** The current BN affine parameters of every rewritten layer (copies). */
  parameters(): { node: string; scale: Float32Array; bias: Float32Array; mean: Float32Array; var: Float32Array }[] {
    this.checkOpen('parameters');
    return this.graphs.layers.map((l, i) => ({ node: l.node, scale: Float32Array.from(this.scale[i]!), bias: Float32Array.from(this.bias[i]!), mean: Float32Array.from(this.mean[i]!), var: Float32Array.from(this.var[i]!) }));
  }

  /** The ABL class statistics (copies). */
  ablStatistics(): { freq: Float64Array; complexity: Float64Array; grad: Float64Array } {
    this.checkOpen('ablStatistics');
    return { freq: Float64Array.from(this.abl.freq), complexity: Float64Array.from(this.abl.complexity), grad: Float64Array.from(this.abl.grad) };
  }

  /** The entropy EMA the collapse guard watches (normalised by ln C; NaN before the first batch). */
  get entropyEmaValue(): number {
    return this.entropyEma;
  }

  /** A digest of the options that shape the state (a blob is only restored under the same). */
  get optionsKey(): string {
    const o = this.options;
    const key = JSON.stringify({ layers: this.graphs.layers.map((l) => l.node), adapted: this.adaptedLayers, norm: o.norm, loss: o.loss, optimizer: o.optimizer, classes: this.classes });
    return createHash('sha256').update(key).digest('hex').slice(0, 16);
  }

  /** Everything that evolves, as one versioned blob (see state.ts). */
  state(): Uint8Array {
    this.checkOpen('state');
    const arrays = new Map<string, Float32Array | Float64Array>();
    this.graphs.layers.forEach((l, i) => {
      arrays.set(`${l.node}::scale`, this.scale[i]!);
      arrays.set(`${l.node}::bias`, this.bias[i]!);
      arrays.set(`${l.node}::mean`, this.mean[i]!);
      arrays.set(`${l.node}::var`, this.var[i]!);
    });
    this.robust.save(arrays);
    const os = this.opt?.exportState();
    os?.moments.forEach((m, i) => arrays.set(`opt::${i}`, m));
    arrays.set('abl::freq', this.abl.freq);
    arrays.set('abl::complexity', this.abl.complexity);
    arrays.set('abl::grad', this.abl.grad);
    return encodeState({
      modelSha256: this.modelSha256,
      optionsKey: this.optionsKey,
      counters: { ...this.counters },
      scalars: { optT: os?.t ?? 0, entropyEma: Number.isNaN(this.entropyEma) ? -1 : this.entropyEma, stepsSinceReset: this.stepsSinceReset, ablUpdates: this.abl.updates, ablGradUpdates: this.abl.gradUpdates },
      arrays,
    });
  }

  /** Restores a blob from state(); refuses one made for another model or option set. */
  restore(blob: Uint8Array): void {
    this.checkOpen('restore');
    const s = decodeState(blob);
    if (s.modelSha256 !== this.modelSha256) {
      throw new TtaqError('STATE_MISMATCH', `${this.source}: adaptation state was saved for model ${s.modelSha256.slice(0, 12)}…, this is ${this.modelSha256.slice(0, 12)}…; discard the state (reset) or load the model it belongs to`);
    }
    if (s.optionsKey !== this.optionsKey) {
      throw new TtaqError('STATE_MISMATCH', `${this.source}: adaptation state was saved with other adaptation options (BN layers, normalisation, loss or optimiser); discard it or restore it under the same options`);
    }
    const get = (name: string, len: number): Float32Array | Float64Array => {
      const a = s.arrays.get(name);
      if (!a || a.length !== len) throw new TtaqError('ADAPT_BAD_STATE', `adaptation state lacks '${name}' of length ${len}; discard the state (reset)`);
      return a;
    };
    // Validate everything before changing anything.
    const L = this.graphs.layers;
    const vals = L.map((l) => ['scale', 'bias', 'mean', 'var'].map((k) => get(`${l.node}::${k}`, l.channels)));
    const os = this.opt?.exportState();
    const moments = os ? os.moments.map((m, i) => Float32Array.from(get(`opt::${i}`, m.length))) : [];
    const abl = ['freq', 'complexity', 'grad'].map((k) => get(`abl::${k}`, this.classes));
    const applyRobust = this.robust.load((name) => s.arrays.has(name), get, vals.map((v) => v[2]!), vals.map((v) => v[3]!));
    L.forEach((_, i) => {
      this.scale[i]!.set(vals[i]![0]!);
      this.bias[i]!.set(vals[i]![1]!);
      this.mean[i]!.set(vals[i]![2]!);
      this.var[i]!.set(vals[i]![3]!);
    });
    applyRobust();
    if (this.opt) this.opt.importState({ t: s.scalars['optT'] ?? 0, moments });
    this.abl.freq.set(abl[0]!);
    this.abl.complexity.set(abl[1]!);
    this.abl.grad.set(abl[2]!);
    this.abl.updates = s.scalars['ablUpdates'] ?? 0;
    this.abl.gradUpdates = s.scalars['ablGradUpdates'] ?? 0;
    const ema = s.scalars['entropyEma'] ?? -1;
    this.entropyEma = ema < 0 ? NaN : ema;
    this.stepsSinceReset = s.scalars['stepsSinceReset'] ?? 0;
    for (const k of Object.keys(this.counters) as (keyof AdapterCounters)[]) this.counters[k] = s.counters[k] ?? 0;
  }

  // --- internals ---------------------------------------------------------------------------

  /**
   * A NaN or infinity in the images is the caller's bug (a camera frame never holds one), and
   * taken as data it would reach the robust statistics and ABL's class statistics, or look like a
   * diverged adaptation and reset it. The input is only scanned when the logits (N x classes, small)
   * are not all finite, so a healthy stream pays nothing; non-finite logits from finite images are a
   * diverged state, which the guard after this resets as before.
   */
  private refuseNonFiniteInput(batch: TensorOf<'float32'>, logits: Float32Array, before: Uint8Array | undefined): void {
    if (logits.every(Number.isFinite)) return;
    const n = batch.dims[0]!;
    const per = batch.data.length / n;
    for (let i = 0; i < n; i++) {
      const sample = batch.data.subarray(i * per, (i + 1) * per);
      const j = sample.findIndex((v) => !Number.isFinite(v));
      if (j >= 0) {
        if (before) this.restore(before);
        throw new TtaqError('DATA_BAD_FORMAT', `${this.source}: sample ${i} of the batch holds ${sample[j]} at element ${j}; images must be finite numbers (check the decoding and preprocessing), the adaptation state is unchanged`, { sample: i, element: j });
      }
    }
  }

  private checkBatch(batch: TensorOf<'float32'>): void {
    if (!batch || typeof batch !== 'object' || !Array.isArray(batch.dims) || !(batch.data instanceof Float32Array)) {
      throw new TtaqError('CONFIG_INVALID', `${this.source}: a batch must be a tensor { dtype: 'float32', dims: [N, C, H, W], data: Float32Array }, got ${describeValue(batch)}; make one with f32(dims, data) from sdk/onnx, or preprocessBatch from sdk/data`);
    }
    if (batch.dtype !== 'float32' || batch.dims.length < 2 || batch.dims[0]! < 1) {
      throw new TtaqError('CONFIG_INVALID', `${this.source}: a batch must be a float32 tensor [N, C, H, W] with N >= 1, got ${batch.dtype} [${batch.dims.join(', ')}]`);
    }
    const want = this.sampleDims;
    if (want && (batch.dims.length !== want.length + 1 || want.some((d, i) => d !== null && d !== batch.dims[i + 1]))) {
      const shape = `[N, ${want.map((d) => d ?? '?').join(', ')}]`;
      throw new TtaqError('DATA_BAD_FORMAT', `${this.source}: a batch of [${batch.dims.join(', ')}] does not fit the model's input ${shape}; bring images to the model's size, channels and NCHW layout first (preprocessBatch with the model's manifest does)`, { dims: [...batch.dims], expected: shape });
    }
    if (this.options.norm === 'batch' && batch.dims[0] === 1 && batch.dims.length === 2) {
      throw new TtaqError('CONFIG_INVALID', `${this.source}: batch normalisation of a single sample without spatial extent is undefined; use norm 'robust' or 'source'`);
    }
  }

  private feeds(batch: TensorOf<'float32'>, forStep: boolean): Record<string, Tensor> {
    const g = this.graphs;
    const feeds: Record<string, Tensor> = { [g.input]: batch };
    (forStep ? g.stepLayers : g.layers).forEach((l, i) => {
      feeds[l.inputs.scale] = f32(l.paramDims, this.scale[i]!);
      feeds[l.inputs.bias] = f32(l.paramDims, this.bias[i]!);
      if (g.statsFed) {
        feeds[l.inputs.mean] = f32(l.paramDims, this.mean[i]!);
        feeds[l.inputs.var] = f32(l.paramDims, this.var[i]!);
      }
    });
    if (this.options.norm === 'robust') {
      const o = this.options;
      const n = batch.dims[0]!;
      const alpha = o.robustAlphaBatch > 0 ? 1 - Math.pow(1 - o.robustAlpha, n / o.robustAlphaBatch) : o.robustAlpha;
      feeds[ROBUST_ALPHA] = f32([], [alpha]);
    }
    if (forStep && this.options.loss === 'abl') {
      const v = classWeights(this.abl, this.options.abl);
      if (this.options.abl.weightNorm === 'prior') {
        // Normalised by the expected weight under pi: a batch of a class the stream is full of
        // weighs little even when it is all one class (the batch-mean normalisation would give it 1).
        let e = 0;
        for (let k = 0; k < this.classes; k++) e += this.abl.freq[k]! * v[k]!;
        for (let k = 0; k < this.classes; k++) v[k] = e > 0 ? v[k]! / e : 1;
      }
      feeds[HEAD.classWeight] = f32([this.classes], v);
      feeds[HEAD.logitOffset] = f32([this.classes], logitOffset(this.abl, this.options.abl));
    }
    return feeds;
  }

  private inferResult(out: Record<string, Tensor>): InferResult {
    const logits = out[this.graphs.logits] as TensorOf<'float32'>;
    const pred = out[HEAD.pred]!;
    const ent = (out[HEAD.entropy] as TensorOf<'float32'>).data;
    const predictions = Int32Array.from(pred.data as BigInt64Array, (x) => Number(x));
    let s = 0;
    for (let i = 0; i < ent.length; i++) s += ent[i]!;
    const confidences = (out[HEAD.confidence] as TensorOf<'float32'>).data;
    return { logits, predictions, confidences, entropies: ent, entropy: s / Math.max(1, ent.length) };
  }

  /** One optimiser step on the adapted scales and biases (with the L2 anchor to source). */
  private stepParameters(grads: Float32Array[]): void {
    const o = this.options;
    const params = this.graphs.adapted.flatMap((_, i) => [this.scale[i]!, this.bias[i]!]);
    if (o.anchor > 0) {
      const src = this.graphs.adapted.flatMap((l) => [l.source.scale, l.source.bias]);
      for (let i = 0; i < grads.length; i++) {
        const g = Float32Array.from(grads[i]!);
        const p = params[i]!;
        const s = src[i]!;
        for (let j = 0; j < g.length; j++) g[j] = g[j]! + o.anchor * (p[j]! - s[j]!);
        grads[i] = g;
      }
    }
    this.opt!.step(params, grads);
  }

  /** Updates the entropy EMA; resets to source on collapse. Returns whether it reset. */
  private guard(meanEntropy: number, noUpdateMethod: boolean, n: number): boolean {
    const o = this.options;
    const h = meanEntropy / Math.log(this.classes);
    // With collapseMomentumBatch the EMA spans the same number of images at every batch size (a
    // batch of 4 frames of one confident class is not a collapse), and so does the warm-up.
    const ref = o.collapseMomentumBatch;
    const mom = ref > 0 ? Math.pow(o.collapseMomentum, n / ref) : o.collapseMomentum;
    const warmup = ref > 0 ? o.collapseWarmup * Math.max(1, ref / n) : o.collapseWarmup;
    this.entropyEma = Number.isNaN(this.entropyEma) ? h : mom * this.entropyEma + (1 - mom) * h;
    this.stepsSinceReset++;
    if (noUpdateMethod || o.collapseEntropy <= 0 || o.episodic) return false;
    if (this.stepsSinceReset > warmup && this.entropyEma < o.collapseEntropy) {
      this.counters.collapseResets++;
      this.restoreSource(true);
      return true;
    }
    return false;
  }

  /** Source parameters and statistics back; `full` also forgets optimiser, ABL and guard state. */
  private restoreSource(full: boolean): void {
    this.graphs.layers.forEach((l: BnLayer, i) => {
      this.scale[i]!.set(l.source.scale);
      this.bias[i]!.set(l.source.bias);
      this.mean[i]!.set(l.source.mean);
      this.var[i]!.set(l.source.var);
    });
    this.robust.reset();
    this.opt?.reset();
    if (full) {
      this.accGrads = null;
      this.accImages = 0;
      this.abl = initAblStats(this.classes);
      this.entropyEma = NaN;
      this.stepsSinceReset = 0;
    }
  }
}

/** A short description of a value of the wrong kind, for error messages. */
function describeValue(v: unknown): string {
  if (v === null || v === undefined) return String(v);
  if (ArrayBuffer.isView(v)) return `a bare ${v.constructor.name} of ${(v as unknown as ArrayLike<number>).length} values (no dims)`;
  if (typeof v !== 'object') return `a ${typeof v}`;
  const t = v as { dtype?: unknown; data?: unknown };
  return typeof t.dtype === 'string' ? `a ${t.dtype} tensor whose data is ${t.data?.constructor?.name ?? typeof t.data}` : 'an object without dims';
}
