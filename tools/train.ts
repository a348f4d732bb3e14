// `ttaq train`: trains a bundled architecture (sdk/nn) with sdk/train, checkpointing every epoch,
// and exports the inference form (BN preserved) with its manifest. `--bench` measures one
// training step instead.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { threadsPerSlice } from '../sdk/autodiff/index.ts';
import { TtaqError } from '../sdk/errors/index.ts';
import { readFashionMnist, readIdxDir, readImageFolder, take, type Dataset } from '../sdk/data/index.ts';
import { FASHION_MNIST_LABELS } from '../sdk/manifest/index.ts';
import { ARCHS, type Arch } from '../sdk/nn/index.ts';
import {
  benchStep, configOfCheckpoint, DEFAULT_CONFIG, exportModel, loadCheckpoint, runTraining, Trainer,
  type ScheduleKind, type TrainConfig,
} from '../sdk/train/index.ts';
import { parseFlags, prepareOutputFile, printJson } from './lib/cli.ts';
import { progressPrinter } from './lib/progress.ts';

export const summary = 'train ResNet-20 / MobileNet-style nets (checkpoint, resume, ONNX + manifest export, --bench)';

const HELP = `usage: ttaq train [options]

  --arch A         resnet20 | mobilenet (default resnet20)
  --data D         fashion-mnist | <IDX folder with train-* and t10k-*/test-* files> |
                   <image folder with train/ and test/ class folders> (default fashion-mnist)
  --epochs N       epochs (default 24); the schedule spans all of them
  --batch N        batch size (default 128)
  --lr X           base learning rate (default 0.1)
  --momentum X     SGD momentum (default 0.9)
  --nesterov       Nesterov momentum
  --wd X           weight decay (default 5e-4)
  --schedule S     cosine | step | constant (default cosine), evaluated per iteration
  --warmup E       linear warm-up epochs (default 0)
  --pad N          random-crop padding (default 2; 0 disables the crop)
  --no-flip        no random horizontal flip
  --seed N         seed of initialisation, shuffling and augmentation (default 0)
  --mean a[,b,c]   normalisation mean (default: Fashion-MNIST's 0.2860, else measured)
  --std a[,b,c]    normalisation std (default: Fashion-MNIST's 0.3530, else measured)
  --out P          model path (default runs/train/<arch>-<data>.onnx, <data> 'fmnist' or the data
                   folder's name); manifest beside it
  --checkpoint P   checkpoint written after every epoch (default: <out without .onnx>.ckpt)
  --resume P       continue the run saved in checkpoint P: its config, data and --limit are used
                   (flags that differ are named and ignored; other --data or --limit is refused)
  --max-epochs N   stop after N epochs in this call (resume later); export only when done
  --limit N        use only the first N training and test images
  --threads T      onnxruntime intra-op threads (default: one per core; per slice with --workers)
  --workers K      each batch in K slices run at once on K threads, BN statistics per slice
                   (default 1)
  --bench          measure a training step (batch --batch, 10 steps) instead of training
  --json           machine-readable result on stdout
`;

const FMNIST_MEAN = 0.286;
const FMNIST_STD = 0.353;

function num(v: string | undefined, key: string, dflt: number): number {
  if (v === undefined) return dflt;
  const x = Number(v);
  if (!Number.isFinite(x)) throw new TtaqError('CLI_USAGE', `--${key} expects a number, got '${v}'`);
  return x;
}

function int(v: string | undefined, key: string, dflt: number): number {
  const x = num(v, key, dflt);
  if (!Number.isInteger(x) || x < 0) throw new TtaqError('CLI_USAGE', `--${key} expects a non-negative integer, got '${v}'`);
  return x;
}

/** A list of numbers that must all be > 0 (a std of 0 divides by zero: the run diverges at once). */
function positives(xs: number[] | undefined, key: string): number[] | undefined {
  if (xs?.some((x) => !(x > 0))) throw new TtaqError('CLI_USAGE', `--${key} ${xs.join(',')}: every value must be above 0 (the images are divided by it)`);
  return xs;
}

/** Training flags given with --resume whose values differ from the checkpoint's (which are used). */
function ignoredFlags(f: Record<string, string | boolean | undefined>, c: TrainConfig): string[] {
  const used: [string, unknown, unknown][] = [
    ['arch', f.arch, c.arch], ['epochs', f.epochs, c.epochs], ['batch', f.batch, c.batchSize], ['lr', f.lr, c.lr],
    ['momentum', f.momentum, c.momentum], ['wd', f.wd, c.weightDecay], ['schedule', f.schedule, c.schedule],
    ['warmup', f.warmup, c.warmupEpochs], ['pad', f.pad, c.augment?.pad ?? 0], ['seed', f.seed, c.seed],
    ['mean', f.mean, c.mean.join(',')], ['std', f.std, c.std.join(',')],
  ];
  const out = used.filter(([, given, have]) => given !== undefined && String(given) !== String(have))
    .map(([k, given, have]) => `--${k} ${String(given)} is not used: the resumed run keeps its ${String(have)}`);
  if (f.nesterov && !c.nesterov) out.push('--nesterov is not used: the resumed run has plain momentum');
  if (f['no-flip'] && c.augment?.flip) out.push('--no-flip is not used: the resumed run flips');
  return out;
}

function list(v: string | undefined, key: string): number[] | undefined {
  if (v === undefined) return undefined;
  const xs = v.split(',').map(Number);
  if (xs.some((x) => !Number.isFinite(x))) throw new TtaqError('CLI_USAGE', `--${key} expects comma-separated numbers, got '${v}'`);
  return xs;
}

async function loadData(spec: string): Promise<{ train: Dataset; test?: Dataset; name: string; labels: readonly string[] }> {
  if (spec === 'fashion-mnist') {
    const [train, test] = await Promise.all([readFashionMnist('train'), readFashionMnist('test')]);
    return { train, test, name: 'fashion-mnist', labels: FASHION_MNIST_LABELS };
  }
  if (!existsSync(spec) || !statSync(spec).isDirectory()) {
    throw new TtaqError('DATA_NOT_FOUND', `--data '${spec}' is neither 'fashion-mnist' nor a folder; pass an IDX folder or an image folder with train/ and test/`);
  }
  let train: Dataset;
  let test: Dataset | undefined;
  if (existsSync(join(spec, 'train')) && statSync(join(spec, 'train')).isDirectory()) {
    train = await readImageFolder(join(spec, 'train'));
    if (existsSync(join(spec, 'test'))) test = await readImageFolder(join(spec, 'test'), { classes: train.classes, channels: train.channels as 1 | 3, height: train.height, width: train.width });
  } else if (readdirSync(spec).some((n) => /-images-idx[34]-ubyte/.test(n))) {
    train = await readIdxDir(spec, 'train');
    try { test = await readIdxDir(spec, 'test'); } catch { test = undefined; }
  } else {
    train = await readImageFolder(spec);
  }
  let k = 0;
  for (let i = 0; i < train.count; i++) k = Math.max(k, train.labels[i]! + 1);
  const labels = train.classes ?? Array.from({ length: Math.max(2, k) }, (_, i) => String(i));
  return { train, ...(test ? { test } : {}), name: spec, labels };
}

/** Where a model goes without --out: runs/train/<arch>-<data>.onnx, <data> 'fmnist' or the data folder's name. */
export function defaultOut(arch: string, dataSpec: string): string {
  const data = dataSpec === 'fashion-mnist' ? 'fmnist' : basename(resolve(dataSpec)).replace(/[^A-Za-z0-9._-]+/g, '_') || 'data';
  return join('runs', 'train', `${arch}-${data}.onnx`);
}

/** Per-channel mean and std of the training images, pixels scaled to [0, 1] (one-off pass). */
function measureNorm(d: Dataset): { mean: number[]; std: number[] } {
  const C = d.channels;
  const s = new Float64Array(C);
  const s2 = new Float64Array(C);
  for (let i = 0; i < d.images.length; i++) { const v = d.images[i]! / 255; s[i % C]! += v; s2[i % C]! += v * v; }
  const n = d.images.length / C;
  const mean = Array.from(s, (v) => v / n);
  return { mean, std: Array.from(s2, (v, c) => Math.max(1e-3, Math.sqrt(v / n - mean[c]! ** 2))) };
}

export async function run(argv: string[]): Promise<number> {
  const parsed = parseFlags(argv, {
    arch: { type: 'string' }, data: { type: 'string' }, epochs: { type: 'string' }, batch: { type: 'string' },
    lr: { type: 'string' }, momentum: { type: 'string' }, nesterov: { type: 'boolean' }, wd: { type: 'string' },
    schedule: { type: 'string' }, warmup: { type: 'string' }, pad: { type: 'string' }, 'no-flip': { type: 'boolean' },
    seed: { type: 'string' }, mean: { type: 'string' }, std: { type: 'string' }, out: { type: 'string' },
    checkpoint: { type: 'string' }, resume: { type: 'string' }, 'max-epochs': { type: 'string' }, limit: { type: 'string' },
    threads: { type: 'string' }, workers: { type: 'string' }, bench: { type: 'boolean' }, json: { type: 'boolean' },
  }, HELP);
  if (!parsed) return 0;
  const f = parsed.values;
  const arch = (f.arch ?? 'resnet20') as Arch;
  if (!(ARCHS as readonly string[]).includes(arch)) throw new TtaqError('CLI_USAGE', `--arch '${arch}' is not one of ${ARCHS.join(', ')}`);
  const schedule = (f.schedule ?? 'cosine') as ScheduleKind;
  if (!['cosine', 'step', 'constant'].includes(schedule)) throw new TtaqError('CLI_USAGE', `--schedule '${schedule}' is not one of cosine, step, constant`);
  const threads = f.threads === undefined ? undefined : int(f.threads, 'threads', 0);
  // Idle workers sleep (sdk/runtime's default): a long training run shares the machine with other
  // jobs, and spinning threads starved by the scheduler cost far more than the wake-ups.
  const workers = int(f.workers, 'workers', 1);
  if (workers < 1) throw new TtaqError('CLI_USAGE', `--workers ${f.workers}: give at least 1 slice`);
  const session = { intraOpThreads: threads ?? (workers > 1 ? threadsPerSlice(workers) : undefined) };
  const quiet = Boolean(f.json);

  if (f.bench) {
    const r = await benchStep({ arch, batch: int(f.batch, 'batch', 128), steps: 10, session, workers });
    if (f.json) printJson(r);
    else {
      process.stdout.write(`${arch} training step, batch ${r.batch}: ${r.imagesPerSec.toFixed(1)} images/s, ${r.msPerStep.toFixed(1)} ms/step ` +
        `(${r.runtimeMsPerStep.toFixed(1)} ms in onnxruntime, ${(100 * r.outsideShare).toFixed(1)}% outside); ` +
        `graph ${r.forwardNodes} forward / ${r.gradientNodes} gradient nodes, built in ${r.buildSeconds.toFixed(1)} s\n`);
    }
    return 0;
  }

  const stdFlag = positives(list(f.std, 'std'), 'std');
  const resumed = f.resume ? await loadCheckpoint(f.resume) : undefined;
  const recorded = resumed ? configOfCheckpoint(resumed, f.resume) : undefined;
  // A resumed run trains on the data it started on: other data (or another --limit) would change
  // the steps per epoch and with them the learning-rate schedule half-way through.
  const limitFlag = f.limit === undefined ? undefined : int(f.limit, 'limit', 0);
  if (recorded?.data) {
    const was = recorded.data;
    if ((f.data !== undefined && f.data !== was.spec) || (limitFlag !== undefined && limitFlag !== was.limit)) {
      throw new TtaqError('CLI_USAGE', `--resume ${f.resume}: that run trains on --data ${was.spec}${was.limit !== undefined ? ` --limit ${was.limit}` : ''}, not ${f.data !== undefined ? `--data ${f.data}` : ''}${limitFlag !== undefined ? ` --limit ${limitFlag}` : ''}; resume it without these flags, or start a new run (another --out)`);
    }
  }
  const dataSpec = f.data ?? recorded?.data?.spec ?? 'fashion-mnist';
  const limit = limitFlag ?? recorded?.data?.limit;
  const progress = progressPrinter(process.stderr, quiet);
  let data = await loadData(dataSpec);
  if (limit !== undefined) {
    data = { ...data, train: take(data.train, limit), ...(data.test ? { test: take(data.test, limit) } : {}) };
  }
  // Not models/: a default there replaced the bundled model (and its manifest) with whatever a
  // short or foreign-data run produced; runs/train/ under the working directory instead.
  const out = f.out ?? defaultOut(arch, dataSpec);
  if (!out.endsWith('.onnx')) throw new TtaqError('CLI_USAGE', `--out '${out}' must end in .onnx`);
  const ckptPath = f.checkpoint ?? out.replace(/\.onnx$/, '.ckpt');
  prepareOutputFile(out, '--out');
  prepareOutputFile(ckptPath, '--checkpoint');

  let config: TrainConfig;
  if (recorded) {
    config = recorded;
    // the checkpoint's settings win: say which flags of this call are not used
    for (const note of ignoredFlags(f, config)) process.stderr.write(`note: ${note}\n`);
  } else {
    const measured = dataSpec === 'fashion-mnist' ? { mean: [FMNIST_MEAN], std: [FMNIST_STD] } : measureNorm(data.train);
    const pad = int(f.pad, 'pad', 2);
    config = {
      ...DEFAULT_CONFIG, arch, schedule,
      seed: int(f.seed, 'seed', 0), epochs: int(f.epochs, 'epochs', 24), batchSize: int(f.batch, 'batch', 128),
      lr: num(f.lr, 'lr', 0.1), momentum: num(f.momentum, 'momentum', 0.9), nesterov: Boolean(f.nesterov), weightDecay: num(f.wd, 'wd', 5e-4),
      warmupEpochs: num(f.warmup, 'warmup', 0),
      augment: pad === 0 && f['no-flip'] ? null : { pad, flip: !f['no-flip'] },
      mean: list(f.mean, 'mean') ?? measured.mean, std: stdFlag ?? measured.std,
      numClasses: data.labels.length, channels: data.train.channels, height: data.train.height, width: data.train.width,
      data: { spec: dataSpec, ...(limit !== undefined ? { limit } : {}) },
    };
  }
  const again = `ttaq train --data ${dataSpec}${limit !== undefined ? ` --limit ${limit}` : ''} --out ${out}${f.checkpoint ? ` --checkpoint ${ckptPath}` : ''} --resume ${ckptPath}`;
  const trainer = await Trainer.create(config, data, { onProgress: progress, session, workers });
  let exported: { model: string; manifest: string; sha256: string } | undefined;
  // released on every path: a failed step must not leave the slices' worker threads holding the process
  try {
    if (resumed) trainer.restore(resumed, f.resume);
    const log = (s: string): void => { if (!quiet) process.stderr.write(s + '\n'); };
    log(`${config.arch}: ${trainer.net.params.length} parameter tensors, ${trainer.stepsPerEpoch} steps/epoch, epochs ${trainer.epoch + 1}..${config.epochs}` + (resumed ? ` (resumed from ${f.resume})` : ''));
    const maxEpochs = f['max-epochs'] === undefined ? undefined : int(f['max-epochs'], 'max-epochs', 1);
    // Ctrl-C: the checkpoint of the last finished epoch is on disk (written whole); say how to go on
    const onInterrupt = (): void => {
      process.stderr.write(`\nttaq train: interrupted${trainer.epoch > 0 ? `; continue from the last finished epoch with: ${again}` : ' before the first epoch ended (no checkpoint yet)'}\n`);
      process.exit(130);
    };
    process.once('SIGINT', onInterrupt);
    try {
      await runTraining(trainer, {
        checkpointPath: ckptPath,
        ...(maxEpochs !== undefined ? { maxEpochs } : {}),
        onEpoch: (e) => log(`epoch ${e.epoch}/${config.epochs}: train loss ${e.trainLoss.toFixed(4)} acc ${(100 * e.trainAccuracy).toFixed(2)}%` +
          (e.testAccuracy !== undefined ? `, test loss ${e.testLoss!.toFixed(4)} acc ${(100 * e.testAccuracy).toFixed(2)}%` : '') +
          `, ${e.imagesPerSec.toFixed(0)} img/s, ${e.seconds.toFixed(0)} s, ${(100 * (1 - e.runtimeShare)).toFixed(1)}% outside onnxruntime`),
      });
    } finally {
      process.off('SIGINT', onInterrupt);
    }
    const last = trainer.history.at(-1);
    const done = trainer.epoch >= config.epochs;
    if (done) {
      const command = reproduce(config, dataSpec, out, limit);
      const { manifest, manifestPath } = await exportModel(out, trainer.inferenceModel(), {
        name: basename(out, '.onnx'), labels: data.labels, channels: config.channels as 1 | 3, height: config.height, width: config.width,
        mean: config.mean, std: config.std, bnNodes: trainer.net.bns.map((b) => b.node), command, dataset: data.name,
        metrics: {
          ...(last?.testAccuracy !== undefined ? { testAccuracy: last.testAccuracy, testLoss: last.testLoss! } : {}),
          trainAccuracy: last?.trainAccuracy ?? 0, trainLoss: last?.trainLoss ?? 0, epochs: trainer.epoch,
          trainSeconds: trainer.history.reduce((s, e) => s + e.seconds, 0),
          imagesPerSec: trainer.history.reduce((s, e) => s + e.imagesPerSec, 0) / Math.max(1, trainer.history.length),
          trainImages: data.train.count, testImages: data.test?.count ?? 0,
        },
      });
      exported = { model: out, manifest: manifestPath, sha256: manifest.sha256 };
      log(`wrote ${out} and ${manifestPath}`);
    } else {
      log(`stopped after epoch ${trainer.epoch}/${config.epochs}; continue with: ${again}`);
    }
  } finally {
    await trainer.release();
  }
  if (f.json) printJson({ arch: config.arch, epoch: trainer.epoch, epochs: config.epochs, checkpoint: ckptPath, history: trainer.history, ...(exported ? { exported } : {}) });
  return 0;
}

/** The command line that reproduces the run from scratch. */
function reproduce(c: TrainConfig, data: string, out: string, limit: number | undefined): string {
  const parts = [
    'ttaq train', `--arch ${c.arch}`, `--data ${data}`, `--epochs ${c.epochs}`, `--batch ${c.batchSize}`, `--lr ${c.lr}`,
    `--momentum ${c.momentum}`, `--wd ${c.weightDecay}`, `--schedule ${c.schedule}`, `--seed ${c.seed}`,
    `--pad ${c.augment?.pad ?? 0}`, `--mean ${c.mean.join(',')}`, `--std ${c.std.join(',')}`, `--out ${out}`,
  ];
  if (c.nesterov) parts.push('--nesterov');
  if (c.warmupEpochs) parts.push(`--warmup ${c.warmupEpochs}`);
  if (!c.augment?.flip) parts.push('--no-flip');
  if (limit !== undefined) parts.push(`--limit ${limit}`);
  return parts.join(' ');
}
