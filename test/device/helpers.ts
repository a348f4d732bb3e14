// Test helpers for the agent: small generated videos (OpenCV VideoWriter), a fake adaptive model
// runner with a real, checkable state, a fake frame source, and a spawned agent process.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TtaqError } from '../../sdk/errors/index.ts';
import { loadOpenCv } from '../../device/cv.ts';
import type { PreprocessSpec } from '../../device/preprocess.ts';
import type { AdaptOutput, Frame, FrameBatch, FrameSource, InferOutput, ModelRunner, SourceEvent, SourceStats } from '../../device/ports.ts';

export const tmp = (prefix = 'ttaq-device-'): string => mkdtempSync(join(tmpdir(), prefix));

/**
 * Writes a small MJPG AVI (works with every OpenCV build that has FFmpeg or its own MJPEG codec):
 * frame i is a flat colour that changes with i, so preprocessing results are predictable.
 */
export function makeVideo(path: string, frames = 24, width = 32, height = 24, fps = 25): void {
  const cv = loadOpenCv();
  const w = new cv.VideoWriter(path, cv.VideoWriter.fourcc('MJPG'), fps, new cv.Size(width, height), true);
  for (let i = 0; i < frames; i++) {
    const v = (i * 10) % 250;
    w.write(new cv.Mat(height, width, cv.CV_8UC3, [v, 255 - v, 128]));
  }
  w.release();
}

export const SPEC: PreprocessSpec = { height: 8, width: 8, channels: 1, resize: 'stretch', mean: [0.5], std: [0.25] };

/**
 * A stand-in for sdk/adapt's adapter: a parameter vector that moves toward the batch mean every
 * step, a step counter, and a versioned state blob tied to the model's SHA-256.
 */
export class FakeRunner implements ModelRunner {
  params: Float32Array = new Float32Array([0.1, 0.2, 0.3, 0.4]);
  step = 0;
  inferCalls = 0;
  resets = 0;
  /** Makes the next call fail (error-handling tests). */
  failNext = false;
  readonly info;

  /** `o.sha256` overrides the hash (a model file's); `o.optionsKey` ties the state to an option set like sdk/adapt's. */
  constructor(readonly modelKey = 'fake-model', spec: PreprocessSpec = SPEC, readonly delayMs = 0, readonly o: { sha256?: string; optionsKey?: string } = {}) {
    const sha = o.sha256 ?? createHash('sha256').update(modelKey).digest('hex');
    this.info = {
      modelName: modelKey, modelPath: `/models/${modelKey}.onnx`, modelSha256: sha, provider: 'cpu', classes: 4,
      labels: ['a', 'b', 'c', 'd'], channels: spec.channels, height: spec.height, width: spec.width, preprocess: spec,
      adaptive: true, method: 'fake',
    };
  }

  private async out(batch: FrameBatch): Promise<InferOutput> {
    if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
    if (this.failNext) {
      this.failNext = false;
      throw new TtaqError('RUNTIME_RUN_FAILED', 'fake failure');
    }
    const n = batch.dims[0];
    const per = batch.data.length / n;
    const predictions = new Int32Array(n);
    const entropy = new Float32Array(n).fill(0.5);
    for (let i = 0; i < n; i++) predictions[i] = Math.abs(Math.round(batch.data[i * per]! * 2)) % 4;
    return { predictions, confidence: new Float32Array(n).fill(0.7), entropy, meanEntropy: 0.5 };
  }

  async infer(batch: FrameBatch): Promise<InferOutput> {
    this.inferCalls++;
    return this.out(batch);
  }

  async adapt(batch: FrameBatch): Promise<AdaptOutput> {
    const o = await this.out(batch);
    let m = 0;
    for (let i = 0; i < batch.data.length; i++) m += batch.data[i]!;
    m /= batch.data.length;
    for (let i = 0; i < this.params.length; i++) this.params[i] = this.params[i]! + 0.05 * (m * (i + 1) - this.params[i]!);
    this.step++;
    return { ...o, loss: 0.5, step: this.step, reset: false };
  }

  saveState(): Uint8Array {
    const head = new TextEncoder().encode(JSON.stringify({ v: 1, sha: this.info.modelSha256, step: this.step, ok: this.o.optionsKey ?? '' }).padEnd(128));
    const out = new Uint8Array(128 + this.params.byteLength);
    out.set(head);
    out.set(new Uint8Array(this.params.buffer.slice(0)), 128);
    return out;
  }

  loadState(blob: Uint8Array): void {
    const head = decodeFakeState(blob);
    if (head.sha !== this.info.modelSha256) throw new TtaqError('STATE_MISMATCH', 'fake state for another model');
    if ((head.ok ?? '') !== (this.o.optionsKey ?? '')) throw new TtaqError('STATE_MISMATCH', 'fake state saved with other adaptation options');
    this.step = head.step;
    this.params = head.params;
  }

  resetState(): void {
    this.resets++;
    this.params = new Float32Array([0.1, 0.2, 0.3, 0.4]);
  }

  async dispose(): Promise<void> {}
}

export function decodeFakeState(blob: Uint8Array): { v: number; sha: string; step: number; ok?: string; params: Float32Array } {
  const head = JSON.parse(new TextDecoder().decode(blob.subarray(0, 128)).trim()) as { v: number; sha: string; step: number; ok?: string };
  const params = new Float32Array(blob.slice(128).buffer);
  return { ...head, params };
}

/** A frame source that produces `total` frames (Infinity: endless), one per `intervalMs`. */
export class FakeSource implements FrameSource {
  readonly description = 'fake:frames';
  private seq = 0;
  private listeners: ((e: SourceEvent) => void)[] = [];
  connected = true;
  stopped = false;
  dropped = 0;

  constructor(private readonly spec: PreprocessSpec, private readonly total = Infinity, private readonly intervalMs = 1) {}

  onEvent(l: (e: SourceEvent) => void): void {
    this.listeners.push(l);
  }

  emit(e: SourceEvent): void {
    for (const l of this.listeners) l(e);
  }

  async start(): Promise<void> {
    this.emit({ type: 'connected', width: 8, height: 8, fps: 0, backend: 'fake' });
  }

  async next(timeoutMs: number): Promise<Frame | 'timeout' | 'end'> {
    if (this.stopped || this.seq >= this.total) return 'end';
    if (!this.connected) {
      await new Promise((r) => setTimeout(r, Math.min(timeoutMs, 20)));
      return 'timeout';
    }
    await new Promise((r) => setTimeout(r, this.intervalMs));
    const n = this.spec.channels * this.spec.height * this.spec.width;
    const s = this.seq++;
    return { data: new Float32Array(n).fill((s % 7) / 7), seq: s, capturedAt: Date.now() };
  }

  stats(): SourceStats {
    return { read: this.seq, delivered: this.seq, dropped: this.dropped, skipped: 0, reconnects: 0, failures: 0, connected: this.connected };
  }

  async stop(): Promise<void> {
    this.stopped = true;
  }
}

/** A spawned agent process (test/device/fixtures/agent-child.ts) with its log lines collected. */
export interface ChildAgent {
  readonly proc: ChildProcess;
  readonly lines: Record<string, unknown>[];
  readonly stderr: string[];
  /** Resolves with the first log line matching. */
  waitFor(pred: (l: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export function spawnAgent(configPath: string, modelKey: string, o: { readonly ownGroup?: boolean } = {}): ChildAgent {
  const script = new URL('./fixtures/agent-child.ts', import.meta.url).pathname;
  // ownGroup: the agent leads a process group of its own, so a test can signal the whole group
  const proc = spawn(process.execPath, ['--import', 'tsx', script, configPath, modelKey], { stdio: ['ignore', 'pipe', 'pipe'], detached: o.ownGroup ?? false });
  const lines: Record<string, unknown>[] = [];
  const stderr: string[] = [];
  const waiters: { pred: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }[] = [];
  let buf = '';
  proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    buf += chunk;
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const text = buf.slice(0, i);
      buf = buf.slice(i + 1);
      let l: Record<string, unknown>;
      try {
        l = JSON.parse(text) as Record<string, unknown>;
      } catch {
        continue;
      }
      lines.push(l);
      for (const w of [...waiters]) {
        if (w.pred(l)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(l);
        }
      }
    }
  });
  proc.stderr!.setEncoding('utf8').on('data', (c: string) => stderr.push(c));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  return {
    proc,
    lines,
    stderr,
    exited,
    waitFor(pred, timeoutMs = 20_000) {
      const hit = lines.find(pred);
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`timed out waiting for a log line; last lines:\n${lines.slice(-5).map((l) => JSON.stringify(l)).join('\n')}\nstderr: ${stderr.join('').slice(-2000)}`)), timeoutMs);
        waiters.push({ pred, resolve: (l) => { clearTimeout(t); resolve(l); } });
      });
    },
  };
}

export async function getText(port: number, path: string, method = 'GET'): Promise<{ status: number; text: string }> {
  const r = await fetch(`http://127.0.0.1:${port}${path}`, { method });
  return { status: r.status, text: await r.text() };
}

/** Parses one sample value from Prometheus text. */
export function metric(text: string, name: string, labels = ''): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `) || (labels === '' && l.startsWith(`${name}{`) === false && l.startsWith(`${name} `)));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : undefined;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function until(cond: () => boolean | Promise<boolean>, timeoutMs = 15_000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}
