// `ttaq train --resume`: what a checkpoint's run keeps of its own and which flags of the call it
// therefore ignores, refuses or uses instead (--workers), whether the data still gives the images
// the run trained on, and the command lines that continue a run (printed on a stop or Ctrl-C) or
// reproduce it (manifest).
import { resolve } from 'node:path';
import { TtaqError } from '../../sdk/errors/index.ts';
import type { Checkpoint, TrainConfig } from '../../sdk/train/index.ts';

/** The training flags of one call, parsed and checked; a field is absent when its flag was not given. */
export interface TrainFlags {
  readonly arch?: string;
  readonly epochs?: number;
  readonly batchSize?: number;
  readonly lr?: number;
  readonly momentum?: number;
  readonly nesterov?: boolean;
  readonly weightDecay?: number;
  readonly schedule?: string;
  readonly warmupEpochs?: number;
  readonly pad?: number;
  readonly noFlip?: boolean;
  readonly seed?: number;
  readonly mean?: readonly number[];
  readonly std?: readonly number[];
}

/** The checkpoint written beside a model when --checkpoint is not given. */
export const defaultCheckpoint = (out: string): string => out.replace(/\.onnx$/, '.ckpt');

/** The same data: one spelling, or two spellings of one folder. */
function sameData(a: string, b: string): boolean {
  return a === b || (a !== 'fashion-mnist' && b !== 'fashion-mnist' && resolve(a) === resolve(b));
}

/** The data a checkpoint's run trained on (its record); undefined for checkpoints written before
 * the record: they resume on the call's --data and --limit, checked by their steps per epoch. */
export function recordedData(c: TrainConfig): { data: string; limit?: number } | undefined {
  return c.run ? { data: c.run.data, ...(c.run.limit !== undefined ? { limit: c.run.limit } : {}) } : undefined;
}

const dataArgs = (data: string, limit: number | undefined): string => `--data ${shellArg(data)}${limit !== undefined ? ` --limit ${limit}` : ''}`;

/**
 * Refuses (CLI_USAGE, exit 2) an --arch, --data or --limit that differs from the checkpoint's run.
 * These are not ignored with a warning like the other flags: they name what the result is (which
 * network, trained on which images), so someone who gives them means another run — most likely
 * they picked the wrong checkpoint — and ignoring them would spend the whole run making a model
 * they did not ask for. The checks of --data and --limit need a checkpoint that records them
 * (`recordedData`).
 */
export function refuseOtherRun(source: string, c: TrainConfig, call: { arch?: string; data?: string; limit?: number }): void {
  const other: string[] = [];
  const rec = recordedData(c);
  if (call.arch !== undefined && call.arch !== c.arch) other.push(`--arch ${call.arch}`);
  if (rec && call.data !== undefined && !sameData(call.data, rec.data)) other.push(`--data ${shellArg(call.data)}`);
  if (rec && call.limit !== undefined && call.limit !== rec.limit) other.push(`--limit ${call.limit}`);
  if (other.length === 0) return;
  const was = `--arch ${c.arch}${rec ? ` ${dataArgs(rec.data, rec.limit)}` : ''}`;
  throw new TtaqError('CLI_USAGE', `--resume ${source} continues a run of ${was}, not ${other.join(' ')}; resume without ${other.length > 1 ? 'these flags' : 'it'} (the checkpoint's are used), or start a new run with another --out`);
}

/**
 * Warnings for the flags of the call that a resumed run ignores because the checkpoint's config is
 * kept (a changed --epochs or --lr would bend the schedule the first epochs followed): each names
 * the flag and the value used instead. Flags that agree with the checkpoint are not mentioned.
 */
export function ignoredFlags(source: string, given: TrainFlags, c: TrainConfig): string[] {
  const flip = c.augment?.flip ?? false;
  const rows: [flag: string, given: number | string | readonly number[] | undefined, used: number | string | readonly number[]][] = [
    ['epochs', given.epochs, c.epochs], ['batch', given.batchSize, c.batchSize], ['lr', given.lr, c.lr],
    ['momentum', given.momentum, c.momentum], ['wd', given.weightDecay, c.weightDecay], ['schedule', given.schedule, c.schedule],
    ['warmup', given.warmupEpochs, c.warmupEpochs], ['pad', given.pad, c.augment?.pad ?? 0], ['seed', given.seed, c.seed],
    ['mean', given.mean, c.mean], ['std', given.std, c.std],
  ];
  const show = (v: number | string | readonly number[]): string => (Array.isArray(v) ? v.join(',') : String(v));
  const why = `the run in ${source} keeps`;
  const out = rows.filter(([, g, used]) => g !== undefined && show(g) !== show(used))
    .map(([flag, g, used]) => `--${flag} ${show(g!)} is ignored: ${why} --${flag} ${show(used)}`);
  if (given.nesterov && !c.nesterov) out.push(`--nesterov is ignored: ${why} plain momentum`);
  if (given.noFlip && flip) out.push(`--no-flip is ignored: ${why} its random flips`);
  return out;
}

/**
 * The slice count (--workers) a call runs with: the flag when given, else the count the resumed
 * run recorded, else 1. Slices change the BN statistics (measured per slice), so a flag that
 * differs from the recorded count is used and named in `note` (the run goes on with other
 * numbers); a checkpoint written before the count was recorded resumes with the flag or 1.
 */
export function resumeWorkers(source: string | undefined, flag: number | undefined, c: TrainConfig | undefined): { workers: number; note?: string } {
  const was = c?.run?.workers;
  const workers = flag ?? was ?? 1;
  if (source === undefined || flag === undefined || was === undefined || flag === was) return { workers };
  return { workers, note: `--workers ${flag} is used: the run in ${source} had --workers ${was}; BN statistics are per slice, so the remaining epochs differ from the run's own (resume without --workers to keep ${was})` };
}

/**
 * Checks, before the training graph is built, that the loaded data gives the images the run in
 * checkpoint `ck` trained on: the recorded counts where the checkpoint has them, and for every
 * checkpoint its steps per epoch (step = epoch x steps per epoch, as checkpoints are written after
 * whole epochs). Other data would change the steps per epoch and jump the learning-rate schedule.
 */
export function checkResumeData(source: string, ck: Checkpoint, c: TrainConfig, now: { data: string; limit?: number; trainImages: number; testImages: number }): void {
  const given = dataArgs(now.data, now.limit);
  const r = c.run;
  if (r && (r.trainImages !== now.trainImages || r.testImages !== now.testImages)) {
    throw new TtaqError('STATE_MISMATCH', `${source}: the run trained on ${r.trainImages} training and ${r.testImages} test images, but ${given} now gives ${now.trainImages} and ${now.testImages}; restore that data, or start a new run with another --out`);
  }
  const meta = ck.meta as { epoch?: number; step?: number };
  const B = c.batchSize;
  const steps = Math.floor(now.trainImages / B);
  if (meta.epoch && meta.step !== undefined && meta.step !== meta.epoch * steps) {
    const was = meta.step / meta.epoch;
    throw new TtaqError('STATE_MISMATCH', `${source}: the run made ${was} steps per epoch, but ${given} gives ${now.trainImages} training images, ${steps} steps of --batch ${B}; pass the --data and --limit the run started with (${was * B} to ${(was + 1) * B - 1} training images)`);
  }
}

/** A word for a POSIX shell: as it is when that is safe, else single-quoted. */
export function shellArg(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * The command that continues a run from checkpoint `resume`: complete (data, --limit, files, the
 * slicing), so it continues the same run even where the checkpoint does not record them.
 */
export function continueCommand(o: { data: string; limit?: number; out: string; checkpoint: string; resume: string; workers?: number; threads?: number }): string {
  return [
    `ttaq train ${dataArgs(o.data, o.limit)} --out ${shellArg(o.out)}`,
    o.checkpoint !== defaultCheckpoint(o.out) ? ` --checkpoint ${shellArg(o.checkpoint)}` : '',
    ` --resume ${shellArg(o.resume)}`,
    // slices change the BN statistics (per slice), so a different count is another run's numbers
    o.workers !== undefined ? ` --workers ${o.workers}` : '',
    o.threads !== undefined ? ` --threads ${o.threads}` : '',
  ].join('');
}

/** The command line that reproduces the run from scratch: the run's config and data, whatever the last call's flags. */
export function reproduceCommand(c: TrainConfig, data: string, limit: number | undefined, out: string): string {
  const parts = [
    'ttaq train', `--arch ${c.arch}`, dataArgs(data, limit), `--epochs ${c.epochs}`, `--batch ${c.batchSize}`, `--lr ${c.lr}`,
    `--momentum ${c.momentum}`, `--wd ${c.weightDecay}`, `--schedule ${c.schedule}`, `--seed ${c.seed}`,
    `--pad ${c.augment?.pad ?? 0}`, `--mean ${c.mean.join(',')}`, `--std ${c.std.join(',')}`, `--out ${shellArg(out)}`,
  ];
  if (c.nesterov) parts.push('--nesterov');
  if (c.warmupEpochs) parts.push(`--warmup ${c.warmupEpochs}`);
  if (!c.augment?.flip) parts.push('--no-flip');
  return parts.join(' ');
}
