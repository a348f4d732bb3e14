import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { FrameBatch, InferOutput, RunnerInfo, SourceStats } from '../../device/ports.ts';
import { AgentStats } from '../../device/stats.ts';

const info = { modelName: 'm.onnx', modelSha256: 'a'.repeat(64), provider: 'cpu', classes: 3 } as RunnerInfo;
const source = (dropped: number): SourceStats => ({ read: 100, delivered: 100 - dropped, dropped, skipped: 0, reconnects: 0, failures: 0, connected: true });

function batchOf(predictions: number[], capturedAt: number): { batch: FrameBatch; out: InferOutput } {
  const n = predictions.length;
  return {
    batch: { data: new Float32Array(n), dims: [n, 1, 1, 1], frames: predictions.map((_, seq) => ({ seq, capturedAt })) },
    out: { predictions: Int32Array.from(predictions), confidence: new Float32Array(n).fill(0.5), meanEntropy: 0.25, entropy: new Float32Array(n) },
  };
}

test('a report sums its own interval and the next one starts from zero', () => {
  const s = new AgentStats();
  s.setClasses(3);
  const a = batchOf([0, 2, 2, 7], 1_000); // 7 is outside the classes: counted as a frame, not in the histogram
  s.recordBatch(a.batch, a.out, 5, 1_040);
  s.recordStep(2);
  s.recordStep(Number.NaN);
  s.recordStep(4);
  s.recordDrift({ score: 3, entropy: 0.2, shift: false });
  s.recordDrift({ score: 1, entropy: 0.2, shift: false });

  const first = s.takeReport({ source: source(5), info, ablPriors: [0.5, 0.25, 0.25], paused: false }, 3_000, false);
  assert.deepEqual(first.classHistogram, [1, 0, 2]);
  assert.equal(first.adaptLoss, 3, 'the NaN loss is left out of the mean');
  assert.equal(first.adaptSteps, 3);
  assert.equal(first.driftScore, 3, 'the interval maximum');
  assert.equal(first.droppedFrames, 5);
  assert.equal(first.meanConfidence, 0.5);
  assert.equal(first.latencyP50Ms, 40);
  assert.deepEqual(first.ablPriors, [0.5, 0.25, 0.25]);

  const b = batchOf([1], 4_000);
  s.recordBatch(b.batch, b.out, 5, 4_010);
  const second = s.takeReport({ source: source(7), info, ablPriors: undefined, paused: true }, 5_000, false);
  assert.deepEqual(second.classHistogram, [0, 1, 0]);
  assert.equal(second.adaptLoss, null, 'no step in this interval');
  assert.equal(second.adaptSteps, 3, 'a lifetime count');
  assert.equal(second.droppedFrames, 2, 'counted from the previous report');
  assert.equal(second.driftScore, 0);
  assert.equal(second.intervalS, 2);
  assert.equal(second.fps, 0.5);
  assert.equal('ablPriors' in second, false);
  assert.equal(s.frames, 5);
});

test('the final report leaves the interval as it was', () => {
  const s = new AgentStats();
  s.setClasses(2);
  const a = batchOf([1, 1], 0);
  s.recordBatch(a.batch, a.out, 1, 10);
  const view = { source: undefined, info: { ...info, classes: 2 }, ablPriors: undefined, paused: false };
  const last = s.takeReport(view, 1_000, true);
  assert.deepEqual(last.classHistogram, [0, 2]);
  assert.deepEqual(s.takeReport(view, 2_000, true).classHistogram, [0, 2]);
});

test('the exposition counts frames and batches and names the model', () => {
  const s = new AgentStats();
  s.setClasses(3);
  const a = batchOf([0, 1], 0);
  s.recordBatch(a.batch, a.out, 2, 5);
  s.recordBatch(a.batch, a.out, 2, 6);
  const text = s.exposition({ running: true, paused: false, uptimeS: 1, source: source(0), model: { info, step: 12 } });
  assert.match(text, /^ttaq_agent_frames_processed_total 4$/m);
  assert.match(text, /^ttaq_agent_batches_total 2$/m);
  assert.match(text, /^ttaq_agent_adaptation_step 12$/m);
  assert.match(text, /ttaq_agent_model_info\{model="m\.onnx",sha256="a{64}",provider="cpu",method="none"\} 1/);
  assert.doesNotMatch(s.exposition({ running: false, paused: false, uptimeS: 1, source: undefined, model: undefined }), /ttaq_agent_model_info/);
});
