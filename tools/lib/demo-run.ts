// Pieces of `ttaq demo` that are worth testing on their own: the demo's settings and their
// defaults, the agent configuration it runs, running the agent over a labelled video, and scoring
// its logged predictions per domain. The orchestration (child processes, broker, receiver,
// dashboard, Ctrl-C) lives in tools/demo.ts.
import pino from 'pino';
import { z } from 'zod';
import { Agent } from '../../device/agent.ts';
import { parseAgentConfig, type AgentConfig } from '../../device/config.ts';
import { AgentStore } from '../../device/store.ts';
import type { VideoLabels } from '../../sdk/data/index.ts';
import { TtaqError } from '../../sdk/errors/index.ts';
import { DEFAULT_MODEL_PATH } from '../../sdk/bundled/index.ts';

/** Settings of one demo run; the defaults are the full demo, QUICK_DEMO the one a test runs. */
export const DemoSettingsSchema = z.strictObject({
  /** Bundled FP32 model (its manifest beside it). */
  model: z.string().default(DEFAULT_MODEL_PATH),
  wBits: z.number().int().default(4),
  aBits: z.number().int().default(4),
  /** Quantization method and preset of `ttaq quantize`. */
  method: z.string().default('ttaq'),
  preset: z.string().default('fast'),
  /**
   * Iterations per block; overrides the preset. Unset, the demo runs the fast preset (~500 per block:
   * about 4 CPU-minutes for ResNet-20's 11 blocks on one core); --iterations 100 for a shorter demo.
   */
  iterations: z.number().int().positive().optional(),
  calibImages: z.number().int().positive().default(256),
  /** Clean test images for the quantized model's accuracy report. */
  evalImages: z.number().int().positive().default(1000),
  /** Stream domains in visiting order ('clean' = no corruption), severity 5. */
  domains: z.array(z.string()).min(1).default(['clean', 'gaussian_noise', 'motion_blur', 'fog', 'contrast', 'pixelate']),
  severity: z.number().int().min(1).max(5).default(5),
  perDomain: z.number().int().positive().default(400),
  /** Video frame side (the agent resizes back to the model's 28x28). */
  frameSize: z.number().int().positive().default(56),
  batch: z.number().int().positive().default(8),
  adaptMethod: z.string().default('abl:robust'),
  seed: z.number().int().default(0),
});
export type DemoSettings = z.infer<typeof DemoSettingsSchema>;

export const FULL_DEMO: DemoSettings = DemoSettingsSchema.parse({});
export const QUICK_DEMO: DemoSettings = DemoSettingsSchema.parse({
  method: 'minmax', calibImages: 64, evalImages: 200, domains: ['clean', 'gaussian_noise', 'contrast'], perDomain: 48, frameSize: 28,
});

/** A key naming what a run directory holds, so a rerun reuses only matching results. */
export const settingsKey = (s: DemoSettings): string => JSON.stringify(s);

export interface DomainScore {
  readonly domain: string;
  readonly frames: number;
  readonly correct: number;
  /** correct / frames, 0 when no frame was scored. */
  readonly accuracy: number;
}

/**
 * Accuracy per domain of logged predictions (`seq` = frame index in the video) against the video's
 * label sidecar, in the order the domains appear; `all` last. Frames without a prediction count as
 * wrong (a dropped frame is a miss), predictions for frames beyond the labels are ignored.
 */
export function scoreByDomain(predictions: readonly { seq: number; label: number }[], labels: VideoLabels): DomainScore[] {
  const n = labels.labels.length;
  const pred = new Int32Array(n).fill(-1);
  for (const p of predictions) if (p.seq >= 0 && p.seq < n) pred[p.seq] = p.label;
  const names = labels.domainNames.length ? labels.domainNames : ['stream'];
  const frames = new Array<number>(names.length).fill(0);
  const correct = new Array<number>(names.length).fill(0);
  for (let t = 0; t < n; t++) {
    const d = labels.domain?.[t] ?? 0;
    if (d >= names.length) throw new TtaqError('DATA_BAD_SPEC', `frame ${t} of ${labels.video} has domain index ${d} but the sidecar names ${names.length} domains; regenerate the video with ttaq corrupt --video`);
    frames[d]!++;
    if (pred[t] === labels.labels[t]) correct[d]!++;
  }
  const rows: DomainScore[] = [];
  const seen = new Set<number>();
  for (let t = 0; t < n; t++) {
    const d = labels.domain?.[t] ?? 0;
    if (seen.has(d)) continue;
    seen.add(d);
    rows.push({ domain: names[d]!, frames: frames[d]!, correct: correct[d]!, accuracy: frames[d]! ? correct[d]! / frames[d]! : 0 });
  }
  const F = frames.reduce((a, b) => a + b, 0), C = correct.reduce((a, b) => a + b, 0);
  rows.push({ domain: 'all', frames: F, correct: C, accuracy: F ? C / F : 0 });
  return rows;
}

/** The agent configuration the demo runs: every frame of the video, CPU, prediction log on, telemetry to the demo broker. */
export function demoAgentConfig(o: {
  video: string; model: string; db: string; adapt: boolean; settings: DemoSettings; brokerUrl?: string; deviceId: string;
}): AgentConfig {
  return parseAgentConfig({
    source: { uri: o.video, mode: 'all', loop: false, realtime: false },
    model: { path: o.model, providers: ['cpu'] },
    batch: { size: o.settings.batch, maxWaitMs: 100 },
    adaptation: { enabled: o.adapt, method: o.settings.adaptMethod, restore: false, checkpointEvery: 1000 },
    storage: { path: o.db, predictionLog: { enabled: true, maxRows: 1_000_000 } },
    telemetry: o.brokerUrl ? { enabled: true, url: o.brokerUrl, deviceId: o.deviceId, intervalSec: 1 } : { enabled: false },
    http: { enabled: false },
    log: { level: 'warn' },
  }, 'demo agent config');
}

export interface AgentRun {
  readonly predictions: { seq: number; label: number }[];
  readonly frames: number;
  readonly adaptSteps: number;
  readonly seconds: number;
  readonly reason: string;
}

/**
 * Runs the agent (device/) in this process over the whole video and returns its logged
 * predictions. `onFrames` is called about twice a second; `register` receives a stop function
 * (for Ctrl-C).
 */
export async function runAgentOverVideo(config: AgentConfig, o: { onFrames?: (frames: number) => void; register?: (stop: () => Promise<void>) => void } = {}): Promise<AgentRun> {
  const t0 = performance.now();
  const agent = await Agent.create(config, { logger: pino({ level: config.log.level }) });
  o.register?.(async () => { await agent.stop('signal'); });
  const timer = setInterval(() => o.onFrames?.(Number(agent.health().body.framesProcessed ?? 0)), 500);
  let exit;
  try {
    await agent.start();
    exit = await agent.done();
  } finally {
    clearInterval(timer);
  }
  if (exit.reason === 'error' || exit.reason === 'source-failed') {
    throw new TtaqError('DEMO_STEP_FAILED', `the agent stopped with ${exit.reason}${exit.detail ? `: ${exit.detail}` : ''} while reading ${config.source.uri}; rerun with --fresh to rebuild the video and model`);
  }
  const st = AgentStore.open(config.storage.path);
  try {
    const predictions = st.db.prepare('SELECT seq, label FROM predictions WHERE run_id = ? ORDER BY id').all(agent.runId) as { seq: number; label: number }[];
    return { predictions, frames: exit.framesProcessed, adaptSteps: exit.steps, seconds: (performance.now() - t0) / 1000, reason: exit.reason };
  } finally {
    st.close();
  }
}

/** The result table: one row per domain, accuracy without and with adaptation. */
export function resultTable(source: readonly DomainScore[], adapted: readonly DomainScore[]): string {
  const pct = (x: number) => (100 * x).toFixed(1).padStart(6);
  const w = Math.max(6, ...source.map((r) => r.domain.length));
  const lines = [`${'domain'.padEnd(w)}  frames  no adapt  adapted  change`, `${'-'.repeat(w)}  ------  --------  -------  ------`];
  for (let i = 0; i < source.length; i++) {
    const s = source[i]!, a = adapted.find((r) => r.domain === s.domain);
    const d = a ? 100 * (a.accuracy - s.accuracy) : NaN;
    lines.push(`${s.domain.padEnd(w)}  ${String(s.frames).padStart(6)}  ${pct(s.accuracy)} %  ${a ? pct(a.accuracy) : '     -'} %  ${(d >= 0 ? '+' : '') + d.toFixed(1)}`);
  }
  return lines.join('\n');
}
