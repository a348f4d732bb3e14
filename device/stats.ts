// The agent's numbers: lifetime counters (the Prometheus exposition on /metrics) and the sums of
// the current telemetry interval (reset by every report). Bookkeeping only: the agent decides when
// a batch, a reset or a report happens and hands this module what it needs to know.
import type { DriftReading } from './drift.ts';
import { Exposition, RateMeter, Window } from './metrics.ts';
import type { FrameBatch, InferOutput, RunnerInfo, SourceStats, TelemetryReport } from './ports.ts';

/** Sums since the last telemetry report. */
class Interval {
  frames = 0;
  entropySum = 0;
  confidenceSum = 0;
  lossSum = 0;
  lossN = 0;
  driftMax = 0;
  readonly latencyMs = new Window(1024);
  constructor(
    readonly startedAt: number,
    /** The source's dropped-frame count when the interval began. */
    readonly droppedBase: number,
    readonly histogram: number[],
  ) {}
}

/** What the exposition reads besides the counters: the agent's state at scrape time. */
export interface MetricsView {
  readonly running: boolean;
  readonly paused: boolean;
  readonly uptimeS: number;
  readonly source: SourceStats | undefined;
  readonly model: { readonly info: RunnerInfo; readonly step: number | undefined } | undefined;
}

/** What a telemetry report reads besides the counters. */
export interface ReportView {
  readonly source: SourceStats | undefined;
  readonly info: RunnerInfo;
  readonly ablPriors: ArrayLike<number> | undefined;
  readonly paused: boolean;
}

export class AgentStats {
  frames = 0;
  batches = 0;
  adaptSteps = 0;
  resets = 0;
  shifts = 0;
  checkpoints = 0;
  checkpointErrors = 0;
  reloads = 0;
  reloadFailures = 0;
  errors = 0;
  lastBatchAt = 0;
  lastEntropy = NaN;
  lastDrift: DriftReading = { score: 0, entropy: 0, shift: false };
  private readonly batchLatency = new Window(512);
  private readonly frameLatency = new Window(2048);
  private readonly fps = new RateMeter(10_000);
  private interval = new Interval(Date.now(), 0, []);

  /** A new model's class count: the interval's histogram starts over with it. */
  setClasses(classes: number): void {
    this.interval.histogram.length = 0;
    this.interval.histogram.push(...new Array<number>(classes).fill(0));
  }

  /** One batch through the model: `modelMs` its runner time, `now` the wall clock after it. */
  recordBatch(batch: FrameBatch, out: InferOutput, modelMs: number, now: number): void {
    const n = batch.dims[0];
    const iv = this.interval;
    this.frames += n;
    this.batches++;
    iv.frames += n;
    this.lastBatchAt = now;
    this.batchLatency.add(modelMs / 1000);
    this.fps.add(n, now);
    for (const f of batch.frames) {
      this.frameLatency.add((now - f.capturedAt) / 1000);
      iv.latencyMs.add(now - f.capturedAt);
    }
    for (let i = 0; i < n; i++) {
      const p = out.predictions[i]!;
      if (p >= 0 && p < iv.histogram.length) iv.histogram[p]!++;
      iv.confidenceSum += out.confidence[i] ?? 0;
    }
    iv.entropySum += out.meanEntropy * n;
    this.lastEntropy = out.meanEntropy;
  }

  /** An adaptation step's loss (non-finite losses are counted as steps but not averaged). */
  recordStep(loss: number): void {
    this.adaptSteps++;
    if (Number.isFinite(loss)) {
      this.interval.lossSum += loss;
      this.interval.lossN++;
    }
  }

  recordDrift(d: DriftReading): void {
    this.lastDrift = d;
    this.interval.driftMax = Math.max(this.interval.driftMax, d.score);
  }

  /** The interval's report; the next interval starts unless this is the final one. */
  takeReport(v: ReportView, now: number, final: boolean): TelemetryReport {
    const iv = this.interval;
    const intervalS = Math.max(0.001, (now - iv.startedAt) / 1000);
    const dropped = v.source ? v.source.dropped - iv.droppedBase : 0;
    const report: TelemetryReport = {
      intervalS,
      fps: iv.frames / intervalS,
      latencyP50Ms: nz(iv.latencyMs.quantile(0.5)),
      latencyP95Ms: nz(iv.latencyMs.quantile(0.95)),
      droppedFrames: Math.max(0, dropped),
      meanEntropy: iv.frames ? iv.entropySum / iv.frames : 0,
      meanConfidence: iv.frames ? Math.min(1, iv.confidenceSum / iv.frames) : 0,
      classHistogram: [...iv.histogram],
      ...(v.ablPriors ? { ablPriors: Array.from(v.ablPriors, Number) } : {}),
      adaptLoss: iv.lossN ? iv.lossSum / iv.lossN : null,
      adaptSteps: this.adaptSteps,
      resets: this.resets,
      paused: v.paused,
      driftScore: Math.max(0, iv.driftMax),
      provider: v.info.provider,
      memoryMb: process.memoryUsage().rss / (1024 * 1024),
      modelSha256: v.info.modelSha256,
    };
    if (!final) this.interval = new Interval(now, v.source?.dropped ?? 0, new Array<number>(v.info.classes).fill(0));
    return report;
  }

  /** The Prometheus text exposition of the counters and the agent's state. */
  exposition(v: MetricsView): string {
    const src = v.source;
    const mem = process.memoryUsage();
    const e = new Exposition();
    e.gauge('ttaq_agent_up', 'Whether the agent loop is running (1) or stopping/stopped (0).', v.running ? 1 : 0);
    e.gauge('ttaq_agent_paused', 'Whether processing is paused by an operator.', v.paused ? 1 : 0);
    e.gauge('ttaq_agent_uptime_seconds', 'Seconds since the agent started.', v.uptimeS);
    e.counter('ttaq_agent_frames_processed', 'Frames that went through the model.', this.frames);
    e.counter('ttaq_agent_batches', 'Batches that went through the model.', this.batches);
    e.gauge('ttaq_agent_fps', 'Frames processed per second over the last 10 s.', this.fps.rate());
    e.counter('ttaq_agent_frames_read', 'Frames read from the source.', src?.read ?? 0);
    e.counter('ttaq_agent_frames_dropped', 'Frames replaced by a newer one before the pipeline took them.', src?.dropped ?? 0);
    e.counter('ttaq_agent_frames_skipped', 'Frames skipped by the stride.', src?.skipped ?? 0);
    e.gauge('ttaq_agent_source_connected', 'Whether the source is open and delivering.', src?.connected ? 1 : 0);
    e.counter('ttaq_agent_source_reconnects', 'Successful reopenings of the source after a failure.', src?.reconnects ?? 0);
    e.counter('ttaq_agent_source_failures', 'Failed attempts to open or read the source.', src?.failures ?? 0);
    e.summary('ttaq_agent_batch_latency_seconds', 'Model time per batch (inference or adaptation step), last 512 batches.', this.batchLatency);
    e.summary('ttaq_agent_frame_latency_seconds', 'Capture-to-prediction time per frame, last 2048 frames.', this.frameLatency);
    e.counter('ttaq_agent_adaptation_steps', 'Adaptation steps run by this process.', this.adaptSteps);
    e.gauge('ttaq_agent_adaptation_step', "The adapter's step counter (restored from checkpoints).", v.model?.step ?? 0);
    e.counter('ttaq_agent_adaptation_resets', 'Resets to the source parameters (collapse guard or command).', this.resets);
    e.counter('ttaq_agent_shifts_detected', 'Distribution shifts the drift detector reported.', this.shifts);
    e.gauge('ttaq_agent_drift_score', "The drift detector's score on the last batch.", this.lastDrift.score);
    e.gauge('ttaq_agent_mean_entropy_nats', 'Mean prediction entropy of the last batch.', Number.isNaN(this.lastEntropy) ? 0 : this.lastEntropy);
    e.counter('ttaq_agent_checkpoints', 'Adaptation-state checkpoints written.', this.checkpoints);
    e.counter('ttaq_agent_checkpoint_errors', 'Checkpoints that failed to write.', this.checkpointErrors);
    e.counter('ttaq_agent_model_reloads', 'Successful model reloads.', this.reloads);
    e.counter('ttaq_agent_model_reload_failures', 'Failed model reloads (the old model kept running).', this.reloadFailures);
    e.counter('ttaq_agent_errors', 'Errors counted and survived (failed batches, source failures).', this.errors);
    if (v.model) {
      const i = v.model.info;
      e.gauge('ttaq_agent_model_info', 'The model in use and the execution provider running it (value 1).', 1, {
        model: i.modelName, sha256: i.modelSha256, provider: i.provider, method: i.method ?? 'none',
      });
    }
    e.gauge('ttaq_agent_memory_bytes', 'Process memory by kind.', mem.rss, { kind: 'rss' });
    e.gauge('ttaq_agent_memory_bytes', 'Process memory by kind.', mem.heapUsed, { kind: 'heap_used' });
    e.gauge('ttaq_agent_memory_bytes', 'Process memory by kind.', mem.external, { kind: 'external' });
    e.gauge('ttaq_agent_memory_bytes', 'Process memory by kind.', mem.arrayBuffers, { kind: 'array_buffers' });
    return e.text();
  }
}

const nz = (v: number): number => (Number.isFinite(v) ? Math.max(0, v) : 0);
