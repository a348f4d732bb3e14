// Runs a trainer to the end of its schedule, checkpointing after every epoch.
import type { EpochRecord, Trainer } from './trainer.ts';
import { saveCheckpoint } from './checkpoint.ts';

export interface RunOptions {
  /** Written (atomically) after every epoch. */
  readonly checkpointPath?: string;
  readonly onEpoch?: (e: EpochRecord) => void;
  /** Stop after this many epochs in this call (the schedule still spans all epochs). */
  readonly maxEpochs?: number;
}

export async function runTraining(t: Trainer, o: RunOptions = {}): Promise<readonly EpochRecord[]> {
  let ran = 0;
  while (t.epoch < t.config.epochs && (o.maxEpochs === undefined || ran < o.maxEpochs)) {
    const rec = await t.trainEpoch();
    ran++;
    if (o.checkpointPath) await saveCheckpoint(o.checkpointPath, t.checkpoint());
    o.onEpoch?.(rec);
  }
  return t.history;
}
