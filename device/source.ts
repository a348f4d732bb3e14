// The OpenCV frame source (agent side): runs `capture-child.ts` in a child process, grants it
// credits, queues the frames it sends, and kills and restarts it when a live source stalls (a
// native read that never returns cannot be interrupted any other way). A file's capture process
// that crashes is restarted after the last frame it sent, not from the start: the frames would
// otherwise reach the model (and the prediction log) twice. Cameras and streams just reconnect.
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { TtaqError } from '../sdk/errors/index.ts';
import { detectSourceKind, type SourceConfig, type SourceKind } from './config.ts';
import type { CaptureInit, CaptureResume, FromWorker, ToWorker, WorkerStats } from './capture-child.ts';
import { checkSpec, type PreprocessSpec } from './preprocess.ts';
import type { Frame, FrameSource, SourceEvent, SourceStats } from './ports.ts';

const CHILD = fileURLToPath(new URL('./capture-child.ts', import.meta.url));

/** Forks the capture process, through tsx's loader (the child is TypeScript like the rest). */
function spawnCapture(init: CaptureInit): ChildProcess {
  const env: NodeJS.ProcessEnv = { ...process.env, TTAQ_CAPTURE_CHILD: '1' };
  // OpenCV reads these from the environment when the capture opens.
  env.OPENCV_LOG_LEVEL ??= 'ERROR';
  if (init.kind === 'rtsp') env.OPENCV_FFMPEG_CAPTURE_OPTIONS ??= 'rtsp_transport;tcp';
  let loader: string | undefined;
  try {
    loader = import.meta.resolve('tsx');
  } catch {
    loader = undefined;
  }
  return fork(CHILD, [JSON.stringify(init)], {
    env,
    execArgv: loader ? ['--import', loader] : [],
    serialization: 'advanced',
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
}

/** Describes a source for logs without leaking RTSP credentials. */
export function describeSource(uri: string, kind: SourceKind): string {
  const safe = uri.replace(/\/\/([^/@\s]+)@/, '//***@');
  return `${kind}:${safe.length > 120 ? safe.slice(0, 117) + '...' : safe}`;
}

/**
 * Where a restarted capture process carries on, given the last frame received from the one that
 * crashed (queued frames count: they are still handed out). Files only; a live source has no
 * position to go back to. A position is used when the file has timestamps (the first frame sits at
 * 0 ms, so 0 tells nothing); without one the sequence number is the frame's index in the file
 * unless the file loops, and a looping file without timestamps starts over.
 */
export function resumePoint(kind: SourceKind, loop: boolean, last: { readonly seq: number; readonly positionMs?: number } | undefined): CaptureResume | undefined {
  if (kind !== 'file' || !last) return undefined;
  const seq = last.seq + 1;
  if (last.positionMs !== undefined && Number.isFinite(last.positionMs) && last.positionMs > 0) return { seq, afterMs: last.positionMs };
  if (!loop) return { seq, frame: seq };
  return { seq };
}

export interface OpenCvSourceOptions {
  readonly source: SourceConfig;
  readonly preprocess: PreprocessSpec;
  /** Frames queued on this side (default: 1 in latest mode, a batch in all mode). */
  readonly queue?: number;
  /** Batch size: the default queue depth, and in all mode the frames sent per message and credits granted at once. */
  readonly batch?: number;
}

export class OpenCvSource implements FrameSource {
  readonly description: string;
  readonly kind: SourceKind;
  readonly mode: 'latest' | 'all';
  private worker: ChildProcess | undefined;
  private readonly queue: Frame[] = [];
  private readonly capacity: number;
  /** Credits are granted when at least this many are missing (all mode: a batch; latest: 1). */
  private readonly grantStep: number;
  /** Frames per message from the capture process. */
  private readonly chunk: number;
  private outstanding = 0;
  private ended = false;
  private fatal: string | undefined;
  private waiter: (() => void) | undefined;
  private readonly listeners: ((e: SourceEvent) => void)[] = [];
  private wstats: WorkerStats = { read: 0, delivered: 0, dropped: 0, skipped: 0, reconnects: 0, failures: 0, connected: false };
  /** Counters of earlier capture processes (a stall restarts the process). */
  private base = { read: 0, delivered: 0, dropped: 0, skipped: 0, reconnects: 0, failures: 0 };
  private lastRead = 0;
  private lastReadAt = Date.now();
  private watchdog: NodeJS.Timeout | undefined;
  private stopped = false;
  private spec: PreprocessSpec;
  private generation = 0;
  /** The newest frame received from the capture process (where a restarted file capture resumes). */
  private last: { seq: number; positionMs: number | undefined } | undefined;

  constructor(private readonly o: OpenCvSourceOptions) {
    this.kind = detectSourceKind(o.source);
    this.mode = o.source.mode === 'auto' ? (this.kind === 'file' ? 'all' : 'latest') : o.source.mode;
    const batch = Math.max(1, o.batch ?? 1);
    // A batch in flight: while the model runs on one batch the capture process prepares the next
    // (a deeper queue only makes frames wait longer: capture-to-prediction latency).
    this.capacity = Math.max(1, o.queue ?? (this.mode === 'latest' ? 1 : batch));
    // Paced files deliver one frame at a time like a camera; otherwise all mode moves whole batches.
    this.chunk = this.mode === 'all' && !o.source.realtime ? Math.min(batch, this.capacity) : 1;
    this.grantStep = this.chunk;
    this.description = describeSource(o.source.uri, this.kind);
    checkSpec(o.preprocess, 'model manifest');
    this.spec = o.preprocess;
  }

  onEvent(listener: (e: SourceEvent) => void): void {
    this.listeners.push(listener);
  }

  private emit(e: SourceEvent): void {
    for (const l of this.listeners) l(e);
  }

  async start(): Promise<void> {
    this.startWorker();
    const stall = this.o.source.reconnect.stallTimeoutMs;
    if (this.kind !== 'file' && stall > 0) {
      this.watchdog = setInterval(() => this.checkStall(stall), Math.min(1000, stall));
      this.watchdog.unref();
    }
  }

  private startWorker(): void {
    const resume = resumePoint(this.kind, this.o.source.loop, this.last);
    const init: CaptureInit = { source: this.o.source, kind: this.kind, mode: this.mode, preprocess: this.spec, chunk: this.chunk, ...(resume ? { resume } : {}) };
    const w = spawnCapture(init);
    const gen = ++this.generation;
    this.worker = w;
    this.outstanding = 0;
    this.wstats = { read: 0, delivered: 0, dropped: 0, skipped: 0, reconnects: 0, failures: 0, connected: false };
    this.lastRead = 0;
    this.lastReadAt = Date.now();
    w.on('message', (m: FromWorker) => { if (gen === this.generation) this.onMessage(m); });
    w.on('error', (e) => {
      if (gen !== this.generation || this.stopped || this.ended) return;
      this.fatal = `capture process failed: ${e.message}`;
      this.emit({ type: 'fatal', error: this.fatal });
      this.wakeUp();
    });
    w.on('exit', (code, signal) => {
      if (gen !== this.generation || this.stopped || this.ended || this.fatal) return;
      // Died without saying why (a crash in native code): count it and start a new one (a file's
      // carries on after the last frame received, see resumePoint).
      this.absorb(this.wstats);
      this.base.failures++;
      this.emit({ type: 'failed', error: `capture process exited (${signal ?? `code ${code}`}); restarting it${this.kind === 'file' && this.last ? ` after frame ${this.last.seq}` : ''}`, attempt: 1, retryInMs: 0 });
      this.startWorker();
    });
    this.grant();
  }

  private checkStall(stallMs: number): void {
    if (this.stopped || this.ended || this.fatal) return;
    if (this.wstats.read !== this.lastRead) {
      this.lastRead = this.wstats.read;
      this.lastReadAt = Date.now();
      return;
    }
    // Only a connected source that stopped delivering counts; one that is reconnecting is busy.
    if (!this.wstats.connected || Date.now() - this.lastReadAt < stallMs) return;
    const old = this.worker;
    this.absorb(this.wstats);
    this.base.failures++;
    this.emit({ type: 'failed', error: `no frame for ${stallMs} ms (source.reconnect.stallTimeoutMs); restarting the capture process`, attempt: 1, retryInMs: 0 });
    this.generation++;
    old?.kill('SIGKILL');
    this.startWorker();
  }

  private absorb(s: WorkerStats): void {
    this.base = {
      read: this.base.read + s.read,
      delivered: this.base.delivered + s.delivered,
      dropped: this.base.dropped + s.dropped,
      skipped: this.base.skipped + s.skipped,
      reconnects: this.base.reconnects + s.reconnects + (s.read > 0 ? 1 : 0),
      failures: this.base.failures + s.failures,
    };
  }

  private post(m: ToWorker): void {
    const w = this.worker;
    // A child that just finished (end of file) may close the channel while a credit is on its
    // way: that send failing is expected, not a capture failure.
    if (w?.connected) w.send(m, () => {});
  }

  /** Keeps queued + requested frames at the queue's capacity (topped up a chunk at a time). */
  private grant(): void {
    const n = this.capacity - this.queue.length - this.outstanding;
    if (n >= this.grantStep && !this.ended && !this.fatal) {
      this.outstanding += n;
      this.post({ type: 'credit', n });
    }
  }

  private wakeUp(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  private onMessage(m: FromWorker): void {
    this.wstats = m.stats;
    switch (m.type) {
      case 'frame': {
        this.outstanding = Math.max(0, this.outstanding - 1);
        const f: Frame = m.positionMs === undefined
          ? { data: m.data, seq: m.seq, capturedAt: m.capturedAt }
          : { data: m.data, seq: m.seq, capturedAt: m.capturedAt, positionMs: m.positionMs };
        this.queue.push(f);
        this.last = { seq: f.seq, positionMs: f.positionMs };
        this.wakeUp();
        break;
      }
      case 'frames': {
        const k = m.seq.length;
        const size = m.data.length / Math.max(1, k);
        this.outstanding = Math.max(0, this.outstanding - k);
        for (let i = 0; i < k; i++) {
          const data = m.data.subarray(i * size, (i + 1) * size);
          const pos = m.positionMs[i]!;
          this.queue.push(Number.isNaN(pos) ? { data, seq: m.seq[i]!, capturedAt: m.capturedAt[i]! } : { data, seq: m.seq[i]!, capturedAt: m.capturedAt[i]!, positionMs: pos });
        }
        if (k > 0) this.last = { seq: m.seq[k - 1]!, positionMs: m.positionMs[k - 1]! };
        this.wakeUp();
        break;
      }
      case 'connected':
        this.emit({ type: 'connected', width: m.width, height: m.height, fps: m.fps, backend: m.backend });
        break;
      case 'failed':
        this.emit({ type: 'failed', error: m.error, attempt: m.attempt, retryInMs: m.retryInMs });
        break;
      case 'end':
        this.ended = true;
        this.emit({ type: 'end' });
        this.wakeUp();
        break;
      case 'fatal':
        this.fatal = m.error;
        this.emit({ type: 'fatal', error: m.error });
        this.wakeUp();
        break;
      default:
        break;
    }
  }

  /** Switches preprocessing (a reloaded model with another input size); queued frames are dropped. */
  setPreprocess(spec: PreprocessSpec): void {
    checkSpec(spec, 'model manifest');
    this.spec = spec;
    this.base.dropped += this.queue.length;
    this.queue.length = 0;
    this.post({ type: 'preprocess', spec });
    this.grant();
  }

  async next(timeoutMs: number): Promise<Frame | 'timeout' | 'end'> {
    for (;;) {
      const f = this.queue.shift();
      if (f) {
        this.grant();
        return f;
      }
      if (this.fatal) throw new TtaqError('SOURCE_FAILED', `${this.description}: ${this.fatal}`);
      if (this.ended || this.stopped) return 'end';
      const got = await new Promise<boolean>((resolve) => {
        const t = setTimeout(() => { this.waiter = undefined; resolve(false); }, timeoutMs);
        this.waiter = () => { clearTimeout(t); resolve(true); };
      });
      if (!got) return 'timeout';
    }
  }

  processId(): number | undefined {
    return this.worker?.pid;
  }

  stats(): SourceStats {
    const s = this.wstats;
    const b = this.base;
    const out: SourceStats = {
      read: b.read + s.read,
      delivered: b.delivered + s.delivered,
      dropped: b.dropped + s.dropped,
      skipped: b.skipped + s.skipped,
      reconnects: b.reconnects + s.reconnects,
      failures: b.failures + s.failures,
      connected: s.connected,
    };
    return {
      ...out,
      ...(s.lastError !== undefined ? { lastError: s.lastError } : {}),
      ...(s.sourceFps !== undefined ? { sourceFps: s.sourceFps } : {}),
    };
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.watchdog) clearInterval(this.watchdog);
    const w = this.worker;
    this.wakeUp();
    if (!w) return;
    // Ask the process to finish its read and release the capture; kill it if it does not.
    if (w.exitCode !== null || w.signalCode !== null) return;
    const done = new Promise<void>((resolve) => {
      w.once('exit', () => resolve());
      w.on('message', (m: FromWorker) => { if (m.type === 'stopped') this.wstats = m.stats; });
    });
    this.post({ type: 'stop' });
    const timer = setTimeout(() => w.kill('SIGKILL'), 3000);
    await done;
    clearTimeout(timer);
  }
}
