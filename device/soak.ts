// The agent's soak run (issue 7: RSS over 10 minutes, goal <= 250 MB and flat): the agent in this
// process on a looped video paced at its frame rate like a camera (so it does not take the whole
// CPU), with adaptation, checkpoints and a bounded prediction log on; memory of this process and
// of the capture process is sampled every few seconds, and the summary gives min / median / max and
// the slope (least squares, after the first minute of warm-up) of each.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { TtaqError } from '../sdk/errors/index.ts';
import { Agent, type AgentDeps, type BatchTiming } from './agent.ts';
import { detectSourceKind, type AgentConfig } from './config.ts';

export interface SoakOptions {
  readonly minutes: number;
  /** Seconds between memory samples (default 10). */
  readonly sampleEverySec?: number;
  /** Called with each sample (progress lines). */
  readonly onSample?: (s: SoakSample) => void;
  /** Ends the soak early (the report covers the time run). */
  readonly signal?: AbortSignal;
  /** Agent dependencies (tests pass fakes). */
  readonly deps?: AgentDeps;
}

export interface SoakSample {
  /** Seconds since the agent started. */
  readonly t: number;
  readonly rssMb: number;
  readonly heapUsedMb: number;
  /** V8's committed heap: RSS moves with it as the garbage collector resizes its spaces. */
  readonly heapTotalMb: number;
  readonly externalMb: number;
  readonly arrayBuffersMb: number;
  /** Resident memory of the capture process (NaN when unknown, `captureNote` says why). */
  readonly captureRssMb: number;
  /** Why `captureRssMb` is unknown (the last sample is taken after the capture process stopped). */
  readonly captureNote?: string;
  readonly frames: number;
  readonly adaptSteps: number;
}

/** Over the samples after the first minute (all samples in shorter runs). */
export interface SeriesSummary {
  readonly min: number;
  readonly median: number;
  readonly max: number;
  /** MB per minute, least squares over the samples after the first minute. */
  readonly slopeMbPerMin: number;
  /** Median of the last third minus median of the middle third (MB): flatness without a model. */
  readonly lateDriftMb: number;
}

export interface SoakReport {
  readonly minutes: number;
  readonly samples: readonly SoakSample[];
  readonly rss: SeriesSummary;
  readonly heapUsed: SeriesSummary;
  readonly heapTotal: SeriesSummary;
  /** RSS less V8's committed heap: onnxruntime, OpenCV, SQLite, buffers and the allocator. */
  readonly native: SeriesSummary;
  readonly captureRss: SeriesSummary;
  readonly frames: number;
  readonly adaptSteps: number;
  readonly fps: number;
  readonly droppedFrames: number;
  readonly latencyP50Ms: number;
  readonly latencyP95Ms: number;
  readonly exit: string;
}

const MB = 1024 * 1024;

/** Resident set of a process from /proc (MB); NaN where unreadable. */
export function processRssMb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

const sortedMedian = (a: readonly number[]): number => {
  const s = a.filter(Number.isFinite).sort((x, y) => x - y);
  if (!s.length) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** min / median / max and the least-squares slope (per minute) of `v` over `t` (seconds) after `skipS`. */
export function summarize(t: readonly number[], v: readonly number[], skipS = 60): SeriesSummary {
  const pts = t.map((x, i) => [x, v[i]!] as const).filter(([, y]) => Number.isFinite(y));
  const late = pts.filter(([x]) => x >= skipS);
  // After the warm-up when the run is long enough (the first minute loads models and libraries).
  const fit = late.length >= 3 ? late : pts;
  const ys = fit.map(([, y]) => y);
  let slope = NaN;
  if (fit.length >= 2) {
    const mx = fit.reduce((s, [x]) => s + x, 0) / fit.length;
    const my = fit.reduce((s, [, y]) => s + y, 0) / fit.length;
    const sxy = fit.reduce((s, [x, y]) => s + (x - mx) * (y - my), 0);
    const sxx = fit.reduce((s, [x]) => s + (x - mx) ** 2, 0);
    slope = sxx > 0 ? (60 * sxy) / sxx : NaN;
  }
  const third = Math.floor(ys.length / 3);
  const lateDrift = third >= 1 ? sortedMedian(ys.slice(2 * third)) - sortedMedian(ys.slice(third, 2 * third)) : NaN;
  return { min: ys.length ? Math.min(...ys) : NaN, median: sortedMedian(ys), max: ys.length ? Math.max(...ys) : NaN, slopeMbPerMin: slope, lateDriftMb: lateDrift };
}

/**
 * Runs the agent for `minutes` on the config's source. A file source is looped and paced at its
 * frame rate (camera-like, latest-frame mode); other sources run as configured.
 */
export async function soakAgent(config: AgentConfig, o: SoakOptions): Promise<SoakReport> {
  if (!(o.minutes > 0)) throw new TtaqError('CONFIG_INVALID', `soak minutes ${o.minutes}: give a positive number, e.g. --soak-minutes 10`);
  const file = detectSourceKind(config.source) === 'file';
  const c: AgentConfig = {
    ...config,
    source: file ? { ...config.source, loop: true, realtime: true, mode: 'latest' } : config.source,
    maxFrames: 0,
  };
  const every = (o.sampleEverySec ?? 10) * 1000;
  const latencies: number[] = [];
  let frames = 0;
  let steps = 0;
  const onBatch = (b: BatchTiming): void => {
    frames += b.frames;
    if (b.adapted) steps++;
    // A bounded reservoir: every frame's latency for the first 20,000, then every 8th.
    for (const l of b.latencyMs) if (latencies.length < 20_000 || frames % 8 === 0) latencies.push(l);
    if (latencies.length > 40_000) latencies.splice(0, latencies.length - 40_000);
  };
  // Logs on stderr: stdout carries the report (--json).
  const agent = await Agent.create(c, { logger: pino({ level: c.log.level === 'info' ? 'warn' : c.log.level }, pino.destination(2)), ...o.deps, onBatch });
  const samples: SoakSample[] = [];
  const t0 = performance.now();
  /** `stopped`: the agent is done, and its capture process with it (its pid may be another's now). */
  const sample = (stopped = false): void => {
    const m = process.memoryUsage();
    const pid = stopped ? undefined : agent.captureProcessId;
    const captureRssMb = pid ? processRssMb(pid) : NaN;
    const captureNote = stopped ? 'capture process stopped with the agent'
      : !pid ? 'no capture process'
      : Number.isNaN(captureRssMb) ? `/proc/${pid}/status not readable` : undefined;
    const s: SoakSample = {
      t: (performance.now() - t0) / 1000,
      rssMb: m.rss / MB, heapUsedMb: m.heapUsed / MB, heapTotalMb: m.heapTotal / MB, externalMb: m.external / MB, arrayBuffersMb: m.arrayBuffers / MB,
      captureRssMb, ...(captureNote ? { captureNote } : {}),
      frames, adaptSteps: steps,
    };
    samples.push(s);
    o.onSample?.(s);
  };
  await agent.start();
  sample();
  const timer = setInterval(sample, every);
  const stopTimer = setTimeout(() => { void agent.stop('stopped', 'soak time over'); }, o.minutes * 60_000);
  const onAbort = (): void => { void agent.stop('signal', 'soak interrupted'); };
  o.signal?.addEventListener('abort', onAbort);
  let exit;
  try {
    exit = await agent.done();
  } finally {
    clearInterval(timer);
    clearTimeout(stopTimer);
    o.signal?.removeEventListener('abort', onAbort);
  }
  sample(true);
  const seconds = (performance.now() - t0) / 1000;
  const t = samples.map((s) => s.t);
  const sorted = [...latencies].sort((a, b) => a - b);
  const q = (p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.round(p * (sorted.length - 1)))]! : NaN);
  const status = agent.status();
  const dropped = Number((status.sourceStats as { dropped?: number } | null)?.dropped ?? 0);
  return {
    minutes: seconds / 60,
    samples,
    rss: summarize(t, samples.map((s) => s.rssMb)),
    heapUsed: summarize(t, samples.map((s) => s.heapUsedMb)),
    heapTotal: summarize(t, samples.map((s) => s.heapTotalMb)),
    native: summarize(t, samples.map((s) => s.rssMb - s.heapTotalMb)),
    captureRss: summarize(t, samples.map((s) => s.captureRssMb)),
    frames, adaptSteps: steps, fps: frames / seconds, droppedFrames: dropped,
    latencyP50Ms: q(0.5), latencyP95Ms: q(0.95),
    exit: exit.reason + (exit.detail ? `: ${exit.detail}` : ''),
  };
}

/** The progress line of one sample; a capture RSS that is unknown is left out with the reason. */
export function soakSampleLine(s: SoakSample): string {
  const capture = Number.isFinite(s.captureRssMb) ? `capture rss ${s.captureRssMb.toFixed(1)} MB` : `capture rss not measured (${s.captureNote ?? 'unknown'})`;
  return `soak ${(s.t / 60).toFixed(1)} min: rss ${s.rssMb.toFixed(1)} MB, heap ${s.heapUsedMb.toFixed(1)} of ${s.heapTotalMb.toFixed(1)} MB (V8), ${capture}, ${s.frames} frames, ${s.adaptSteps} steps`;
}

/** Plain-text summary lines of a soak report. */
export function soakSummary(r: SoakReport): string {
  const f = (s: SeriesSummary) => `min ${s.min.toFixed(1)}  median ${s.median.toFixed(1)}  max ${s.max.toFixed(1)} MB  slope ${s.slopeMbPerMin >= 0 ? '+' : ''}${s.slopeMbPerMin.toFixed(2)} MB/min  late drift ${s.lateDriftMb >= 0 ? '+' : ''}${s.lateDriftMb.toFixed(1)} MB`;
  return [
    `soak: ${r.minutes.toFixed(1)} min, ${r.frames} frames (${r.fps.toFixed(1)} frames/s, ${r.droppedFrames} dropped), ${r.adaptSteps} adaptation steps, latency p50 ${r.latencyP50Ms.toFixed(0)} ms p95 ${r.latencyP95Ms.toFixed(0)} ms; ${r.samples.length} samples; exit ${r.exit}`,
    `agent RSS:    ${f(r.rss)}`,
    `agent heap:   ${f(r.heapUsed)}`,
    `  V8 committed: ${f(r.heapTotal)}`,
    `  native (RSS - V8 committed): ${f(r.native)}`,
    Number.isFinite(r.captureRss.median) ? `capture RSS:  ${f(r.captureRss)}` : `capture RSS:  not measured (${r.samples.find((x) => x.captureNote)?.captureNote ?? 'no sample'})`,
  ].join('\n');
}

/**
 * A looped demo video for soaks without a source of their own (a temp folder; `cleanup` removes
 * it): 800 Fashion-MNIST frames (clean, then gaussian noise at severity 5) at 56x56, 30 fps, written
 * by `ttaq corrupt --video` in a child process, so the dataset and OpenCV never enter the memory
 * the soak measures.
 */
export function soakVideo(): { path: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'ttaq-soak-'));
  const cleanup = () => rmSync(dir, { recursive: true, force: true });
  const path = join(dir, 'soak.mp4');
  const spec = join(dir, 'stream.json');
  writeFileSync(spec, JSON.stringify({ domains: ['clean', 'gaussian_noise'], perDomain: 400, order: { kind: 'runs', meanRun: 16 } }));
  const bin = fileURLToPath(new URL('../bin/ttaq.js', import.meta.url));
  const r = spawnSync(process.execPath, [bin, 'corrupt', '--video', path, '--stream', spec, '--size', '56', '--fps', '30', '--limit', '1000', '--quiet'], { encoding: 'utf8' });
  if (r.status !== 0 || !existsSync(path)) {
    cleanup();
    throw new TtaqError('INTERNAL', `ttaq corrupt --video could not write the soak video (exit ${r.status}): ${(r.stderr ?? '').trim().slice(-500)}; pass a video with --source`);
  }
  return { path, cleanup };
}
