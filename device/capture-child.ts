// The capture process: opens the source with OpenCV, reads frames, preprocesses the ones the
// pipeline asked for and sends them to the agent over the IPC channel. Opening a camera or an RTSP
// stream can block for seconds and a GStreamer read can hang; here that blocks only this process,
// which the agent kills and restarts when it stalls. (A separate process, not a worker thread:
// the OpenCV binding can be loaded into one V8 isolate per process only, and a hung native read
// cannot be interrupted inside a process.)
//
// Flow control: the agent grants credits (one per frame it can take). In `all` mode the
// next frame is read only when a credit is there; in `latest` mode reading never waits, and a
// frame that arrives while no credit is free replaces the held one (counted as dropped).
// Transfer: in `all` mode frames go over in chunks (up to `chunk` frames in one message, one
// Float32Array), sent when the chunk is full or the credits are used up, so the per-message cost
// (serialising, the pipe, the agent's event loop) is paid once per batch, not per frame; files are
// read with the synchronous read (decoding is CPU work, the thread-pool hop of readAsync only adds
// to it). Live sources (`latest`) send every frame at once and read asynchronously, so a credit
// arriving during a read is answered with the held frame right away.
// Failures (cannot open, empty read on a live source, file gone) recreate the capture after a
// capped exponential backoff.
// Resuming: a file's capture process that crashed is replaced by one told where its predecessor
// stopped (`resume`); it seeks there and passes over what was delivered already, so no frame of
// the file reaches the model twice.
import { existsSync, statSync } from 'node:fs';
import type { SourceConfig, SourceKind } from './config.ts';
import { loadOpenCv, type CV, type Mat } from './cv.ts';
import { frameSize, preprocessInto, type PreprocessSpec } from './preprocess.ts';

export interface CaptureInit {
  readonly source: SourceConfig;
  readonly kind: SourceKind;
  readonly mode: 'latest' | 'all';
  readonly preprocess: PreprocessSpec;
  /** Frames per message in `all` mode (default 1). */
  readonly chunk?: number;
  /** Files only: where the capture process this one replaces stopped (see source.ts resumePoint). */
  readonly resume?: CaptureResume;
}

/**
 * Where a restarted file capture carries on. `seq` is the next sequence number (the stride keeps
 * its phase); the frames already delivered are those at or before `afterMs` when the file has
 * timestamps, else the first `frame` frames of the file; neither: the file starts over.
 */
export interface CaptureResume {
  readonly seq: number;
  readonly afterMs?: number;
  readonly frame?: number;
}

export interface WorkerStats {
  read: number;
  delivered: number;
  dropped: number;
  skipped: number;
  reconnects: number;
  failures: number;
  connected: boolean;
  lastError?: string;
  sourceFps?: number;
}

export type ToWorker =
  | { type: 'credit'; n: number }
  | { type: 'preprocess'; spec: PreprocessSpec }
  | { type: 'stop' };

export type FromWorker =
  | { type: 'frame'; seq: number; capturedAt: number; positionMs?: number; data: Float32Array; stats: WorkerStats }
  /** `frames[i]` is `data.subarray(i * size, (i + 1) * size)`; positionMs is NaN when unknown. */
  | { type: 'frames'; seq: number[]; capturedAt: number[]; positionMs: number[]; data: Float32Array; stats: WorkerStats }
  | { type: 'connected'; width: number; height: number; fps: number; backend: string; stats: WorkerStats }
  | { type: 'failed'; error: string; attempt: number; retryInMs: number; stats: WorkerStats }
  | { type: 'end'; stats: WorkerStats }
  | { type: 'fatal'; error: string; stats: WorkerStats }
  | { type: 'stats'; stats: WorkerStats }
  | { type: 'stopped'; stats: WorkerStats };

/** OpenCV's binding throws strings as often as Errors. */
const errorText = (e: unknown): string => (e instanceof Error ? e.message : String(e)).split('\n')[0]!.trim();

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Backoff before attempt `attempt` (1-based): initial * factor^(attempt-1), capped. */
export function backoffMs(attempt: number, r: SourceConfig['reconnect']): number {
  return Math.min(r.maxDelayMs, Math.round(r.initialDelayMs * r.factor ** Math.max(0, attempt - 1)));
}

function apiPreference(cv: CV, kind: SourceKind): number {
  switch (kind) {
    case 'gstreamer': return cv.CAP_GSTREAMER;
    case 'v4l2': return cv.CAP_V4L2;
    case 'rtsp': return cv.CAP_FFMPEG;
    // Files and URLs through FFmpeg: CAP_ANY would try GStreamer first and log its complaints.
    default: return cv.CAP_FFMPEG;
  }
}

class Capture {
  private readonly cv = loadOpenCv();
  private cap: InstanceType<CV['VideoCapture']> | undefined;
  private credits = 0;
  private held: { mat: Mat; seq: number; at: number; pos?: number } | undefined;
  private stopping = false;
  private wake: (() => void) | undefined;
  private spec: PreprocessSpec;
  private seq = 0;
  private readonly s: WorkerStats = { read: 0, delivered: 0, dropped: 0, skipped: 0, reconnects: 0, failures: 0, connected: false };
  private everConnected = false;
  /** Preprocessed frames not sent yet (`all` mode chunks). */
  private pending: { seq: number[]; at: number[]; pos: number[]; data: Float32Array; n: number } | undefined;
  private readonly chunk: number;
  /** Taken by the first open that succeeds: a later reopen (a loop, a file rewritten) starts at 0. */
  private resume: CaptureResume | undefined;

  constructor(private readonly init: CaptureInit, private readonly post: (m: FromWorker) => void) {
    this.spec = init.preprocess;
    this.chunk = init.mode === 'all' ? Math.max(1, init.chunk ?? 1) : 1;
    this.resume = init.kind === 'file' ? init.resume : undefined;
    this.seq = this.resume?.seq ?? 0;
  }

  /**
   * Seeks a freshly opened file to where the crashed capture process stopped. Returns the test for
   * the frames read next that were delivered already (a seek lands on or before the target; when
   * the backend cannot seek, that is every frame up to there, read and passed over).
   */
  private seekResume(cap: InstanceType<CV['VideoCapture']>): ((readIndex: number) => boolean) | undefined {
    const r = this.resume;
    this.resume = undefined;
    if (!r) return undefined;
    const { cv } = this;
    const seek = (prop: number, value: number): boolean => {
      try {
        return cap.set(prop, value) !== false;
      } catch {
        return false;
      }
    };
    if (r.afterMs !== undefined) {
      seek(cv.CAP_PROP_POS_MSEC, r.afterMs);
      return () => cap.get(cv.CAP_PROP_POS_MSEC) <= r.afterMs!;
    }
    if (r.frame !== undefined && r.frame > 0) {
      if (seek(cv.CAP_PROP_POS_FRAMES, r.frame)) return undefined;
      return (readIndex) => readIndex < r.frame!;
    }
    return undefined;
  }

  onMessage(m: ToWorker): void {
    if (m.type === 'credit') {
      this.credits += m.n;
      if (this.held && this.credits > 0) {
        const h = this.held;
        this.held = undefined;
        this.deliver(h.mat, h.seq, h.at, h.pos);
      }
    } else if (m.type === 'preprocess') {
      this.flush();
      this.spec = m.spec;
    } else {
      this.stopping = true;
    }
    this.wake?.();
  }

  private waitForSignal(ms?: number): Promise<void> {
    return new Promise((resolve) => {
      const t = ms === undefined ? undefined : setTimeout(() => { this.wake = undefined; resolve(); }, ms);
      this.wake = () => { if (t) clearTimeout(t); this.wake = undefined; resolve(); };
    });
  }

  private deliver(mat: Mat, seq: number, at: number, pos: number | undefined): void {
    const size = frameSize(this.spec);
    if (this.chunk > 1) {
      const p = (this.pending ??= { seq: [], at: [], pos: [], data: new Float32Array(this.chunk * size), n: 0 });
      try {
        preprocessInto(this.cv, mat, this.spec, p.data, p.n * size);
      } catch (e) {
        this.s.lastError = `preprocess: ${(e as Error).message}`;
        this.s.failures++;
        return;
      }
      p.seq.push(seq);
      p.at.push(at);
      p.pos.push(pos ?? NaN);
      p.n++;
      this.credits--;
      this.s.delivered++;
      if (p.n >= this.chunk || this.credits <= 0) this.flush();
      return;
    }
    const data = new Float32Array(size);
    try {
      preprocessInto(this.cv, mat, this.spec, data);
    } catch (e) {
      this.s.lastError = `preprocess: ${(e as Error).message}`;
      this.s.failures++;
      return;
    }
    this.credits--;
    this.s.delivered++;
    const msg: FromWorker = { type: 'frame', seq, capturedAt: at, data, stats: { ...this.s } };
    if (pos !== undefined) msg.positionMs = pos;
    this.post(msg);
  }

  /** Sends the frames of the chunk being filled. */
  private flush(): void {
    const p = this.pending;
    if (!p || p.n === 0) return;
    this.pending = undefined;
    const size = frameSize(this.spec);
    const data = p.n * size === p.data.length ? p.data : p.data.slice(0, p.n * size);
    this.post({ type: 'frames', seq: p.seq, capturedAt: p.at, positionMs: p.pos, data, stats: { ...this.s } });
  }

  private open(): boolean {
    const { cv } = this;
    const { source, kind } = this.init;
    this.release();
    if (kind === 'file' && !existsSync(source.uri)) {
      this.s.lastError = `video file '${source.uri}' not found`;
      return false;
    }
    try {
      const target: string | number = kind === 'v4l2' && /^\d+$/.test(source.uri) ? Number(source.uri) : source.uri;
      const cap = new cv.VideoCapture(target, apiPreference(cv, kind));
      if (kind === 'v4l2') {
        if (source.width) cap.set(cv.CAP_PROP_FRAME_WIDTH, source.width);
        if (source.height) cap.set(cv.CAP_PROP_FRAME_HEIGHT, source.height);
        if (source.fps) cap.set(cv.CAP_PROP_FPS, source.fps);
      }
      if (kind !== 'file') cap.set(cv.CAP_PROP_BUFFERSIZE, 1);
      this.cap = cap;
      this.everOpened = true;
      return true;
    } catch (e) {
      this.s.lastError = `cannot open ${kind} source '${source.uri}': ${errorText(e)}`;
      // A file that is there but never opened is not a video OpenCV can decode (or a folder):
      // unlike a camera or stream, waiting will not change that.
      if (kind === 'file' && !this.everOpened) {
        this.s.lastError = `'${source.uri}' is ${statSync(source.uri).isDirectory() ? 'a folder' : 'not a video OpenCV can decode'} (${errorText(e)}); give a video file (mp4, mkv, avi, ...) with --source`;
        this.unopenable = true;
      }
      return false;
    }
  }

  /** Set once a source opened: later failures of a file are retried (it may be rewritten). */
  private everOpened = false;
  private unopenable = false;

  private release(): void {
    try { this.cap?.release(); } catch { /* already gone */ }
    this.cap = undefined;
    this.s.connected = false;
  }

  private async fail(attempt: number): Promise<boolean> {
    this.s.failures++;
    this.s.connected = false;
    const r = this.init.source.reconnect;
    if (r.maxAttempts > 0 && attempt > r.maxAttempts) {
      this.post({ type: 'fatal', error: `${this.s.lastError ?? 'source failed'}; gave up after ${r.maxAttempts} attempts (source.reconnect.maxAttempts)`, stats: { ...this.s } });
      return false;
    }
    const wait = backoffMs(attempt, r);
    this.post({ type: 'failed', error: this.s.lastError ?? 'source failed', attempt, retryInMs: wait, stats: { ...this.s } });
    // Only a stop cuts the back-off short: the consumer's credits wake this process too, and with
    // them every failed open was retried at once (attempt 2 followed attempt 1 within a millisecond).
    const until = Date.now() + wait;
    while (!this.stopping && Date.now() < until) await this.waitForSignal(until - Date.now());
    return !this.stopping;
  }

  async run(): Promise<void> {
    const { cv } = this;
    const { source, kind, mode } = this.init;
    let attempt = 0;
    let looped = false;
    const statsTimer = setInterval(() => this.post({ type: 'stats', stats: { ...this.s } }), 1000);
    try {
      outer: while (!this.stopping) {
        if (!this.open()) {
          looped = false;
          if (this.unopenable) {
            this.post({ type: 'fatal', error: this.s.lastError!, stats: { ...this.s } });
            break;
          }
          if (!(await this.fail(++attempt))) break;
          continue;
        }
        const cap = this.cap!;
        const fps = cap.get(cv.CAP_PROP_FPS) || 0;
        let first = true;
        const started = Date.now();
        let framesThisOpen = 0;
        const resumed = this.resume !== undefined;
        let delivered = this.seekResume(cap);
        let readSinceSeek = 0;
        while (!this.stopping) {
          if (mode === 'all' && this.credits <= 0) {
            await this.waitForSignal();
            continue;
          }
          if (source.realtime && kind === 'file' && fps > 0) {
            const due = started + (framesThisOpen * 1000) / fps;
            if (due > Date.now()) await sleep(due - Date.now());
          }
          let mat: Mat;
          try {
            if (kind === 'file') {
              // Let credit and stop messages in between synchronous reads.
              await new Promise<void>((r) => setImmediate(r));
              mat = cap.read();
            } else {
              mat = await cap.readAsync();
            }
          } catch (e) {
            this.s.lastError = `read failed: ${errorText(e)}`;
            mat = new cv.Mat();
          }
          if (this.stopping) break outer;
          if (!mat.empty && delivered) {
            // Delivered by the process this one replaces: not read again as far as stats go.
            if (delivered(readSinceSeek++)) continue;
            delivered = undefined;
          }
          if (mat.empty) {
            // A resumed file that has nothing after the seek was at its end: that is no failure.
            if (kind === 'file' && (!first || resumed)) {
              // End of the file: start over (loop) or tell the pipeline there is no more.
              if (source.loop) {
                looped = true;
                this.release();
                continue outer;
              }
              // The frame held back in latest mode is the newest there will be: hand it over first.
              while (this.held && !this.stopping) await this.waitForSignal(100);
              this.flush();
              this.post({ type: 'end', stats: { ...this.s } });
              break outer;
            }
            this.s.lastError ??= `no frame from ${kind} source '${source.uri}'`;
            if (first) this.s.lastError = `opened ${kind} source '${source.uri}' but it gives no frames (${this.s.lastError})`;
            this.release();
            if (!(await this.fail(++attempt))) break outer;
            continue outer;
          }
          if (first) {
            first = false;
            if (!looped && (attempt > 0 || this.everConnected)) this.s.reconnects++;
            this.everConnected = true;
            attempt = 0;
            this.s.connected = true;
            this.s.lastError = undefined;
            this.s.sourceFps = fps || undefined;
            // Starting a looped file over is not news.
            if (!looped) this.post({ type: 'connected', width: mat.cols, height: mat.rows, fps, backend: kind, stats: { ...this.s } });
            looped = false;
          }
          framesThisOpen++;
          const seq = this.seq++;
          this.s.read++;
          if (seq % source.stride !== 0) {
            this.s.skipped++;
            continue;
          }
          const at = Date.now();
          const pos = kind === 'file' ? cap.get(cv.CAP_PROP_POS_MSEC) : undefined;
          if (this.credits > 0) {
            this.deliver(mat, seq, at, pos);
          } else {
            if (this.held) this.s.dropped++;
            this.held = { mat, seq, at, pos };
          }
        }
      }
    } finally {
      clearInterval(statsTimer);
      if (!this.stopping) this.flush();
      this.release();
      this.post({ type: 'stopped', stats: { ...this.s } });
    }
  }
}

/** Entry point when run as the capture process (forked by source.ts with the init as JSON in argv). */
export function main(): void {
  const init = JSON.parse(process.argv[2] ?? '{}') as CaptureInit;
  const send = (m: FromWorker) => { if (process.connected) process.send!(m); };
  const cap = new Capture(init, send);
  process.on('message', (m: ToWorker) => cap.onMessage(m));
  // The agent went away (killed): stop too, never keep a camera open as an orphan.
  process.on('disconnect', () => cap.onMessage({ type: 'stop' }));
  // A signal sent to the whole process group (Ctrl-C in a terminal, systemd's default
  // KillMode=control-group) reaches this process as well as the agent. Dying of it made the agent
  // log a capture failure and start a new capture process in the middle of its own shutdown; the
  // agent stops this process in order, so while it is there the signal is left to it.
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => { if (!process.connected) process.exit(0); });
  }
  cap.run().then(
    () => process.disconnect?.(),
    (e: unknown) => {
      send({ type: 'fatal', error: `capture process failed: ${(e as Error)?.stack ?? String(e)}`, stats: { read: 0, delivered: 0, dropped: 0, skipped: 0, reconnects: 0, failures: 1, connected: false } });
      process.exitCode = 1;
      process.disconnect?.();
    },
  );
}

if (process.env.TTAQ_CAPTURE_CHILD === '1' && process.send) main();
