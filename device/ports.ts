// The agent's ports: the small interfaces it is written against. Real implementations live beside
// them (OpenCV capture in `source.ts`, onnxruntime in `runner.ts`, SQLite in `store.ts`, MQTT
// through sdk/telemetry in `telemetry.ts`); tests pass fakes.

import type { PreprocessSpec } from './preprocess.ts';
import type { TelemetryBody } from '../sdk/telemetry/schemas.ts';

/** One preprocessed frame: CHW float32 values in the model's input layout. */
export interface Frame {
  /** c*h*w values, already colour-converted, resized and normalised per the manifest. */
  readonly data: Float32Array;
  /** Capture sequence number (counts every frame read from the source, skipped ones included). */
  readonly seq: number;
  /** Wall-clock time the frame was read (ms since the epoch). */
  readonly capturedAt: number;
  /** Position in the source (ms), when the source knows it (files). */
  readonly positionMs?: number;
}

/** A batch of frames as the model's input tensor. */
export interface FrameBatch {
  /** NCHW float32, n*c*h*w values. */
  readonly data: Float32Array;
  readonly dims: readonly [number, number, number, number];
  readonly frames: readonly Omit<Frame, 'data'>[];
}

export interface SourceStats {
  /** Frames read from the source. */
  readonly read: number;
  /** Frames handed to the pipeline. */
  readonly delivered: number;
  /** Frames replaced by a newer one before the pipeline took them (latest-frame mode). */
  readonly dropped: number;
  /** Frames skipped by the stride. */
  readonly skipped: number;
  /** Successful reopenings after a failure. */
  readonly reconnects: number;
  /** Failed open or read attempts. */
  readonly failures: number;
  readonly connected: boolean;
  readonly lastError?: string;
  /** The source's own frame rate, when it reports one. */
  readonly sourceFps?: number;
}

export type SourceEvent =
  | { readonly type: 'connected'; readonly width: number; readonly height: number; readonly fps: number; readonly backend: string }
  | { readonly type: 'failed'; readonly error: string; readonly attempt: number; readonly retryInMs: number }
  | { readonly type: 'end' }
  | { readonly type: 'fatal'; readonly error: string };

/** Where frames come from. `next` resolves with a frame, `'timeout'` or `'end'` (no more frames). */
export interface FrameSource {
  readonly description: string;
  start(): Promise<void>;
  next(timeoutMs: number): Promise<Frame | 'timeout' | 'end'>;
  stats(): SourceStats;
  onEvent(listener: (e: SourceEvent) => void): void;
  stop(): Promise<void>;
  /** The process doing the capture, when it is a separate one (CPU accounting in benchmarks). */
  processId?(): number | undefined;
}

/** What a forward pass returns, per frame of the batch. */
export interface InferOutput {
  /** Predicted class per frame. */
  readonly predictions: Int32Array;
  /** Softmax probability of the predicted class. */
  readonly confidence: Float32Array;
  /** Mean prediction entropy of the batch (nats). */
  readonly meanEntropy: number;
  /** Prediction entropy per frame (nats). */
  readonly entropy: Float32Array;
  /**
   * Optional per-BN-layer statistics of this batch next to the layer's reference (source or
   * running) statistics; the shift detector uses them when present.
   */
  readonly bnStats?: readonly BnBatchStats[];
}

export interface BnBatchStats {
  readonly layer: string;
  readonly batchMean: Float32Array;
  readonly batchVar: Float32Array;
  readonly refMean: Float32Array;
  readonly refVar: Float32Array;
}

export interface AdaptOutput extends InferOutput {
  /** The adaptation loss of the step. */
  readonly loss: number;
  /** The adapter's step counter after this step. */
  readonly step: number;
  /** True when the adapter reset itself to the source parameters (collapse guard). */
  readonly reset: boolean;
}

export interface RunnerInfo {
  readonly modelName: string;
  readonly modelPath: string;
  /** SHA-256 (hex) of the model file: checkpoints are tied to it. */
  readonly modelSha256: string;
  /** The execution provider running the model (`tensorrt`, `cuda`, `cpu`). */
  readonly provider: string;
  readonly classes: number;
  readonly labels: readonly string[];
  /** Input frame layout. */
  readonly channels: number;
  readonly height: number;
  readonly width: number;
  /** How frames are prepared for this model (from its manifest). */
  readonly preprocess: PreprocessSpec;
  /** The batch size the model requires, when its input has a fixed one (partial batches are padded). */
  readonly fixedBatch?: number;
  /** Whether `adapt` does something (an adapter is attached). */
  readonly adaptive: boolean;
  /** The adaptation method, when adaptive. */
  readonly method?: string;
}

/** The model behind the agent: plain inference, optionally test-time adaptation. */
export interface ModelRunner {
  readonly info: RunnerInfo;
  infer(batch: FrameBatch): Promise<InferOutput>;
  /** One adaptation step on the batch; predictions come from the same forward pass. */
  adapt?(batch: FrameBatch): Promise<AdaptOutput>;
  /** The adapter's step counter. */
  readonly step?: number;
  /** The adapter's state as an opaque, versioned blob (checkpoints). */
  saveState?(): Uint8Array;
  /** Restores a blob made by saveState; throws (TtaqError) when it does not fit this model. */
  loadState?(blob: Uint8Array): void;
  /** Back to the source parameters. */
  resetState?(): void;
  /** ABL class priors, when the adapter keeps them. */
  ablPriors?(): ArrayLike<number> | undefined;
  /** Runs every graph once at each of these batch sizes, changing no state (flat memory while serving). */
  warmUp?(batchSizes: readonly number[]): Promise<void>;
  dispose(): Promise<void>;
}

/**
 * Builds the runner for a model; the agent calls it at start, on every reload and when a
 * set-options command changes adapter options (`adaptOptions`, over the config's).
 */
export type RunnerFactory = (model: { path: string; manifest?: string | undefined; adaptOptions?: Record<string, unknown> }) => Promise<ModelRunner>;

/**
 * A periodic report: sdk/telemetry's schema is the single source of truth (the client validates it
 * and stamps seq and ts). A type-only import, so an agent without telemetry never loads mqtt.
 */
export type TelemetryReport = TelemetryBody;

/** Events (mirrors sdk/telemetry's EventBody). */
export type AgentEvent =
  | { readonly type: 'shift_detected'; readonly score: number; readonly threshold: number; readonly message?: string }
  | { readonly type: 'reset'; readonly reason: 'drift' | 'collapse' | 'command' | 'schedule'; readonly message?: string }
  | { readonly type: 'checkpoint'; readonly step: number; readonly path?: string; readonly message?: string }
  | { readonly type: 'error'; readonly code: string; readonly where?: string; readonly message?: string }
  | { readonly type: 'model_reload'; readonly sha256: string; readonly ok: boolean; readonly message?: string }
  | { readonly type: 'paused'; readonly message?: string }
  | { readonly type: 'resumed'; readonly message?: string };

/** Operator commands the agent understands (from MQTT or HTTP). */
export type AgentCommand =
  | { readonly name: 'pause' }
  | { readonly name: 'resume' }
  /**
   * `adaptation`: the adapter back to the source parameters. `all`: that, the drift detector's
   * reference, and this model's saved checkpoints, so a restart does not bring the old state back.
   */
  | { readonly name: 'reset'; readonly scope?: 'adaptation' | 'all' }
  | { readonly name: 'reload'; readonly path?: string; readonly manifest?: string; readonly sha256?: string; readonly url?: string }
  | { readonly name: 'checkpoint' }
  | { readonly name: 'set-options'; readonly options: Record<string, unknown> };

/** Where the agent reports to the fleet. Publishing never throws and never waits on the network. */
export interface TelemetrySink {
  telemetry(report: TelemetryReport): void;
  event(e: AgentEvent): void;
  /** Commands arriving from the fleet; the handler's result (or error) becomes the reply. */
  onCommand?(handler: (c: AgentCommand) => Promise<unknown>): void;
  /** Waits (at most timeoutMs) until queued messages are sent or stored for later. */
  flush(timeoutMs: number): Promise<void>;
  /** Publishes the final status and disconnects. */
  close(): Promise<void>;
}

export const nullTelemetry: TelemetrySink = {
  telemetry() {},
  event() {},
  async flush() {},
  async close() {},
};
