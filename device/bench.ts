// The agent's pipeline benchmark (issue 7): frames/s and capture-to-prediction latency of the whole
// agent (capture process, preprocessing, batching, model, bookkeeping) in steady state, against the
// model alone: the same runner (same model, same graphs, same session options) called back to back
// on a ready batch of the same size. Start-up (model load, capture process) and a warm-up are left
// out of the steady-state figures and reported on their own. Agent and model-only runs alternate in
// one process and the figures are medians over the repetitions (the machine is shared and noisy).
// Besides wall-clock throughput, CPU time per frame is counted (this process plus the capture
// process, from /proc): on a machine busy with other work, wall-clock rates say more about the
// neighbours than about the agent, while CPU time per frame still says what the pipeline costs.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { fashionMnistDir, materializeStream, numClasses, planStream, readFashionMnist, resolveStreamSpec, take, writeLabelledVideo } from '../sdk/data/index.ts';
import { TtaqError } from '../sdk/errors/index.ts';
import { Agent, type AgentDeps, type BatchTiming } from './agent.ts';
import { parseAgentConfig, type AgentConfig } from './config.ts';
import type { FrameBatch } from './ports.ts';
import { DEFAULT_MODEL_PATH } from '../sdk/bundled/index.ts';

export interface AgentBenchOptions {
  /** FP32 model with its manifest beside it (default the bundled ResNet-20). */
  readonly model?: string;
  /** A video to loop; default: 800 Fashion-MNIST frames (clean, then gaussian noise 5) at 56x56, written to a temp folder. */
  readonly video?: string;
  readonly batch?: number;
  /** Frames measured per agent run, after the warm-up (default 2400 without adaptation, 800 with). */
  readonly frames?: number;
  /**
   * Frames processed before the measurement starts (default 2400 without adaptation, 400 with):
   * the capture path keeps speeding up for a few thousand frames (JIT, decoder), and steady state
   * is what a long-running agent sees.
   */
  readonly warmupFrames?: number;
  /** Which runs: without and/or with adaptation (default both). */
  readonly adapt?: readonly boolean[];
  readonly method?: string;
  /** onnxruntime intra-op threads (default: onnxruntime's). */
  readonly threads?: number;
  /** onnxruntime workers spin between runs (default: the agent's default, off); agent and model alone alike. */
  readonly spinning?: boolean;
  /** Alternations of model-only and agent runs (default 3); figures are medians. */
  readonly reps?: number;
  /** Keep the SQLite prediction log on, as the demo runs it (default true). */
  readonly predictionLog?: boolean;
  readonly log?: (line: string) => void;
}

export interface AgentBenchRow {
  readonly adapt: boolean;
  readonly batch: number;
  /** Agent frames/s in steady state. */
  readonly agentFps: number;
  /** The same runner alone on a ready batch, frames/s. */
  readonly modelFps: number;
  /** 1 - agentFps / modelFps: the share of throughput the pipeline costs (goal <= 0.10). */
  readonly overhead: number;
  /** Capture-to-prediction latency per frame in steady state. */
  readonly latencyP50Ms: number;
  readonly latencyP95Ms: number;
  /** Per batch inside the agent (medians): waiting for frames, the runner call, the bookkeeping after it. */
  readonly collectMs: number;
  readonly modelMs: number;
  readonly afterMs: number;
  /** The runner alone, ms per batch (median). */
  readonly modelOnlyMs: number;
  /** From Agent.create to the first batch done (model load, capture process start, first frames). */
  readonly startupMs: number;
  /** CPU time per frame in steady state (ms): agent process, capture process, and the runner alone. */
  readonly agentCpuMsPerFrame: number;
  readonly captureCpuMsPerFrame: number;
  readonly modelCpuMsPerFrame: number;
  /** (agent + capture CPU) / model-alone CPU - 1: the pipeline's CPU cost over the model's. */
  readonly cpuOverhead: number;
  /** Frames measured per run and repetitions. */
  readonly frames: number;
  readonly reps: number;
}

const median = (a: readonly number[]): number => {
  if (!a.length) return NaN;
  const s = [...a].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

const quantile = (a: readonly number[], q: number): number => {
  if (!a.length) return NaN;
  const s = [...a].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.max(0, Math.round(q * (s.length - 1))))]!;
};

/** The default benchmark video: clean then gaussian-noise Fashion-MNIST test images. */
export async function writeBenchVideo(path: string, frames = 800, size = 56): Promise<string> {
  const data = take(await readFashionMnist('test', fashionMnistDir()), 1000);
  const spec = resolveStreamSpec({ domains: ['clean', 'gaussian_noise'], perDomain: Math.ceil(frames / 2), order: { kind: 'runs', meanRun: 16 } });
  const stream = materializeStream(planStream(spec, data.labels, numClasses(data)), data);
  await writeLabelledVideo(path, stream, { fps: 30, size, domainNames: stream.domainNames, domain: stream.domain, severity: stream.severity, stream: spec });
  return path;
}

/** The agent config the benchmark runs: the video looped, every frame, CPU, no HTTP, no telemetry. */
export function benchAgentConfig(o: { video: string; model: string; db: string; adapt: boolean; batch: number; method: string; threads?: number; spinning?: boolean; maxFrames: number; predictionLog: boolean }): AgentConfig {
  return parseAgentConfig({
    source: { uri: o.video, mode: 'all', loop: true, realtime: false },
    model: { path: o.model, providers: ['cpu'], ...(o.threads ? { intraOpThreads: o.threads } : {}), ...(o.spinning !== undefined ? { spinning: o.spinning } : {}) },
    batch: { size: o.batch, maxWaitMs: 100 },
    adaptation: { enabled: o.adapt, method: o.method, restore: false },
    storage: { path: o.db, predictionLog: { enabled: o.predictionLog, maxRows: 1_000_000 } },
    telemetry: { enabled: false },
    http: { enabled: false },
    log: { level: 'warn' },
    maxFrames: o.maxFrames,
  }, 'agent bench config');
}

export interface AgentRunFigures { fps: number; latencies: number[]; collect: number[]; model: number[]; after: number[]; startupMs: number; cpuMsPerFrame: number; captureCpuMsPerFrame: number }

/** CPU time (ms, user + system) a process has used so far, from /proc; NaN where unreadable. */
export function processCpuMs(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    // utime and stime are fields 14 and 15 of the file (clock ticks, 100 per second on Linux).
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return NaN;
  }
}

const cpuNowMs = (): number => {
  const c = process.cpuUsage();
  return (c.user + c.system) / 1000;
};

/** One agent run: steady-state frames/s after `warmup` frames, per-batch timings. */
export async function measureAgentRun(config: AgentConfig, warmup: number, deps: AgentDeps = {}): Promise<AgentRunFigures> {
  const timings: BatchTiming[] = [];
  const t0 = performance.now();
  let agent: Agent | undefined;
  let seenFrames = 0;
  const cpu = { from: NaN, to: NaN, childFrom: NaN, childTo: NaN, frames: 0 };
  // CPU snapshots at the end of the warm-up and at the last batch (the capture process exits after it).
  const onBatch = (b: BatchTiming): void => {
    timings.push(b);
    const before = seenFrames;
    seenFrames += b.frames;
    const pid = agent?.captureProcessId;
    if (before < warmup && seenFrames >= warmup) {
      cpu.from = cpuNowMs();
      cpu.childFrom = pid ? processCpuMs(pid) : NaN;
      cpu.frames = -seenFrames;
    } else if (seenFrames >= config.maxFrames && Number.isFinite(cpu.from)) {
      cpu.to = cpuNowMs();
      cpu.childTo = pid ? processCpuMs(pid) : NaN;
      cpu.frames += seenFrames;
    }
  };
  agent = await Agent.create(config, { logger: pino({ level: 'warn' }), ...deps, onBatch });
  await agent.start();
  const exit = await agent.done();
  if (exit.reason !== 'max-frames') throw new TtaqError('INTERNAL', `agent benchmark run stopped with ${exit.reason}${exit.detail ? `: ${exit.detail}` : ''} after ${exit.framesProcessed} frames (source ${config.source.uri})`);
  let seen = 0;
  let i = 0;
  while (i < timings.length && seen < warmup) seen += timings[i++]!.frames;
  const steady = timings.slice(i);
  if (steady.length < 2 || i === 0) throw new TtaqError('INTERNAL', `agent benchmark: only ${timings.length} batches, too few to measure after a warm-up of ${warmup} frames; raise frames`);
  const frames = steady.reduce((s, b) => s + b.frames, 0);
  const fps = (1000 * frames) / (steady[steady.length - 1]!.doneAt - timings[i - 1]!.doneAt);
  return {
    fps,
    latencies: steady.flatMap((b) => b.latencyMs),
    collect: steady.map((b) => b.collectMs),
    model: steady.map((b) => b.modelMs),
    after: steady.map((b) => b.afterMs),
    startupMs: timings[0]!.doneAt - t0,
    cpuMsPerFrame: (cpu.to - cpu.from) / cpu.frames,
    captureCpuMsPerFrame: (cpu.childTo - cpu.childFrom) / cpu.frames,
  };
}

/**
 * The model alone: the agent's runner for this config, called back to back on one ready batch.
 * Returns the wall time of each call and the CPU time per frame over all calls.
 */
export async function measureModelOnly(config: AgentConfig, batches: number): Promise<{ ms: number[]; cpuMsPerFrame: number }> {
  const { createRunnerFactory } = await import('./runner.ts');
  const runner = await createRunnerFactory(config, () => {})({ path: config.model.path, manifest: config.model.manifest });
  try {
    const { channels: c, height: h, width: w } = runner.info.preprocess;
    const n = config.batch.size;
    const data = new Float32Array(n * c * h * w);
    // A fixed, image-like batch: smooth values in the normalised range (no randomness needed).
    for (let k = 0; k < data.length; k++) data[k] = Math.sin(k * 0.37) * 1.2;
    const batch: FrameBatch = { data, dims: [n, c, h, w], frames: Array.from({ length: n }, (_, seq) => ({ seq, capturedAt: 0 })) };
    const call = () => (config.adaptation.enabled && runner.adapt ? runner.adapt(batch) : runner.infer(batch));
    for (let k = 0; k < 5; k++) await call();
    const ms: number[] = [];
    const c0 = cpuNowMs();
    for (let k = 0; k < batches; k++) {
      const t = performance.now();
      await call();
      ms.push(performance.now() - t);
    }
    return { ms, cpuMsPerFrame: (cpuNowMs() - c0) / (batches * n) };
  } finally {
    await runner.dispose();
  }
}

/**
 * Agent vs model-only throughput, with and without adaptation. `ttaq bench --only agent` calls this
 * (one figure per row: agentFps with ratio agentFps / modelFps).
 */
export async function benchAgent(o: AgentBenchOptions = {}): Promise<AgentBenchRow[]> {
  const log = o.log ?? (() => {});
  const dir = mkdtempSync(join(tmpdir(), 'ttaq-agent-bench-'));
  try {
    const model = o.model ?? DEFAULT_MODEL_PATH;
    const batch = o.batch ?? 8;
    const reps = o.reps ?? 3;
    const method = o.method ?? 'abl:robust';
    const video = o.video ?? (await writeBenchVideo(join(dir, 'bench.mp4')));
    const rows: AgentBenchRow[] = [];
    const acc = new Map<boolean, { fps: number[]; model: number[]; modelCpu: number[]; runs: AgentRunFigures[]; frames: number }>();
    for (let r = 0; r < reps; r++) {
      for (const adapt of o.adapt ?? [false, true]) {
        const frames = o.frames ?? (adapt ? 800 : 2400);
        const warmup = o.warmupFrames ?? (adapt ? 400 : 2400);
        const config = benchAgentConfig({ video, model, db: join(dir, `agent-${adapt}-${r}.db`), adapt, batch, method, maxFrames: warmup + frames, predictionLog: o.predictionLog ?? true, ...(o.threads ? { threads: o.threads } : {}), ...(o.spinning !== undefined ? { spinning: o.spinning } : {}) });
        const a = acc.get(adapt) ?? { fps: [], model: [], modelCpu: [], runs: [], frames };
        acc.set(adapt, a);
        const m = await measureModelOnly(config, Math.max(20, Math.round(frames / batch / 2)));
        a.model.push(median(m.ms));
        a.modelCpu.push(m.cpuMsPerFrame);
        const run = await measureAgentRun(config, warmup);
        a.runs.push(run);
        a.fps.push(run.fps);
        log(`rep ${r + 1}/${reps} ${adapt ? 'adapt' : 'infer'}: agent ${run.fps.toFixed(0)} frames/s, model alone ${((1000 * batch) / median(m.ms)).toFixed(0)} frames/s (batch ${batch}); per batch: collect ${median(run.collect).toFixed(2)} ms, model ${median(run.model).toFixed(2)} ms, after ${median(run.after).toFixed(2)} ms; CPU per frame: agent ${run.cpuMsPerFrame.toFixed(3)} ms + capture ${run.captureCpuMsPerFrame.toFixed(3)} ms, model alone ${m.cpuMsPerFrame.toFixed(3)} ms`);
      }
    }
    for (const [adapt, a] of acc) {
      const agentFps = median(a.fps);
      const modelOnlyMs = median(a.model);
      const modelFps = (1000 * batch) / modelOnlyMs;
      const lat = a.runs.flatMap((x) => x.latencies);
      rows.push({
        adapt, batch, agentFps, modelFps, overhead: 1 - agentFps / modelFps,
        latencyP50Ms: quantile(lat, 0.5), latencyP95Ms: quantile(lat, 0.95),
        collectMs: median(a.runs.flatMap((x) => x.collect)), modelMs: median(a.runs.flatMap((x) => x.model)), afterMs: median(a.runs.flatMap((x) => x.after)),
        modelOnlyMs, startupMs: median(a.runs.map((x) => x.startupMs)), frames: a.frames,
        agentCpuMsPerFrame: median(a.runs.map((x) => x.cpuMsPerFrame)),
        captureCpuMsPerFrame: median(a.runs.map((x) => x.captureCpuMsPerFrame)),
        modelCpuMsPerFrame: median(a.modelCpu),
        cpuOverhead: (median(a.runs.map((x) => x.cpuMsPerFrame)) + median(a.runs.map((x) => x.captureCpuMsPerFrame))) / median(a.modelCpu) - 1,
        reps,
      });
    }
    return rows;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A benchmark figure in the shape tools/bench.ts prints (BenchFigure). */
export interface AgentBenchFigure { bench: string; name: string; value: number; unit: string; ratio?: number; baseline?: string; goal?: string; note?: string }

/** `benchAgent` rows as figures: agent frames/s (ratio = agent / model alone, goal >= 0.9) and latency. */
export function agentBenchFigures(rows: readonly AgentBenchRow[]): AgentBenchFigure[] {
  return rows.flatMap((r) => {
    const what = `agent ${r.adapt ? 'with' : 'without'} adaptation, batch ${r.batch}`;
    const split = `per batch: waiting for frames ${r.collectMs.toFixed(2)} ms, model ${r.modelMs.toFixed(2)} ms, bookkeeping ${r.afterMs.toFixed(2)} ms; CPU per frame: agent ${r.agentCpuMsPerFrame.toFixed(3)} ms + capture ${r.captureCpuMsPerFrame.toFixed(3)} ms vs model alone ${r.modelCpuMsPerFrame.toFixed(3)} ms`;
    return [
      {
        bench: 'agent', name: `${what}, steady state (${r.frames} frames x ${r.reps})`, value: r.agentFps, unit: 'frames/s', ratio: r.agentFps / r.modelFps,
        baseline: `the same runner alone on a ready batch: ${r.modelFps.toFixed(0)} frames/s, this run (ratio = agent / model alone)`, goal: '>= 0.9 (overhead <= 10 %)',
        note: `${split}; start-up ${(r.startupMs / 1000).toFixed(1)} s not counted`,
      },
      { bench: 'agent', name: `${what}, capture-to-prediction latency p50`, value: r.latencyP50Ms, unit: 'ms', note: `p95 ${r.latencyP95Ms.toFixed(0)} ms; every frame of a file, read as fast as the pipeline takes them` },
    ];
  });
}

/** `node --import tsx device/bench.ts [reps] [threads] [spin|nospin]`: prints the rows as JSON. */
if (import.meta.url === `file://${process.argv[1]}`) {
  const reps = Number(process.argv[2] ?? 3);
  const threads = process.argv[3] ? Number(process.argv[3]) : undefined;
  const spin = process.argv[4];
  const rows = await benchAgent({ reps, ...(threads ? { threads } : {}), ...(spin ? { spinning: spin === 'spin' } : {}), log: (s) => process.stderr.write(`agent bench: ${s}\n`) });
  writeFileSync(1, JSON.stringify(rows, null, 2) + '\n');
}
