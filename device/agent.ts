// The edge agent: frames from a source, batched, through the model runner (inference, and
// test-time adaptation every k batches or after a detected shift), with state checkpoints in
// SQLite, metrics over HTTP and reports to the fleet.
//
//   capture process (source.ts) ->  batches of N frames (max wait)  ->  runner.infer / runner.adapt
//        never waits on the model       |                                   |
//                                       +-> drift detector -> adapt window   +-> checkpoints every n steps
//
// Capture runs in its own process, so a slow model step drops frames (latest-frame mode) or holds
// the reads back (all-frames mode) but never stalls the capture itself. Reloads swap the runner
// between batches. stop() finishes the batch in flight, writes a final checkpoint, sends the last
// report and closes everything in order.
import { hostname } from 'node:os';
import pino, { type Logger } from 'pino';
import { isTtaqError, TtaqError } from '../sdk/errors/index.ts';
import { ADAPTER_OPTION_KEYS, parseSetOptions, type AgentConfig, type SetOptions } from './config.ts';
import { DriftDetector } from './drift.ts';
import { AgentHttp } from './http.ts';
import type { PreprocessSpec } from './preprocess.ts';
import { OpenCvSource } from './source.ts';
import { AgentStats } from './stats.ts';
import { AgentStore, type PredictionRow } from './store.ts';
import { createTelemetrySink } from './telemetry.ts';
import type {
  AgentCommand,
  AgentEvent,
  Frame,
  FrameBatch,
  FrameSource,
  InferOutput,
  ModelRunner,
  RunnerFactory,
  TelemetrySink,
} from './ports.ts';

export interface AgentDeps {
  /** Builds the frame source for a preprocessing spec (default: OpenCV capture per config.source). */
  readonly sourceFactory?: (spec: PreprocessSpec, batchSize: number) => FrameSource;
  /** Builds the model runner (default: sdk/runtime + sdk/adapt per config). */
  readonly runnerFactory?: RunnerFactory;
  readonly telemetry?: TelemetrySink;
  readonly logger?: Logger;
  /** Called after every processed batch (benchmarks, soak runs); must not throw or block. */
  readonly onBatch?: (b: BatchTiming) => void;
}

/** Where one batch's time went (ms, performance.now() clock), for benchmarks and soak runs. */
export interface BatchTiming {
  readonly frames: number;
  readonly adapted: boolean;
  /** Waiting for the source (first frame, then the rest of the batch) and assembling the batch. */
  readonly collectMs: number;
  /** The runner call (inference or adaptation step). */
  readonly modelMs: number;
  /** Bookkeeping after the model: metrics, drift detector, prediction log, checkpoint. */
  readonly afterMs: number;
  /** performance.now() when the batch was done. */
  readonly doneAt: number;
  /** Capture-to-prediction latency of each frame (ms, wall clock). */
  readonly latencyMs: readonly number[];
}

export type ExitReason = 'signal' | 'source-ended' | 'max-frames' | 'source-failed' | 'stopped' | 'error';

export interface AgentExit {
  readonly reason: ExitReason;
  readonly detail?: string;
  readonly framesProcessed: number;
  readonly steps: number;
}

type Mode = 'created' | 'running' | 'stopping' | 'stopped';

/** The agent's log: JSON lines at the configured level, on stdout unless given another descriptor (2: stderr). */
export function agentLogger(config: AgentConfig, fd?: number): Logger {
  const options = { level: config.log.level, base: { pid: process.pid, agent: 'ttaq' } };
  return fd === undefined ? pino(options) : pino(options, pino.destination(fd));
}

export class Agent {
  readonly log: Logger;
  private readonly store: AgentStore;
  /** This run's id in the agent database (runs table). */
  readonly runId: number;
  private readonly telemetry: TelemetrySink;
  private readonly factory: RunnerFactory;
  private runner!: ModelRunner;
  private source!: FrameSource;
  private http: AgentHttp | undefined;
  private readonly detector: DriftDetector;
  private readonly s = new AgentStats();
  private mode: Mode = 'created';
  private paused = false;
  private resumeWaiter: (() => void) | undefined;
  private batchSize = 1;
  private shiftWindow = 0;
  private stepsAtCheckpoint = 0;
  private inFlight: Promise<void> = Promise.resolve();
  private loopDone: Promise<AgentExit> | undefined;
  private stopReason: ExitReason = 'stopped';
  private stopDetail: string | undefined;
  private telemetryTimer: NodeJS.Timeout | undefined;
  private readonly startedAt = Date.now();
  private modelPath: string;
  private manifestPath: string | undefined;
  private reloading = false;
  private collectMs = 0;
  /** Settings a set-options command may change while running (initialised from the config). */
  private readonly live: { batchSize: number; maxWaitMs: number; every: number; shiftEnabled: boolean; resetEvery: number; driftThreshold: number };
  /** Adapter options set at runtime, over config.adaptation.options (kept across reloads). */
  private adaptOverrides: Record<string, unknown> = {};
  private lastDriftReset = -Infinity;
  /** Prediction-log rows not written yet, and the model they belong to. */
  private predBuf: PredictionRow[] = [];
  private predSha = '';
  private predFlushedAt = 0;
  private sourceEnded = false;
  private fatalSource: string | undefined;
  httpPort: number | undefined;

  private constructor(readonly config: AgentConfig, private readonly deps: AgentDeps, store: AgentStore, telemetry: TelemetrySink, log: Logger, runId: number) {
    this.log = log;
    this.store = store;
    this.telemetry = telemetry;
    this.runId = runId;
    // The real runner (onnxruntime, sdk/adapt) is imported only when used: fakes start faster.
    this.live = { batchSize: config.batch.size, maxWaitMs: config.batch.maxWaitMs, every: config.adaptation.every, shiftEnabled: config.adaptation.shift.enabled, resetEvery: 0, driftThreshold: 0 };
    this.factory = deps.runnerFactory ?? (async (m) => {
      const { createRunnerFactory } = await import('./runner.ts');
      const c = m.adaptOptions ? { ...config, adaptation: { ...config.adaptation, options: { ...config.adaptation.options, ...m.adaptOptions } } } : config;
      return createRunnerFactory(c, (e) => {
        log[e.level]({ provider: e.provider, reason: e.reason }, e.message);
        if (e.level === 'warn') this.record('warn', 'provider', e.message, { provider: e.provider });
      })(m);
    });
    this.detector = new DriftDetector(config.adaptation.shift);
    this.modelPath = config.model.path;
    this.manifestPath = config.model.manifest;
  }

  /** Opens storage and telemetry; `start()` then loads the model and begins. */
  static async create(config: AgentConfig, deps: AgentDeps = {}): Promise<Agent> {
    const log = deps.logger ?? agentLogger(config);
    const store = AgentStore.open(config.storage.path);
    // the run is recorded (and a database in use refused) before telemetry connects
    let telemetry: TelemetrySink | undefined;
    let runId: number | undefined;
    try {
      runId = store.beginRun(config, hostname());
      telemetry = deps.telemetry ?? (await createTelemetrySink(config, log));
      return new Agent(config, deps, store, telemetry, log, runId);
    } catch (e) {
      await telemetry?.close().catch(() => {});
      // Ended, so the database is free for the next try in this process (a supervisor's restart
      // of an embedded agent) and the run log says why it never started.
      if (runId !== undefined) store.endRun(runId, `failed to start: ${(e as Error).message}`);
      store.close();
      throw e;
    }
  }

  private record(level: string, kind: string, message: string, data?: unknown): void {
    try {
      this.store.event(this.runId, level, kind, message, data);
    } catch (e) {
      this.log.error({ err: e }, 'cannot write the run log');
    }
  }

  private event(e: AgentEvent): void {
    this.telemetry.event(e);
  }

  /** Loads the model, restores adaptation state, starts the source, HTTP and the loop. */
  async start(): Promise<void> {
    if (this.mode !== 'created') throw new TtaqError('INTERNAL', 'agent already started');
    this.mode = 'running';
    this.starting = this.startUp();
    return this.starting;
  }

  /** Set while start() runs: a stop() then (a signal during a long TensorRT build) waits for it. */
  private starting: Promise<void> | undefined;

  private async startUp(): Promise<void> {
    this.record('info', 'start', `agent starting (run ${this.runId})`, { pid: process.pid });
    try {
      this.runner = await this.factory({ path: this.modelPath, manifest: this.manifestPath, ...this.overrides() });
      this.afterRunnerLoaded('start');
      this.batchSize = Math.min(this.config.batch.size, this.runner.info.fixedBatch ?? Infinity);
      const spec = this.runner.info.preprocess;
      this.source = this.deps.sourceFactory
        ? this.deps.sourceFactory(spec, this.batchSize)
        : new OpenCvSource({ source: this.config.source, preprocess: spec, batch: this.batchSize });
      this.source.onEvent((e) => this.onSourceEvent(e));
      if (this.config.http.enabled) {
        this.http = new AgentHttp(this.config.http, {
          health: () => this.health(),
          metrics: () => this.metricsText(),
          status: () => this.status(),
          command: (c) => this.command(c),
        });
        this.httpPort = await this.http.start();
        this.log.info({ port: this.httpPort, host: this.config.http.host }, `http listening on ${this.config.http.host}:${this.httpPort} (/healthz, /metrics, /status)`);
      }
      this.telemetry.onCommand?.((c) => this.command(c));
      await this.source.start();
      this.log.info({ source: this.source.description, batch: this.batchSize, maxWaitMs: this.live.maxWaitMs }, 'source started');
    } catch (e) {
      this.mode = 'stopped';
      // Everything create() and this start opened, telemetry included: an embedded agent's MQTT
      // client would otherwise keep reconnecting and holding its outbox after the failure.
      await this.source?.stop().catch(() => {});
      await this.http?.stop();
      await this.runner?.dispose().catch(() => {});
      await this.telemetry.close().catch(() => {});
      this.store.endRun(this.runId, `failed to start: ${(e as Error).message}`);
      this.store.close();
      throw e;
    }
    this.telemetryTimer = setInterval(() => this.report(), this.config.telemetry.intervalSec * 1000);
    this.telemetryTimer.unref();
    this.loopDone = this.loop();
  }

  /** Resolves when the agent has stopped (source ended, max frames, stop()). */
  async done(): Promise<AgentExit> {
    if (!this.loopDone) throw new TtaqError('INTERNAL', 'agent not started');
    await this.loopDone;
    return this.shutdown();
  }

  private afterRunnerLoaded(why: 'start' | 'reload'): void {
    const i = this.runner.info;
    this.log.info({ model: i.modelName, path: i.modelPath, sha256: i.modelSha256, provider: i.provider, adaptive: i.adaptive, method: i.method }, `model '${i.modelName}' runs on ${i.provider}${i.adaptive ? ` with adaptation (${i.method})` : ''}`);
    this.record('info', 'model', `model ${i.modelName} (${i.modelSha256.slice(0, 12)}) on ${i.provider}`, { why, provider: i.provider, sha256: i.modelSha256 });
    this.s.setClasses(i.classes);
    this.detector.reset();
    this.shiftWindow = 0;
    this.restore();
  }

  /** Restores the newest checkpoint of this model and method; otherwise starts fresh, saying why. */
  private restore(): void {
    const r = this.runner;
    if (!r.loadState || !this.config.adaptation.restore) return;
    const sha = r.info.modelSha256;
    const method = r.info.method ?? '';
    // The newest checkpoint of this model and method: switching to another model or method and
    // back resumes where this one left off (each keeps its own keepCheckpoints).
    const latest = this.store.latestCheckpoint({ modelSha256: sha, method });
    let reason: string | undefined;
    if (!latest) reason = `no checkpoint of this model (${sha.slice(0, 12)}…) with method ${method || '(none)'} in the database`;
    else {
      try {
        r.loadState(latest.state);
        this.stepsAtCheckpoint = r.step ?? latest.step;
        this.log.info({ step: latest.step, checkpoint: latest.id, createdAt: latest.createdAt }, `adaptation state restored at step ${latest.step}`);
        this.record('info', 'restore', `restored checkpoint ${latest.id} at step ${latest.step}`, { checkpoint: latest.id, step: latest.step });
        return;
      } catch (e) {
        reason = `checkpoint ${latest.id} does not fit: ${(e as Error).message}`;
      }
    }
    this.stepsAtCheckpoint = r.step ?? 0;
    this.log.info({ reason }, `starting adaptation from the source parameters: ${reason}`);
    this.record('info', 'restore', `fresh start: ${reason}`);
  }

  private onSourceEvent(e: Parameters<Parameters<FrameSource['onEvent']>[0]>[0]): void {
    switch (e.type) {
      case 'connected':
        this.log.info({ width: e.width, height: e.height, fps: e.fps, backend: e.backend }, `source connected (${e.width}x${e.height} @ ${e.fps || '?'} fps)`);
        this.record('info', 'source', `connected ${e.width}x${e.height}`);
        break;
      case 'failed':
        this.s.errors++;
        this.log.warn({ error: e.error, attempt: e.attempt, retryInMs: e.retryInMs }, `source failed (attempt ${e.attempt}), retrying in ${e.retryInMs} ms: ${e.error}`);
        this.record('warn', 'source', e.error, { attempt: e.attempt, retryInMs: e.retryInMs });
        if (e.attempt === 1) this.event({ type: 'error', code: 'SOURCE_FAILED', where: this.source.description, message: e.error.slice(0, 2000) });
        break;
      case 'end':
        this.sourceEnded = true;
        this.log.info('source ended');
        break;
      case 'fatal':
        this.fatalSource = e.error;
        this.log.error({ error: e.error }, `source gave up: ${e.error}`);
        this.record('error', 'source', e.error);
        this.event({ type: 'error', code: 'SOURCE_FAILED', where: this.source.description, message: e.error.slice(0, 2000) });
        break;
    }
  }

  // --- the loop --------------------------------------------------------------------------------

  private async loop(): Promise<AgentExit> {
    const max = this.config.maxFrames;
    try {
      while (this.mode === 'running') {
        if (this.paused) {
          await new Promise<void>((r) => { this.resumeWaiter = r; });
          continue;
        }
        const tc = performance.now();
        const batch = await this.collect();
        this.collectMs = performance.now() - tc;
        if (batch === 'end') {
          this.stopReason = this.fatalSource ? 'source-failed' : 'source-ended';
          this.stopDetail = this.fatalSource;
          break;
        }
        if (!batch) continue;
        // Paused while the batch was filling: hold it until resumed (or stopped).
        while (this.paused && this.mode === 'running') await new Promise<void>((r) => { this.resumeWaiter = r; });
        if (this.mode !== 'running') break;
        const run = this.processBatch(batch);
        this.inFlight = run.catch(() => {});
        await run;
        if (max > 0 && this.s.frames >= max) {
          this.stopReason = 'max-frames';
          break;
        }
      }
    } catch (e) {
      this.stopReason = isTtaqError(e) && e.code === 'SOURCE_FAILED' ? 'source-failed' : 'error';
      this.stopDetail = (e as Error).message;
      this.log.error({ err: e }, `agent loop stopped: ${(e as Error).message}`);
      this.record('error', 'loop', (e as Error).message);
    }
    return { reason: this.stopReason, framesProcessed: this.s.frames, steps: this.runner.step ?? this.s.adaptSteps, ...(this.stopDetail ? { detail: this.stopDetail } : {}) };
  }

  /** Up to N frames: waits for the first, then at most maxWaitMs for the rest. */
  private async collect(): Promise<FrameBatch | 'end' | null> {
    const frames: Frame[] = [];
    const first = await this.source.next(250);
    if (first === 'end') return 'end';
    if (first === 'timeout' || this.mode !== 'running') return null;
    frames.push(first);
    const deadline = Date.now() + this.live.maxWaitMs;
    const max = this.config.maxFrames > 0 ? Math.min(this.batchSize, this.config.maxFrames - this.s.frames) : this.batchSize;
    let ended = false;
    while (frames.length < max) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      const f = await this.source.next(left);
      if (f === 'timeout') break;
      if (f === 'end') { ended = true; break; }
      frames.push(f);
    }
    if (ended) this.sourceEnded = true;
    const { channels: c, height: h, width: w } = this.runner.info.preprocess;
    const size = c * h * w;
    const data = new Float32Array(frames.length * size);
    let n = 0;
    const metas: Omit<Frame, 'data'>[] = [];
    for (const f of frames) {
      if (f.data.length !== size) continue; // preprocessed for a previous model (reload in between)
      data.set(f.data, n * size);
      const { data: _d, ...meta } = f;
      metas.push(meta);
      n++;
    }
    if (n === 0) return null;
    return { data: n === frames.length ? data : data.subarray(0, n * size), dims: [n, c, h, w], frames: metas };
  }

  private shouldAdapt(): boolean {
    if (!this.config.adaptation.enabled || !this.runner.adapt) return false;
    if (this.shiftWindow > 0) return true;
    const every = this.live.every;
    return every > 0 && this.s.batches % every === 0;
  }

  private async processBatch(batch: FrameBatch): Promise<void> {
    const runner = this.runner;
    const adapt = this.shouldAdapt();
    const t0 = performance.now();
    let out: InferOutput;
    let loss: number | undefined;
    try {
      if (adapt) {
        const r = await runner.adapt!(batch);
        out = r;
        loss = r.loss;
        this.s.recordStep(r.loss);
        if (r.reset) {
          this.s.resets++;
          this.log.warn({ step: r.step }, 'adapter reset itself to the source parameters (collapse guard)');
          this.record('warn', 'reset', 'collapse guard reset', { step: r.step });
          this.event({ type: 'reset', reason: 'collapse', message: `collapse guard at step ${r.step}` });
        }
        if (this.shiftWindow > 0) this.shiftWindow--;
        const re = this.live.resetEvery;
        if (re > 0 && !r.reset && r.step > 0 && r.step % re === 0 && runner.resetState) {
          runner.resetState();
          this.s.resets++;
          this.record('info', 'reset', `scheduled reset at step ${r.step}`, { step: r.step });
          this.event({ type: 'reset', reason: 'schedule', message: `every ${re} steps (set-options resetEvery)` });
        }
      } else {
        out = await runner.infer(batch);
      }
    } catch (e) {
      // Count, report, carry on: one bad batch must not stop a camera.
      this.s.errors++;
      const code = isTtaqError(e) ? e.code : 'INTERNAL';
      this.log.error({ err: e, adapt }, `batch failed: ${(e as Error).message}`);
      this.record('error', 'batch', (e as Error).message, { code });
      this.event({ type: 'error', code, where: adapt ? 'adapt' : 'infer', message: (e as Error).message.slice(0, 2000) });
      return;
    }
    const now = Date.now();
    const ms = performance.now() - t0;
    const n = batch.dims[0];
    const s = this.s;
    s.recordBatch(batch, out, ms, now);

    const drift = this.detector.update(out.meanEntropy, runner.info.classes, out.bnStats);
    s.recordDrift(drift);
    const shiftCfg = { ...this.config.adaptation.shift, threshold: this.detector.threshold };
    const dt = this.live.driftThreshold;
    // A drift reset at most once per warm-up span: the reference needs batches to settle again.
    if (dt > 0 && drift.score > dt && runner.resetState && s.batches - this.lastDriftReset > shiftCfg.warmupBatches) {
      this.lastDriftReset = s.batches;
      runner.resetState();
      s.resets++;
      this.log.info({ score: drift.score, driftThreshold: dt }, `drift score ${drift.score.toFixed(2)} over ${dt}: adaptation reset to the source parameters`);
      this.record('info', 'reset', `drift reset, score ${drift.score.toFixed(3)}`, { score: drift.score });
      this.event({ type: 'reset', reason: 'drift', message: `drift score ${drift.score.toFixed(2)} > ${dt}` });
    }
    if (this.live.shiftEnabled && drift.shift && this.shiftWindow === 0) {
      s.shifts++;
      this.shiftWindow = shiftCfg.adaptBatches;
      this.log.info({ score: drift.score, threshold: shiftCfg.threshold, entropy: drift.entropy }, `shift detected (score ${drift.score.toFixed(2)}); adapting on the next ${shiftCfg.adaptBatches} batches`);
      this.record('info', 'shift', `score ${drift.score.toFixed(3)}`, { score: drift.score });
      this.event({ type: 'shift_detected', score: drift.score, threshold: shiftCfg.threshold });
    }

    if (this.config.storage.predictionLog.enabled) {
      // Buffered: one SQLite transaction per second (or 256 rows), not one per batch.
      if (this.predSha !== runner.info.modelSha256) this.flushPredictions();
      this.predSha = runner.info.modelSha256;
      batch.frames.forEach((f, i) => this.predBuf.push({ at: f.capturedAt, seq: f.seq, label: out.predictions[i]!, confidence: out.confidence[i], entropy: out.entropy[i]!, adapted: adapt }));
      if (this.predBuf.length >= 256 || now - this.predFlushedAt >= 1000) this.flushPredictions();
    }
    this.log.debug({ n, ms: Math.round(ms * 10) / 10, adapt, loss, entropy: out.meanEntropy, drift: drift.score }, 'batch');

    const every = this.config.adaptation.checkpointEvery;
    const step = runner.step ?? s.adaptSteps;
    if (adapt && every > 0 && step - this.stepsAtCheckpoint >= every) this.checkpoint('periodic');
    if (this.deps.onBatch) {
      const doneAt = performance.now();
      this.deps.onBatch({ frames: n, adapted: adapt, collectMs: this.collectMs, modelMs: ms, afterMs: doneAt - t0 - ms, doneAt, latencyMs: batch.frames.map((f) => now - f.capturedAt) });
    }
  }

  /** The capture process's id, when the source runs in one. */
  get captureProcessId(): number | undefined {
    return this.source?.processId?.();
  }

  /** Writes the buffered prediction-log rows in one transaction. */
  private flushPredictions(): void {
    this.predFlushedAt = Date.now();
    if (!this.predBuf.length) return;
    const rows = this.predBuf;
    this.predBuf = [];
    try {
      this.store.logPredictions(this.runId, this.predSha, rows, this.config.storage.predictionLog.maxRows);
    } catch (e) {
      this.s.errors++;
      this.log.error({ err: e }, 'cannot write the prediction log');
    }
  }

  // --- checkpoints, control --------------------------------------------------------------------

  /** Writes the adapter's state; returns the checkpoint id (undefined when there is no state). */
  checkpoint(reason: string): number | undefined {
    const r = this.runner;
    if (!r?.saveState) return undefined;
    try {
      const state = r.saveState();
      const step = r.step ?? this.s.adaptSteps;
      const id = this.store.saveCheckpoint({ runId: this.runId, modelSha256: r.info.modelSha256, modelName: r.info.modelName, method: r.info.method ?? '', step, reason, state }, this.config.storage.keepCheckpoints);
      this.stepsAtCheckpoint = step;
      this.s.checkpoints++;
      this.log.info({ step, checkpoint: id, bytes: state.byteLength, reason }, `checkpoint ${id} at step ${step} (${reason})`);
      this.event({ type: 'checkpoint', step, path: this.store.path.slice(-1024) });
      return id;
    } catch (e) {
      this.s.checkpointErrors++;
      this.log.error({ err: e }, `checkpoint failed: ${(e as Error).message}`);
      this.record('error', 'checkpoint', (e as Error).message);
      return undefined;
    }
  }

  /** Stops processing after the batch in flight (capture goes on: latest-frame sources drop). */
  async pause(): Promise<void> {
    if (this.paused) return;
    this.paused = true;
    this.log.info('paused');
    this.record('info', 'pause', 'paused');
    this.event({ type: 'paused' });
    await this.inFlight;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.log.info('resumed');
    this.record('info', 'pause', 'resumed');
    this.event({ type: 'resumed' });
    const w = this.resumeWaiter;
    this.resumeWaiter = undefined;
    w?.();
  }

  resetAdaptation(scope: 'adaptation' | 'all' = 'adaptation'): { step: number; scope: 'adaptation' | 'all'; checkpointsDeleted: number } {
    if (!this.runner.resetState) throw new TtaqError('CONFIG_INVALID', 'this model runs without adaptation; nothing to reset (set adaptation.enabled: true)');
    this.runner.resetState();
    this.s.resets++;
    let checkpointsDeleted = 0;
    if (scope === 'all') {
      // The drift reference was learnt on the old stream, and a checkpoint would restore the old
      // adaptation at the next start: both go, so the agent starts over as if newly deployed.
      this.detector.reset();
      this.shiftWindow = 0;
      checkpointsDeleted = this.store.deleteCheckpoints(this.runner.info.modelSha256);
      this.stepsAtCheckpoint = this.runner.step ?? 0;
    }
    const what = scope === 'all' ? `adaptation, drift reference and ${checkpointsDeleted} checkpoint(s) of this model` : 'adaptation';
    this.log.info({ scope, checkpointsDeleted }, `reset by command: ${what} back to the source`);
    this.record('info', 'reset', `reset by command (scope ${scope})`, { scope, checkpointsDeleted });
    this.event({ type: 'reset', reason: 'command', message: `scope ${scope}` });
    return { step: this.runner.step ?? 0, scope, checkpointsDeleted };
  }

  /**
   * Loads a model (default: the configured path again, e.g. a file replaced in place) next to the
   * running one and swaps it in between batches. The old model's state is checkpointed first.
   */
  async reload(path = this.modelPath, manifest?: string, expectSha?: string): Promise<{ sha256: string; provider: string }> {
    if (this.reloading) throw new TtaqError('CONFIG_INVALID', 'a reload is already running; wait for it to finish');
    if (this.mode !== 'running') throw new TtaqError('CONFIG_INVALID', 'the agent is not running');
    this.reloading = true;
    const manifestPath = manifest ?? (path === this.modelPath ? this.manifestPath : undefined);
    try {
      let next: ModelRunner;
      try {
        next = await this.factory({ path, manifest: manifestPath, ...this.overrides() });
        if (expectSha && next.info.modelSha256 !== expectSha) {
          await next.dispose();
          throw new TtaqError('STATE_MISMATCH', `reload: '${path}' has SHA-256 ${next.info.modelSha256.slice(0, 12)}…, the command expected ${expectSha.slice(0, 12)}…; send the right file or hash`);
        }
      } catch (e) {
        this.s.reloadFailures++;
        this.log.error({ err: e, path }, `reload failed, keeping the running model: ${(e as Error).message}`);
        this.record('error', 'reload', (e as Error).message, { path });
        this.event({ type: 'model_reload', sha256: expectSha ?? this.runner.info.modelSha256, ok: false, message: (e as Error).message.slice(0, 2000) });
        throw e;
      }
      await this.inFlight;
      const old = this.runner;
      this.checkpoint('reload');
      this.runner = next;
      this.modelPath = path;
      this.manifestPath = manifestPath;
      const a = old.info.preprocess;
      const b = next.info.preprocess;
      if (JSON.stringify(a) !== JSON.stringify(b)) {
        const src = this.source as FrameSource & { setPreprocess?: (s: PreprocessSpec) => void };
        src.setPreprocess?.(b);
      }
      this.batchSize = Math.min(this.live.batchSize, next.info.fixedBatch ?? Infinity);
      this.s.reloads++;
      this.afterRunnerLoaded('reload');
      this.event({ type: 'model_reload', sha256: next.info.modelSha256, ok: true });
      await old.dispose().catch((e: unknown) => this.log.warn({ err: e }, 'disposing the old model failed'));
      return { sha256: next.info.modelSha256, provider: next.info.provider };
    } finally {
      this.reloading = false;
    }
  }

  /** Runs an operator command (HTTP or MQTT). */
  async command(c: AgentCommand): Promise<unknown> {
    switch (c.name) {
      case 'pause': await this.pause(); return { paused: true };
      case 'resume': this.resume(); return { paused: false };
      case 'reset': return this.resetAdaptation(c.scope);
      case 'checkpoint': return { checkpoint: this.checkpoint('manual') ?? null };
      case 'reload': return c.url ? this.reloadFromUrl(c.url, c.sha256) : this.reload(c.path ?? this.modelPath, c.manifest, c.sha256);
      case 'set-options': return this.setOptions(c.options);
    }
  }

  private overrides(): { adaptOptions?: Record<string, unknown> } {
    return Object.keys(this.adaptOverrides).length ? { adaptOptions: { ...this.adaptOverrides } } : {};
  }

  /**
   * Reload from a URL: the model and its manifest are downloaded into model.cacheDir (https only
   * unless model.allowHttp), checked against the manifest's SHA-256 (and the command's), then
   * loaded like a local reload. Any failure keeps the running model.
   */
  async reloadFromUrl(url: string, expectSha?: string): Promise<{ sha256: string; provider: string; cached: boolean }> {
    if (this.mode !== 'running') throw new TtaqError('CONFIG_INVALID', 'the agent is not running');
    const m = this.config.model;
    let got;
    try {
      const { downloadModel } = await import('./download.ts');
      got = await downloadModel(url, expectSha, { cacheDir: m.cacheDir, allowHttp: m.allowHttp, maxBytes: m.downloadMaxMb * 1024 * 1024 });
    } catch (e) {
      this.s.reloadFailures++;
      this.log.error({ err: e, url: url.split('?')[0] }, `reload download failed, keeping the running model: ${(e as Error).message}`);
      this.record('error', 'reload', (e as Error).message, { url: url.split('?')[0] });
      this.event({ type: 'model_reload', sha256: expectSha ?? this.runner.info.modelSha256, ok: false, message: (e as Error).message.slice(0, 2000) });
      throw e;
    }
    this.log.info({ url: url.split('?')[0], path: got.path, cached: got.cached }, `model ${got.sha256.slice(0, 12)}… ${got.cached ? 'found in the cache' : 'downloaded'}`);
    const r = await this.reload(got.path, got.manifest, got.sha256);
    return { ...r, cached: got.cached };
  }

  /**
   * Changes options while running (see SetOptionsSchema): all are checked before any applies;
   * adapter options rebuild the adapter between batches (state kept when it still fits, a failed
   * rebuild keeps the old one), the rest applies from the next batch. Returns what changed.
   */
  async setOptions(input: Record<string, unknown>): Promise<{ applied: SetOptions; rebuilt: boolean; stateKept: boolean | null; note?: string }> {
    const o = parseSetOptions(input);
    if (this.mode !== 'running') throw new TtaqError('CONFIG_INVALID', 'the agent is not running');
    const adaptive = this.config.adaptation.enabled && !!this.runner.adapt;
    const adapterPatch: Record<string, unknown> = {};
    for (const k of ADAPTER_OPTION_KEYS) if (o[k] !== undefined) adapterPatch[k] = o[k];
    const needsAdaptation = Object.keys(adapterPatch).length > 0 || o.every !== undefined || o.resetEvery !== undefined || o.driftThreshold !== undefined || o.shiftEnabled !== undefined || o.shiftThreshold !== undefined;
    if (needsAdaptation && !adaptive) {
      throw new TtaqError('CONFIG_INVALID', 'set-options: this agent runs without adaptation (adaptation.enabled: false in its config); adaptation options cannot apply. Enable it in agent.yaml and restart');
    }
    if (o.batchSize !== undefined) {
      const cap = Math.min(this.config.batch.size, this.runner.info.fixedBatch ?? Infinity);
      if (o.batchSize > cap) {
        throw new TtaqError('CONFIG_INVALID', `set-options: batchSize ${o.batchSize} is over ${cap}, the ${this.runner.info.fixedBatch !== undefined && this.runner.info.fixedBatch < this.config.batch.size ? "model's fixed batch size" : 'batch.size the capture queue was sized for at start'}; use at most ${cap}, or raise batch.size in agent.yaml and restart`);
      }
    }
    let rebuilt = false;
    let stateKept: boolean | null = null;
    let note: string | undefined;
    if (Object.keys(adapterPatch).length) {
      if (this.reloading) throw new TtaqError('CONFIG_INVALID', 'set-options: a reload is running; send the options again when it is done');
      this.reloading = true;
      try {
        const overrides = { ...this.adaptOverrides, ...adapterPatch };
        let next: ModelRunner;
        try {
          next = await this.factory({ path: this.modelPath, manifest: this.manifestPath, adaptOptions: overrides });
        } catch (e) {
          this.log.error({ err: e, options: adapterPatch }, `set-options: the adapter could not be rebuilt, keeping the running one: ${(e as Error).message}`);
          this.record('error', 'options', (e as Error).message, adapterPatch);
          throw e;
        }
        await this.inFlight;
        const old = this.runner;
        this.checkpoint('set-options');
        try {
          const blob = old.saveState?.();
          if (blob && next.loadState) {
            next.loadState(blob);
            stateKept = true;
          } else stateKept = false;
        } catch (e) {
          stateKept = false;
          note = `adaptation starts from the source parameters: ${(e as Error).message}`;
        }
        this.runner = next;
        this.adaptOverrides = overrides;
        this.stepsAtCheckpoint = next.step ?? 0;
        rebuilt = true;
        await old.dispose().catch((e: unknown) => this.log.warn({ err: e }, 'disposing the old adapter failed'));
      } finally {
        this.reloading = false;
      }
    }
    if (o.batchSize !== undefined) {
      this.live.batchSize = o.batchSize;
      this.batchSize = o.batchSize;
    }
    if (o.maxWaitMs !== undefined) this.live.maxWaitMs = o.maxWaitMs;
    if (o.every !== undefined) this.live.every = o.every;
    if (o.shiftEnabled !== undefined) this.live.shiftEnabled = o.shiftEnabled;
    if (o.shiftThreshold !== undefined) this.detector.threshold = o.shiftThreshold;
    if (o.resetEvery !== undefined) this.live.resetEvery = o.resetEvery;
    if (o.driftThreshold !== undefined) this.live.driftThreshold = o.driftThreshold;
    this.log.info({ options: o, rebuilt, stateKept }, `options changed: ${Object.keys(o).join(', ')}`);
    this.record('info', 'options', `set-options ${Object.keys(o).join(', ')}`, { options: o, rebuilt, stateKept });
    return { applied: o, rebuilt, stateKept, ...(note ? { note } : {}) };
  }

  // --- reporting ---------------------------------------------------------------------------------

  private report(final = false): void {
    const r = this.runner;
    if (!r) return;
    this.telemetry.telemetry(this.s.takeReport({ source: this.source?.stats(), info: r.info, ablPriors: r.ablPriors?.(), paused: this.paused }, Date.now(), final));
  }

  health(): { ok: boolean; body: Record<string, unknown> } {
    const src = this.source?.stats();
    const age = this.s.lastBatchAt ? Date.now() - this.s.lastBatchAt : null;
    const stallMs = Math.max(30_000, this.config.source.reconnect.stallTimeoutMs * 3);
    let status = 'ok';
    let ok = true;
    if (this.mode !== 'running') { status = this.mode; ok = false; }
    else if (this.fatalSource) { status = 'source-failed'; ok = false; }
    else if (this.paused) status = 'paused';
    else if (src && !src.connected && !this.sourceEnded) { status = 'source-disconnected'; ok = false; }
    else if (age !== null && age > stallMs && !this.sourceEnded) { status = 'stalled'; ok = false; }
    return {
      ok,
      body: {
        status,
        uptimeS: Math.round((Date.now() - this.startedAt) / 1000),
        framesProcessed: this.s.frames,
        lastBatchAgeMs: age,
        source: src ? { description: this.source.description, connected: src.connected, reconnects: src.reconnects, lastError: src.lastError ?? null } : null,
        model: this.runner ? { name: this.runner.info.modelName, sha256: this.runner.info.modelSha256, provider: this.runner.info.provider } : null,
        paused: this.paused,
      },
    };
  }

  status(): Record<string, unknown> {
    const r = this.runner;
    return {
      ...this.health().body,
      runId: this.runId,
      adaptation: { enabled: this.config.adaptation.enabled && !!r?.adapt, method: r?.info.method ?? null, step: r?.step ?? null, adaptSteps: this.s.adaptSteps, resets: this.s.resets, shifts: this.s.shifts, shiftWindow: this.shiftWindow, driftScore: this.s.lastDrift.score },
      checkpoints: this.s.checkpoints,
      batchSize: this.batchSize,
      options: { ...this.live, shiftThreshold: this.detector.threshold, adapter: { ...this.adaptOverrides } },
      sourceStats: this.source?.stats() ?? null,
    };
  }

  metricsText(): string {
    const r = this.runner;
    return this.s.exposition({
      running: this.mode === 'running',
      paused: this.paused,
      uptimeS: (Date.now() - this.startedAt) / 1000,
      source: this.source?.stats(),
      model: r ? { info: r.info, step: r.step } : undefined,
    });
  }

  // --- shutdown ----------------------------------------------------------------------------------

  /** Asks the agent to stop; resolves when everything is flushed and closed. */
  async stop(reason: ExitReason = 'stopped', detail?: string): Promise<AgentExit> {
    const starting = !this.loopDone && this.starting;
    if (this.mode === 'running') {
      this.stopReason = reason;
      if (detail) this.stopDetail = detail;
      this.mode = 'stopping';
      const w = this.resumeWaiter;
      this.resumeWaiter = undefined;
      w?.();
    }
    // Stopped while starting: start-up finishes (a model half-loaded cannot be abandoned safely),
    // then the loop sees 'stopping' at once and the shutdown writes the run's end as usual. A
    // start that failed has already closed everything and reports its own error.
    if (starting) await starting.catch(() => {});
    if (!this.loopDone) return { reason: 'error', detail: 'stopped before start-up finished', framesProcessed: 0, steps: 0 };
    return this.done();
  }

  private shutdownPromise: Promise<AgentExit> | undefined;

  private shutdown(): Promise<AgentExit> {
    this.shutdownPromise ??= this.doShutdown();
    return this.shutdownPromise;
  }

  private async doShutdown(): Promise<AgentExit> {
    const result = await this.loopDone!;
    this.mode = 'stopping';
    const exit: AgentExit = { ...result, reason: this.stopReason, ...(this.stopDetail ? { detail: this.stopDetail } : {}), framesProcessed: this.s.frames, steps: this.runner.step ?? this.s.adaptSteps };
    this.log.info({ reason: exit.reason, frames: exit.framesProcessed }, `stopping (${exit.reason})`);
    if (this.telemetryTimer) clearInterval(this.telemetryTimer);
    await this.inFlight;
    await this.source.stop().catch((e: unknown) => this.log.warn({ err: e }, 'stopping the source failed'));
    this.flushPredictions();
    this.checkpoint('shutdown');
    this.report(true);
    await this.telemetry.flush(3000).catch((e: unknown) => this.log.warn({ err: e }, 'telemetry flush failed'));
    await this.telemetry.close().catch((e: unknown) => this.log.warn({ err: e }, 'telemetry close failed'));
    await this.http?.stop();
    await this.runner.dispose().catch((e: unknown) => this.log.warn({ err: e }, 'disposing the model failed'));
    this.record('info', 'stop', `stopped: ${exit.reason}`, { frames: exit.framesProcessed, steps: exit.steps });
    this.store.endRun(this.runId, exit.reason + (exit.detail ? `: ${exit.detail}` : ''));
    this.store.close();
    this.mode = 'stopped';
    this.log.info({ ...exit }, 'stopped');
    return exit;
  }
}
