// tools/lib/train-resume.ts: what a resumed run ignores or refuses, the data check, and the
// command lines it prints, on hand-made configs and checkpoints (no training).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isTtaqError } from '../../sdk/errors/index.ts';
import { DEFAULT_CONFIG, type Checkpoint, type TrainConfig } from '../../sdk/train/index.ts';
import { checkResumeData, continueCommand, ignoredFlags, recordedData, refuseOtherRun, reproduceCommand, resumeWorkers, shellArg } from '../../tools/lib/train-resume.ts';

const run = { data: 'data/pets', limit: 500, trainImages: 500, testImages: 200, out: 'runs/p.onnx', checkpoint: 'runs/p.ckpt' };
const config: TrainConfig = {
  ...DEFAULT_CONFIG, arch: 'mobilenet', epochs: 10, batchSize: 64, numClasses: 3, channels: 3, height: 32, width: 32,
  mean: [0.5, 0.4, 0.3], std: [0.25, 0.25, 0.2], run,
};
const ck = (epoch: number, step: number): Checkpoint => ({ meta: { epoch, step, config }, tensors: new Map() });

test('flags that differ from the checkpoint\'s config are named with the value used; equal ones, however spelled, are not', () => {
  assert.deepEqual(ignoredFlags('p.ckpt', { epochs: 10, lr: 0.1, weightDecay: 5e-4, mean: [0.5, 0.4, 0.3] }, config), []);
  assert.deepEqual(ignoredFlags('p.ckpt', { epochs: 30, batchSize: 128, std: [0.3, 0.3, 0.3], pad: 0, nesterov: true, noFlip: true, schedule: 'step' }, config), [
    '--epochs 30 is ignored: the run in p.ckpt keeps --epochs 10',
    '--batch 128 is ignored: the run in p.ckpt keeps --batch 64',
    '--schedule step is ignored: the run in p.ckpt keeps --schedule cosine',
    '--pad 0 is ignored: the run in p.ckpt keeps --pad 2',
    '--std 0.3,0.3,0.3 is ignored: the run in p.ckpt keeps --std 0.25,0.25,0.2',
    '--nesterov is ignored: the run in p.ckpt keeps plain momentum',
    '--no-flip is ignored: the run in p.ckpt keeps its random flips',
  ]);
});

test('another --arch, --data or --limit is refused; the same folder spelled otherwise is not', () => {
  refuseOtherRun('p.ckpt', config, { arch: 'mobilenet', data: './data/pets/', limit: 500 });
  refuseOtherRun('p.ckpt', config, {});
  assert.throws(() => refuseOtherRun('p.ckpt', config, { data: 'fashion-mnist', limit: 64 }), (e) => isTtaqError(e) && e.code === 'CLI_USAGE' &&
    e.message === "--resume p.ckpt continues a run of --arch mobilenet --data data/pets --limit 500, not --data fashion-mnist --limit 64; resume without these flags (the checkpoint's are used), or start a new run with another --out");
  // a checkpoint without a record: only the architecture is known
  const { run: _, ...old } = config;
  refuseOtherRun('p.ckpt', old, { data: 'elsewhere', limit: 3 });
  assert.throws(() => refuseOtherRun('p.ckpt', old, { arch: 'resnet20' }), (e) => isTtaqError(e) && /continues a run of --arch mobilenet, not --arch resnet20; resume without it/.test(e.message));
});

test('--workers on resume: the recorded count unless the call gives another, which is named; 1 for a checkpoint without it', () => {
  const two: TrainConfig = { ...config, run: { ...run, workers: 2 } };
  assert.deepEqual(resumeWorkers('p.ckpt', undefined, two), { workers: 2 });
  assert.deepEqual(resumeWorkers('p.ckpt', 2, two), { workers: 2 });
  assert.deepEqual(resumeWorkers('p.ckpt', 1, two), {
    workers: 1,
    note: "--workers 1 is used: the run in p.ckpt had --workers 2; BN statistics are per slice, so the remaining epochs differ from the run's own (resume without --workers to keep 2)",
  });
  // recorded before the count was: the call's flag or 1, nothing to name
  assert.deepEqual(resumeWorkers('p.ckpt', undefined, config), { workers: 1 });
  assert.deepEqual(resumeWorkers('p.ckpt', 3, config), { workers: 3 });
  const { run: _, ...old } = config;
  assert.deepEqual(resumeWorkers('p.ckpt', 2, old), { workers: 2 });
  // a new run
  assert.deepEqual(resumeWorkers(undefined, undefined, undefined), { workers: 1 });
  assert.deepEqual(resumeWorkers(undefined, 4, undefined), { workers: 4 });
});

test('the recorded data: the record, else none', () => {
  assert.deepEqual(recordedData(config), { data: 'data/pets', limit: 500 });
  const { run: _, ...old } = config;
  assert.equal(recordedData(old), undefined);
});

test('the data must give the recorded images and the steps per epoch the run made', () => {
  checkResumeData('p.ckpt', ck(3, 21), config, { data: 'data/pets', limit: 500, trainImages: 500, testImages: 200 });
  assert.throws(() => checkResumeData('p.ckpt', ck(3, 21), config, { data: 'data/pets', limit: 500, trainImages: 480, testImages: 200 }), (e) => isTtaqError(e) && e.code === 'STATE_MISMATCH' &&
    e.message === 'p.ckpt: the run trained on 500 training and 200 test images, but --data data/pets --limit 500 now gives 480 and 200; restore that data, or start a new run with another --out');
  const { run: _, ...old } = config;
  // 448..511 images give 7 steps of 64
  checkResumeData('p.ckpt', ck(3, 21), old, { data: 'x', trainImages: 511, testImages: 0 });
  assert.throws(() => checkResumeData('p.ckpt', ck(3, 21), old, { data: 'x', trainImages: 60000, testImages: 10000 }), (e) => isTtaqError(e) && e.code === 'STATE_MISMATCH' &&
    e.message === 'p.ckpt: the run made 7 steps per epoch, but --data x gives 60000 training images, 937 steps of --batch 64; pass the --data and --limit the run started with (448 to 511 training images)');
});

test('the continue and reproduce commands are complete and quoted for a shell', () => {
  assert.equal(shellArg('runs/a-1.onnx'), 'runs/a-1.onnx');
  assert.equal(shellArg("my pets/it's"), `'my pets/it'\\''s'`);
  assert.equal(continueCommand({ data: 'fashion-mnist', limit: 512, out: 'tr/r.onnx', checkpoint: 'tr/r.ckpt', resume: 'tr/r.ckpt' }),
    'ttaq train --data fashion-mnist --limit 512 --out tr/r.onnx --resume tr/r.ckpt');
  assert.equal(continueCommand({ data: 'my pets', out: 'tr/r.onnx', checkpoint: 'ck/r.ckpt', resume: 'ck/r.ckpt', workers: 2, threads: 1 }),
    "ttaq train --data 'my pets' --out tr/r.onnx --checkpoint ck/r.ckpt --resume ck/r.ckpt --workers 2 --threads 1");
  assert.equal(reproduceCommand(config, 'data/pets', 500, 'runs/p.onnx'),
    'ttaq train --arch mobilenet --data data/pets --limit 500 --epochs 10 --batch 64 --lr 0.1 --momentum 0.9 --wd 0.0005 --schedule cosine --seed 0 --pad 2 --mean 0.5,0.4,0.3 --std 0.25,0.25,0.2 --out runs/p.onnx');
});
