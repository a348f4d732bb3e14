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
import { intFlag, parseFlags, prepareOutputFile, printJson } from './lib/cli.ts';
import { progressPrinter } from './lib/progress.ts';
import { checkResumeData, continueCommand, defaultCheckpoint, ignoredFlags, recordedData, refuseOtherRun, reproduceCommand, resumeWorkers, type TrainFlags } from './lib/train-resume.ts';

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
  --resume P       continue the run saved in checkpoint P: its config, data, --limit, --out,
                   --checkpoint and --workers are used, so '--resume P' alone goes on with the same
                   run (a new --out takes a checkpoint beside it); flags of the config that differ
                   are named and ignored, another --workers is named and used; another --arch,
                   --data or --limit is refused (another run)
  --max-epochs N   stop after N epochs in this call (resume later); export only when done
  --limit N        use only the first N training and test images
  --threads T      onnxruntime intra-op threads, at least 1 (default: one per core; per slice
                   with --workers)
  --workers K      each batch in K slices run at once on K threads, BN statistics per slice
                   (default 1, or the resumed run's)
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

/** The training flags of the call, each checked: a bad value is refused even where --resume would ignore it. */
function trainFlags(f: Record<string, string | boolean | undefined>): TrainFlags {
  const s = (k: string): string | undefined => f[k] as string | undefined;
  const arch = s('arch');
  if (arch !== undefined && !(ARCHS as readonly string[]).includes(arch)) throw new TtaqError('CLI_USAGE', `--arch '${arch}' is not one of ${ARCHS.join(', ')}`);
  const schedule = s('schedule');
  if (schedule !== undefined && !['cosine', 'step', 'constant'].includes(schedule)) throw new TtaqError('CLI_USAGE', `--schedule '${schedule}' is not one of cosine, step, constant`);
  const std = list(s('std'), 'std');
  // The model sees (pixel / 255 - mean) / std: a std of 0 gives infinities and a NaN loss at the
  // first step, a negative one a manifest no reader accepts (`ttaq manifest` refuses both).
  if (std?.some((x) => !(x > 0))) {
    throw new TtaqError('CLI_USAGE', `--std ${s('std')}: every value must be > 0 (the model sees (pixel / 255 - mean) / std); leave --std out to measure it from the training images`);
  }
  const opt = (k: string, parse: (v: string | undefined, key: string, dflt: number) => number): number | undefined => (s(k) === undefined ? undefined : parse(s(k), k, 0));
  return {
    arch, schedule, std, mean: list(s('mean'), 'mean'),
    epochs: opt('epochs', int), batchSize: opt('batch', int), lr: opt('lr', num), momentum: opt('momentum', num),
    weightDecay: opt('wd', num), warmupEpochs: opt('warmup', num), pad: opt('pad', int), seed: opt('seed', int),
    nesterov: f.nesterov === true ? true : undefined, noFlip: f['no-flip'] === true ? true : undefined,
  };
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
  const given = trainFlags(f);
  // 0 threads is no thread to run an operator on (onnxruntime would take it for 'its default')
  const threads = intFlag(f.threads, 'threads', 1);
  // as `ttaq quantize --workers`: a batch in 0 slices is no batch at all
  const workersFlag = intFlag(f.workers, 'workers', 1);
  // Idle workers sleep (sdk/runtime's default): a long training run shares the machine with other
  // jobs, and spinning threads starved by the scheduler cost far more than the wake-ups.
  const sessionFor = (workers: number) => ({ intraOpThreads: threads ?? (workers > 1 ? threadsPerSlice(workers) : undefined) });
  const limitFlag = f.limit === undefined ? undefined : int(f.limit, 'limit', 0);
  // 0 epochs in this call would write no checkpoint for the hint it prints to resume from
  const maxEpochs = intFlag(f['max-epochs'], 'max-epochs', 1);
  const quiet = Boolean(f.json);

  if (f.bench) {
    const arch = (given.arch ?? 'resnet20') as Arch;
    const workers = workersFlag ?? 1;
    const r = await benchStep({ arch, batch: given.batchSize ?? 128, steps: 10, session: sessionFor(workers), workers });
    if (f.json) printJson(r);
    else {
      process.stdout.write(`${arch} training step, batch ${r.batch}: ${r.imagesPerSec.toFixed(1)} images/s, ${r.msPerStep.toFixed(1)} ms/step ` +
        `(${r.runtimeMsPerStep.toFixed(1)} ms in onnxruntime, ${(100 * r.outsideShare).toFixed(1)}% outside); ` +
        `graph ${r.forwardNodes} forward / ${r.gradientNodes} gradient nodes, built in ${r.buildSeconds.toFixed(1)} s\n`);
    }
    return 0;
  }

  // A resumed run is the checkpoint's run: its config, and (where recorded) its data and files.
  const resumed = f.resume ? await loadCheckpoint(f.resume) : undefined;
  const recorded = resumed ? configOfCheckpoint(resumed, f.resume) : undefined;
  if (recorded) refuseOtherRun(f.resume!, recorded, { arch: given.arch, data: f.data, limit: limitFlag });
  const rec = recorded?.run;
  // the run's own slice count unless this call gives another (named: the numbers change)
  const { workers, note: workersNote } = resumeWorkers(f.resume, workersFlag, recorded);
  const session = sessionFor(workers);
  const was = recorded ? recordedData(recorded) : undefined;
  const dataSpec = was?.data ?? f.data ?? 'fashion-mnist';
  const limit = was ? was.limit : limitFlag;
  const progress = progressPrinter(process.stderr, quiet);
  let data = await loadData(dataSpec);
  if (limit !== undefined) {
    data = { ...data, train: take(data.train, limit), ...(data.test ? { test: take(data.test, limit) } : {}) };
  }
  const arch = recorded?.arch ?? (given.arch as Arch | undefined) ?? 'resnet20';
  // Not models/: a default there replaced the bundled model (and its manifest) with whatever a
  // short or foreign-data run produced; runs/train/ under the working directory instead.
  const out = f.out ?? rec?.out ?? defaultOut(arch, dataSpec);
  if (!out.endsWith('.onnx')) throw new TtaqError('CLI_USAGE', `--out '${out}' must end in .onnx`);
  // a new --out takes its own checkpoint beside it; without one the run goes on in its recorded file
  const ckptPath = f.checkpoint ?? (f.out === undefined ? rec?.checkpoint : undefined) ?? defaultCheckpoint(out);
  prepareOutputFile(out, '--out');
  prepareOutputFile(ckptPath, '--checkpoint');
  const record = { data: dataSpec, ...(limit !== undefined ? { limit } : {}), trainImages: data.train.count, testImages: data.test?.count ?? 0, out, checkpoint: ckptPath, workers };

  let config: TrainConfig;
  if (recorded) {
    checkResumeData(f.resume!, resumed!, recorded, record);
    // the checkpoint's settings win (as --help says): name each flag of this call that is not used
    for (const w of [...ignoredFlags(f.resume!, given, recorded), ...(workersNote ? [workersNote] : [])]) process.stderr.write(`warning: ${w}\n`);
    config = { ...recorded, run: record };
  } else {
    const measured = dataSpec === 'fashion-mnist' ? { mean: [FMNIST_MEAN], std: [FMNIST_STD] } : measureNorm(data.train);
    const pad = given.pad ?? 2;
    config = {
      ...DEFAULT_CONFIG, arch, schedule: (given.schedule ?? 'cosine') as ScheduleKind,
      seed: given.seed ?? 0, epochs: given.epochs ?? 24, batchSize: given.batchSize ?? 128,
      lr: given.lr ?? 0.1, momentum: given.momentum ?? 0.9, nesterov: Boolean(given.nesterov), weightDecay: given.weightDecay ?? 5e-4,
      warmupEpochs: given.warmupEpochs ?? 0,
      augment: pad === 0 && given.noFlip ? null : { pad, flip: !given.noFlip },
      mean: given.mean ?? measured.mean, std: given.std ?? measured.std,
      numClasses: data.labels.length, channels: data.train.channels, height: data.train.height, width: data.train.width,
      run: record,
    };
  }

  // The newest checkpoint of this run on disk (written whole after each epoch), for the hints.
  let last = resumed ? { path: f.resume!, epoch: (resumed.meta as { epoch: number }).epoch } : undefined;
  const continueFrom = (path: string): string => continueCommand({ data: dataSpec, limit, out, checkpoint: ckptPath, resume: path, workers: workersFlag, threads });
  // Ctrl-C: say how to go on from the last checkpoint (graph building and epochs take long)
  const onInterrupt = (): void => {
    process.stderr.write(`\nttaq train: interrupted; ${last
      ? `continue from the checkpoint of epoch ${last.epoch} with: ${continueFrom(last.path)}`
      : 'no epoch finished, so there is no checkpoint to resume from: run the same command again to start over'}\n`);
    process.exit(130);
  };
  process.once('SIGINT', onInterrupt);
  try {
    const trainer = await Trainer.create(config, data, { onProgress: progress, session, workers });
    let exported: { model: string; manifest: string; sha256: string } | undefined;
    // released on every path: a failed step must not leave the slices' worker threads holding the process
    try {
      if (resumed) trainer.restore(resumed, f.resume);
      const log = (s: string): void => { if (!quiet) process.stderr.write(s + '\n'); };
      log(`${config.arch}: ${trainer.net.params.length} parameter tensors, ${trainer.stepsPerEpoch} steps/epoch, epochs ${trainer.epoch + 1}..${config.epochs}` + (resumed ? ` (resumed from ${f.resume})` : ''));
      await runTraining(trainer, {
        checkpointPath: ckptPath,
        ...(maxEpochs !== undefined ? { maxEpochs } : {}),
        onEpoch: (e) => {
          last = { path: ckptPath, epoch: e.epoch };
          log(`epoch ${e.epoch}/${config.epochs}: train loss ${e.trainLoss.toFixed(4)} acc ${(100 * e.trainAccuracy).toFixed(2)}%` +
            (e.testAccuracy !== undefined ? `, test loss ${e.testLoss!.toFixed(4)} acc ${(100 * e.testAccuracy).toFixed(2)}%` : '') +
            `, ${e.imagesPerSec.toFixed(0)} img/s, ${e.seconds.toFixed(0)} s, ${(100 * (1 - e.runtimeShare)).toFixed(1)}% outside onnxruntime`);
        },
      });
      const final = trainer.history.at(-1);
      if (trainer.epoch >= config.epochs) {
        // provenance of the run that was made: the checkpoint's config and data, not this call's flags
        const command = reproduceCommand(config, dataSpec, limit, out);
        const { manifest, manifestPath } = await exportModel(out, trainer.inferenceModel(), {
          name: basename(out, '.onnx'), labels: data.labels, channels: config.channels as 1 | 3, height: config.height, width: config.width,
          mean: config.mean, std: config.std, bnNodes: trainer.net.bns.map((b) => b.node), command, dataset: data.name,
          metrics: {
            ...(final?.testAccuracy !== undefined ? { testAccuracy: final.testAccuracy, testLoss: final.testLoss! } : {}),
            trainAccuracy: final?.trainAccuracy ?? 0, trainLoss: final?.trainLoss ?? 0, epochs: trainer.epoch,
            trainSeconds: trainer.history.reduce((s, e) => s + e.seconds, 0),
            imagesPerSec: trainer.history.reduce((s, e) => s + e.imagesPerSec, 0) / Math.max(1, trainer.history.length),
            trainImages: data.train.count, testImages: data.test?.count ?? 0,
          },
        });
        exported = { model: out, manifest: manifestPath, sha256: manifest.sha256 };
        log(`wrote ${out} and ${manifestPath}`);
      } else {
        log(`stopped after epoch ${trainer.epoch}/${config.epochs}; continue with: ${continueFrom(last?.path ?? ckptPath)}`);
      }
    } finally {
      await trainer.release();
    }
    if (f.json) printJson({ arch: config.arch, epoch: trainer.epoch, epochs: config.epochs, checkpoint: ckptPath, history: trainer.history, ...(exported ? { exported } : {}) });
  } finally {
    process.off('SIGINT', onInterrupt);
  }
  return 0;
}
