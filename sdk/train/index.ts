// sdk/train: the training loop for the bundled networks (sdk/nn), with seeded augmentation,
// SGD + schedule, BN running statistics, per-epoch evaluation, exact checkpoint/resume, ONNX +
// manifest export and a step benchmark.
//
//   const t = await Trainer.create({ ...DEFAULT_CONFIG, arch: 'resnet20', numClasses: 10,
//     channels: 1, height: 28, width: 28, mean: [0.286], std: [0.353] }, { train, test });
//   const r = await train(t, { checkpointPath: 'run.ckpt', onEpoch: (e) => console.log(e) });
//   await exportModel('model.onnx', t.inferenceModel(), { ...info, bnNodes: t.net.bns.map((b) => b.node) });
export { Trainer, DEFAULT_CONFIG, configOfCheckpoint, netSpecOf, type TrainConfig, type TrainRunRecord, type EpochRecord, type TrainerOptions } from './trainer.ts';
export { runTraining, type RunOptions } from './run.ts';
export { benchStep, type BenchResult } from './bench.ts';
export { checkImageSet, fillBatch, limitImageSet, normTables, type Augment, type ImageSet } from './data.ts';
export { decodeCheckpoint, encodeCheckpoint, loadCheckpoint, saveCheckpoint, type Checkpoint, type CheckpointTensor } from './checkpoint.ts';
export { exportModel, manifestFor, type ExportInfo } from './export.ts';
export { lrAt, type ScheduleKind, type ScheduleSpec } from './schedule.ts';
