// The training loop: epochs over an in-memory dataset, seeded shuffling and augmentation,
// softmax cross-entropy, one gradient-graph run per batch (sdk/autodiff), SGD, BN running
// statistics updated from the batch statistics the training graph outputs (PyTorch convention:
// momentum 0.1, unbiased variance), a per-iteration learning-rate schedule, evaluation each epoch
// on the inference form, and a checkpoint that resumes the run exactly.
import { batchNormForSession, buildGradientGraph, chooseWorkers, DataParallelStep, GradientStep, withSoftmaxCrossEntropy, type GradientGraph, type RuleOptions } from '../autodiff/index.ts';
import { TtaqError } from '../errors/index.ts';
import { buildNet, Rng, withInitializers, type Arch, type BuiltNet, type NetSpec } from '../nn/index.ts';
import { makeTensor } from '../onnx/tensor.ts';
import type { Model, Tensor } from '../onnx/types.ts';
import { noProgress, type ProgressFn } from '../progress/index.ts';
import { Sgd } from '../optim/index.ts';
import { createSession, type Session, type SessionOptions } from '../runtime/index.ts';
import type { Checkpoint, CheckpointTensor } from './checkpoint.ts';
import { checkImageSet, fillBatch, normTables, type Augment, type ImageSet } from './data.ts';
import { lrAt, type ScheduleKind } from './schedule.ts';

export interface TrainConfig {
  readonly arch: Arch;
  /** Seeds parameter initialisation, shuffling and augmentation. */
  readonly seed: number;
  readonly epochs: number;
  readonly batchSize: number;
  readonly lr: number;
  readonly momentum: number;
  readonly nesterov: boolean;
  readonly weightDecay: number;
  readonly schedule: ScheduleKind;
  readonly warmupEpochs: number;
  /** null: no augmentation. */
  readonly augment: Augment | null;
  /** Per-channel normalisation after scaling pixels to [0, 1]. */
  readonly mean: readonly number[];
  readonly std: readonly number[];
  /** PyTorch-style BN momentum for the running statistics. */
  readonly bnMomentum: number;
  readonly numClasses: number;
  /** Input geometry (from the dataset). */
  readonly channels: number;
  readonly height: number;
  readonly width: number;
  /** How `ttaq train` made the run (not read by the trainer): recorded in every checkpoint so that
   * `--resume` alone continues on the same images and into the same files. Absent in checkpoints
   * written before it was recorded, and for callers of the SDK. */
  readonly run?: TrainRunRecord;
}

/** The data and files of a `ttaq train` run. Other data would change the steps per epoch, and with
 * them the learning-rate schedule, half-way through the run. */
export interface TrainRunRecord {
  /** The --data argument as given ('fashion-mnist' or a folder). */
  readonly data: string;
  /** --limit: the first N training and test images; absent: all. */
  readonly limit?: number;
  /** Images the run trains and evaluates on (after --limit): a resume checks the data still gives them. */
  readonly trainImages: number;
  readonly testImages: number;
  /** --out and --checkpoint of the call that wrote the checkpoint. */
  readonly out: string;
  readonly checkpoint: string;
  /** --workers of that call: the slices a batch ran in (BN statistics are per slice, so another
   * count gives the remaining epochs other numbers). Absent in checkpoints written before it was
   * recorded: they resume with 1 slice unless the call gives --workers. */
  readonly workers?: number;
}

export const DEFAULT_CONFIG: Omit<TrainConfig, 'arch' | 'numClasses' | 'channels' | 'height' | 'width' | 'mean' | 'std'> = {
  seed: 0, epochs: 24, batchSize: 128, lr: 0.1, momentum: 0.9, nesterov: false, weightDecay: 5e-4,
  schedule: 'cosine', warmupEpochs: 0, augment: { pad: 2, flip: true }, bnMomentum: 0.1,
};

export interface EpochRecord {
  readonly epoch: number;
  readonly lr: number;
  readonly trainLoss: number;
  readonly trainAccuracy: number;
  readonly testLoss?: number;
  readonly testAccuracy?: number;
  readonly imagesPerSec: number;
  readonly seconds: number;
  /** Share of the training loop's wall time spent inside onnxruntime's Session.run. */
  readonly runtimeShare: number;
}

export interface TrainerOptions {
  readonly onProgress?: ProgressFn;
  /** Session options for the gradient and evaluation sessions (threads etc.). */
  readonly session?: SessionOptions;
  /** Evaluation batch size (default 500). */
  readonly evalBatch?: number;
  /** Formulations of the gradient graph's rules (default: the fastest measured; for A/B timing). */
  readonly ruleOptions?: RuleOptions;
  /** Data-parallel slices of each batch run at once (sdk/autodiff/parallel.ts; default 1). */
  readonly workers?: number;
}

const CKPT_FORMAT = 'ttaq-train-checkpoint/1';

function checkConfig(c: TrainConfig): void {
  const bad = (key: string, why: string): never => { throw new TtaqError('CONFIG_INVALID', `training config: ${key} ${why}`); };
  if (!Number.isInteger(c.epochs) || c.epochs < 1) bad('epochs', `must be a positive integer, got ${c.epochs}`);
  if (!Number.isInteger(c.batchSize) || c.batchSize < 2) bad('batch', `must be an integer >= 2 (BN needs two samples), got ${c.batchSize}`);
  if (!(c.lr > 0)) bad('lr', `must be > 0, got ${c.lr}`);
  // pixels are divided by it: 0 gives infinities and a NaN loss at the first step
  if (!c.std.every((s) => s > 0)) bad('std', `must be > 0 in every channel, got ${c.std.join(',')}`);
  if (!(c.bnMomentum > 0 && c.bnMomentum <= 1)) bad('bnMomentum', `must be in (0, 1], got ${c.bnMomentum}`);
  if (!(c.warmupEpochs >= 0 && c.warmupEpochs < c.epochs)) bad('warmupEpochs', `must be in [0, epochs), got ${c.warmupEpochs}`);
  if (c.augment && (!Number.isInteger(c.augment.pad) || c.augment.pad < 0)) bad('augment.pad', `must be a non-negative integer, got ${c.augment.pad}`);
}

/** The network a config trains (same parameters for the training and inference forms). */
export const netSpecOf = (c: TrainConfig): NetSpec => ({
  arch: c.arch, seed: c.seed, channels: c.channels, height: c.height, width: c.width, numClasses: c.numClasses,
});

export class Trainer {
  /** Completed epochs. */
  epoch = 0;
  /** Completed optimisation steps. */
  step = 0;
  readonly history: EpochRecord[] = [];
  readonly stepsPerEpoch: number;
  /** Trainable parameters (updated in place) and BN running statistics, by initializer name. */
  readonly params = new Map<string, Float32Array>();
  readonly stats = new Map<string, Float32Array>();
  private readonly tables: Float32Array[];
  private rng: Rng;
  private readonly paramFeed = new Map<string, Tensor>();
  private evalSession: Session | undefined;

  private constructor(
    readonly config: TrainConfig,
    readonly data: { readonly train: ImageSet; readonly test?: ImageSet },
    readonly net: BuiltNet,
    readonly graph: GradientGraph,
    readonly gradStep: GradientStep | DataParallelStep,
    readonly sgd: Sgd,
    private readonly opts: TrainerOptions,
  ) {
    this.stepsPerEpoch = Math.floor(data.train.count / config.batchSize);
    this.tables = normTables(config.channels, config.mean, config.std);
    this.rng = new Rng((config.seed ^ 0x5bd1e995) >>> 0);
    const inits = net.model.graph.initializers;
    for (const p of net.params) {
      const t = graph.params.get(p.name) ?? inits.get(p.name)!;
      const data = Float32Array.from(t.data as Float32Array);
      this.params.set(p.name, data);
      this.paramFeed.set(p.name, makeTensor('float32', p.dims, data));
    }
    for (const b of net.bns) {
      for (const s of [b.mean, b.var]) this.stats.set(s, Float32Array.from(inits.get(s)!.data as Float32Array));
    }
  }

  static async create(config: TrainConfig, data: { train: ImageSet; test?: ImageSet }, opts: TrainerOptions = {}): Promise<Trainer> {
    checkConfig(config);
    checkImageSet(data.train, 'training set', config.numClasses);
    if (data.test) checkImageSet(data.test, 'test set', config.numClasses);
    for (const s of [data.train, data.test]) {
      if (s && (s.height !== config.height || s.width !== config.width || s.channels !== config.channels)) {
        throw new TtaqError('DATA_BAD_FORMAT', `dataset images are ${s.height}x${s.width}x${s.channels} but the network expects ${config.height}x${config.width}x${config.channels}; resize the data or change the config`);
      }
    }
    if (data.train.count < config.batchSize) {
      throw new TtaqError('CONFIG_INVALID', `training set has ${data.train.count} images, fewer than one batch of ${config.batchSize}; lower --batch or raise --limit`);
    }
    const net = buildNet(netSpecOf(config), 'train');
    const { model, loss } = withSoftmaxCrossEntropy(net.model, net.output, { labels: 'int64', classes: config.numClasses });
    const outputs = [net.output, ...net.bns.flatMap((b) => [b.batchMean, b.batchVar])];
    const session = { source: `${config.arch} training graph`, ...opts.session };
    const graph = await buildGradientGraph({ model, loss, wrt: net.params.map((p) => p.name), outputs, sampleBatch: 2, batchNorm: batchNormForSession(session), ...(opts.ruleOptions ? { ruleOptions: opts.ruleOptions } : {}) });
    // Data-parallel slices: BN's batch statistics are then per slice (as in multi-GPU training
    // without synchronised BN) and the running statistics follow their average.
    const workers = chooseWorkers(opts.workers ?? 1, config.batchSize);
    const gradStep = workers > 1
      ? await DataParallelStep.create(graph, { workers, concatOutputs: [net.output], session })
      : await GradientStep.create(graph, { session });
    // sdk/optim's SGD (PyTorch semantics); the learning rate comes from the schedule each step.
    const sgd = new Sgd({ lr: config.lr, momentum: config.momentum, weightDecay: config.weightDecay, nesterov: config.nesterov });
    return new Trainer(config, data, net, graph, gradStep, sgd, opts);
  }

  get totalSteps(): number {
    return this.stepsPerEpoch * this.config.epochs;
  }

  lrAt(step: number): number {
    const c = this.config;
    return lrAt({ kind: c.schedule, baseLr: c.lr, totalSteps: this.totalSteps, warmupSteps: Math.round(c.warmupEpochs * this.stepsPerEpoch) }, step);
  }

  /** Runs one training step on the given sample indices; returns loss and correct count. */
  async trainStep(indices: Int32Array, x: Float32Array, labels: BigInt64Array): Promise<{ loss: number; correct: number }> {
    const c = this.config;
    const B = indices.length;
    fillBatch(this.data.train, indices, x, this.tables, c.augment ?? undefined, this.rng);
    for (let i = 0; i < B; i++) labels[i] = BigInt(this.data.train.labels[indices[i]!]!);
    const r = await this.gradStep.run(this.paramFeed, {
      input: makeTensor('float32', [B, c.channels, c.height, c.width], x),
      labels: makeTensor('int64', [B], labels),
    });
    if (!Number.isFinite(r.loss)) {
      throw new TtaqError('INTERNAL', `training diverged at epoch ${this.epoch + 1}, step ${this.step + 1}: loss is ${r.loss}; lower --lr or check the data normalisation`);
    }
    const grads = new Map<string, Float32Array>();
    for (const [k, g] of r.grads) grads.set(k, g.data as Float32Array);
    this.sgd.step(this.params, grads, this.lrAt(this.step));
    // BN running statistics: running = (1 - m) * running + m * batch, variance made unbiased.
    const m = c.bnMomentum;
    for (const bn of this.net.bns) {
      const n = B * bn.spatial;
      const bm = r.outputs[bn.batchMean]!.data as Float32Array;
      const bv = r.outputs[bn.batchVar]!.data as Float32Array;
      const rm = this.stats.get(bn.mean)!;
      const rv = this.stats.get(bn.var)!;
      for (let ch = 0; ch < bn.channels; ch++) {
        rm[ch] = (1 - m) * rm[ch]! + m * bm[ch]!;
        rv[ch] = (1 - m) * rv[ch]! + (m * bv[ch]! * n) / (n - 1);
      }
    }
    const logits = r.outputs[this.net.output]!.data as Float32Array;
    return { loss: r.loss, correct: countCorrect(logits, labels, B, c.numClasses) };
  }

  /** One epoch of training followed by evaluation on the test set (when there is one). */
  async trainEpoch(): Promise<EpochRecord> {
    const c = this.config;
    if (this.epoch >= c.epochs) throw new TtaqError('CONFIG_INVALID', `training already ran its ${c.epochs} epochs`);
    const progress = this.opts.onProgress ?? noProgress;
    const B = c.batchSize;
    const order = Int32Array.from({ length: this.data.train.count }, (_, i) => i);
    this.rng.shuffle(order);
    const x = new Float32Array(B * c.channels * c.height * c.width);
    const labels = new BigInt64Array(B);
    let lossSum = 0;
    let correct = 0;
    let seen = 0;
    const ortBefore = this.gradStep.timing.sessionMs;
    const t0 = performance.now();
    const stage = `epoch ${this.epoch + 1}/${c.epochs}`;
    for (let s = 0; s < this.stepsPerEpoch; s++) {
      const lr = this.lrAt(this.step);
      const r = await this.trainStep(order.subarray(s * B, (s + 1) * B), x, labels);
      this.step++;
      lossSum += r.loss * B;
      correct += r.correct;
      seen += B;
      const secs = (performance.now() - t0) / 1000;
      progress({ stage, done: s + 1, total: this.stepsPerEpoch, info: `loss ${(lossSum / seen).toFixed(4)} acc ${((100 * correct) / seen).toFixed(2)}% ${(seen / secs).toFixed(0)} img/s lr ${lr.toFixed(4)}` });
    }
    const seconds = (performance.now() - t0) / 1000;
    const runtimeShare = (this.gradStep.timing.sessionMs - ortBefore) / 1000 / seconds;
    this.epoch++;
    let test: { loss: number; accuracy: number } | undefined;
    if (this.data.test) test = await this.evaluate(this.data.test, progress);
    const rec: EpochRecord = {
      epoch: this.epoch, lr: this.lrAt(Math.max(0, this.step - 1)), trainLoss: lossSum / seen, trainAccuracy: correct / seen,
      ...(test ? { testLoss: test.loss, testAccuracy: test.accuracy } : {}),
      imagesPerSec: seen / seconds, seconds, runtimeShare,
    };
    this.history.push(rec);
    return rec;
  }

  /** The inference form with the current parameters and running statistics. */
  inferenceModel(): Model {
    const net = buildNet(netSpecOf(this.config), 'infer');
    const values = new Map<string, Tensor>();
    for (const p of net.params) values.set(p.name, makeTensor('float32', p.dims, Float32Array.from(this.params.get(p.name)!)));
    for (const [k, v] of this.stats) values.set(k, makeTensor('float32', [v.length], Float32Array.from(v)));
    return withInitializers(net.model, values);
  }

  /** Accuracy and mean cross-entropy of the inference form on `set`. */
  async evaluate(set: ImageSet, progress: ProgressFn = noProgress): Promise<{ loss: number; accuracy: number }> {
    const c = this.config;
    await this.evalSession?.release();
    this.evalSession = await createSession(this.inferenceModel(), { source: `${c.arch} evaluation model`, ...this.opts.session });
    const E = Math.min(this.opts.evalBatch ?? 500, set.count);
    const x = new Float32Array(E * c.channels * c.height * c.width);
    let correct = 0;
    let loss = 0;
    for (let start = 0; start < set.count; start += E) {
      const n = Math.min(E, set.count - start);
      const idx = Int32Array.from({ length: n }, (_, i) => start + i);
      fillBatch(set, idx, x, this.tables);
      const out = await this.evalSession.run({ input: makeTensor('float32', [n, c.channels, c.height, c.width], x.subarray(0, n * c.channels * c.height * c.width)) });
      const z = out[this.net.output]!.data as Float32Array;
      const k = c.numClasses;
      for (let i = 0; i < n; i++) {
        const row = z.subarray(i * k, (i + 1) * k);
        const y = set.labels[start + i]!;
        let best = 0;
        let mx = -Infinity;
        for (let j = 0; j < k; j++) if (row[j]! > mx) { mx = row[j]!; best = j; }
        let se = 0;
        for (let j = 0; j < k; j++) se += Math.exp(row[j]! - mx);
        loss += Math.log(se) + mx - row[y]!;
        if (best === y) correct++;
      }
      progress({ stage: 'eval', done: start + n, total: set.count });
    }
    return { loss: loss / set.count, accuracy: correct / set.count };
  }

  /** Everything needed to continue the run exactly. */
  checkpoint(): Checkpoint {
    const tensors = new Map<string, CheckpointTensor>();
    for (const p of this.net.params) tensors.set(`param/${p.name}`, { dims: p.dims, data: this.params.get(p.name)! });
    for (const [k, v] of this.stats) tensors.set(`stat/${k}`, { dims: [v.length], data: v });
    // Checkpoint layout (unchanged since ttaq-train-checkpoint/1): one 'opt/<param>' tensor per
    // momentum buffer and the optimizer's step count in the header.
    const opt = this.sgd.state();
    for (const [k, slots] of Object.entries(opt.slots)) {
      const v = slots['momentum'];
      if (v) tensors.set(`opt/${k}`, { dims: [v.length], data: v });
    }
    return {
      meta: {
        format: CKPT_FORMAT, config: this.config, epoch: this.epoch, step: this.step,
        rng: this.rng.state(), optimizer: { kind: 'sgd', steps: opt.steps }, history: this.history,
      },
      tensors,
    };
  }

  /** Restores a checkpoint written by `checkpoint()` of a trainer with the same config. */
  restore(ck: Checkpoint, source = 'checkpoint'): void {
    const meta = ck.meta as { format?: string; config?: TrainConfig; epoch: number; step: number; rng: { words: number[]; spare: number | null }; optimizer: { steps: number }; history: EpochRecord[] };
    if (meta.format !== CKPT_FORMAT) throw new TtaqError('STATE_MISMATCH', `${source}: format '${meta.format}' is not ${CKPT_FORMAT}; it was not written by 'ttaq train'`);
    if (meta.config?.arch !== this.config.arch) {
      throw new TtaqError('STATE_MISMATCH', `${source} holds a '${meta.config?.arch}' run, not '${this.config.arch}'; resume with the matching --arch`);
    }
    const take = (key: string, into: Float32Array): void => {
      const t = ck.tensors.get(key);
      if (!t || t.data.length !== into.length) throw new TtaqError('STATE_MISMATCH', `${source}: tensor '${key}' is missing or has ${t?.data.length} values instead of ${into.length}; the checkpoint belongs to another model`);
      into.set(t.data);
    };
    for (const [k, v] of this.params) take(`param/${k}`, v);
    for (const [k, v] of this.stats) take(`stat/${k}`, v);
    const slots: Record<string, Record<string, Float32Array>> = {};
    for (const [k, t] of ck.tensors) {
      if (!k.startsWith('opt/')) continue;
      const name = k.slice(4);
      if (!this.params.has(name) || t.data.length !== this.params.get(name)!.length) {
        throw new TtaqError('STATE_MISMATCH', `${source}: optimizer buffer '${k}' does not match a parameter of this '${this.config.arch}' net; the checkpoint belongs to another model`);
      }
      slots[name] = { momentum: t.data };
    }
    this.sgd.load({ kind: 'sgd', steps: meta.optimizer.steps, hyper: {}, slots });
    this.epoch = meta.epoch;
    this.step = meta.step;
    this.rng = Rng.fromState(meta.rng);
    this.history.splice(0, this.history.length, ...meta.history);
  }

  /** Share of step time outside onnxruntime, over all steps so far. */
  get timing(): { steps: number; sessionMs: number; totalMs: number } {
    const t = this.gradStep.timing;
    return { steps: t.runs, sessionMs: t.sessionMs, totalMs: t.totalMs };
  }

  async release(): Promise<void> {
    await this.gradStep.release();
    await this.evalSession?.release();
    this.evalSession = undefined;
  }
}

/** Reads the config stored in a checkpoint (to rebuild its trainer). */
export function configOfCheckpoint(ck: Checkpoint, source = 'checkpoint'): TrainConfig {
  const meta = ck.meta as { format?: string; config?: TrainConfig };
  if (meta.format !== CKPT_FORMAT || !meta.config) throw new TtaqError('STATE_MISMATCH', `${source} is not a ${CKPT_FORMAT} file; pass a checkpoint written by 'ttaq train'`);
  return meta.config;
}

function countCorrect(logits: Float32Array, labels: BigInt64Array, n: number, k: number): number {
  let correct = 0;
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let j = 1; j < k; j++) if (logits[i * k + j]! > logits[i * k + best]!) best = j;
    if (BigInt(best) === labels[i]) correct++;
  }
  return correct;
}
