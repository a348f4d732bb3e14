// Time of one gradient step on a bundled CNN and the share spent outside onnxruntime's Session.run
// (feed assembly, result unpacking) and in the JavaScript optimizer update.
// Run: node --import tsx sdk/autodiff/bench.ts [--arch resnet20|mobilenet] [--batch 16] [--size 28] [--steps 10]
//        [--threads N] [--spin] [--ab]
//   --ab: gradient-graph formulations on the same net at batch 128, alternating step by step:
//     legacy    ConvTranspose dX, batch-transposed Conv dW, Where Relu backward (LEGACY_CONV_GRAD)
//     previous  Conv dX, dW by one Gemm over concatenated patches (CONCAT_GEMM_CONV_GRAD), Where
//     current   the defaults (per-offset Gemms on shifted copies, Relu as Mul by a Cast mask)
//   medians of wall images/s and of process CPU ms per step (CPU time is steadier on a shared machine;
//   with --threads 1 it is the single-core cost).
import { buildNet, type Arch } from '../nn/index.ts';
import { f32, i64 } from '../onnx/tensor.ts';
import { Sgd } from '../optim/optimizers.ts';
import { benchNet } from './benchnet.ts';
import { buildGradientGraph } from './graph.ts';
import { CONCAT_GEMM_CONV_GRAD, LEGACY_CONV_GRAD } from './rules/convgrad.ts';
import type { RuleOptions } from './rules/types.ts';
import type { ProviderName, SessionOptions } from '../runtime/index.ts';
import { withSoftmaxCrossEntropy } from './loss.ts';
import { batchNormForSession, copyParams, GradientStep } from './step.ts';

export interface StepBenchResult {
  readonly arch: Arch;
  readonly batch: number;
  readonly params: number;
  readonly buildMs: number;
  /** Median per step. */
  readonly stepMs: number;
  readonly sessionMs: number;
  readonly optimizerMs: number;
  /** (step - session) / step: feeds, validation and unpacking around Session.run. */
  readonly outsideShare: number;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export interface StepBenchOptions {
  arch?: Arch; batch?: number; size?: number; steps?: number;
  /** onnxruntime's workers spin between runs (sdk/runtime's default is asleep); for A/B runs. */
  threads?: number; spin?: boolean; ruleOptions?: RuleOptions;
  /** Execution providers (default CPU only): `ttaq providers --train` times a step per provider. */
  providers?: readonly ProviderName[];
}

function sessionOptions(o: StepBenchOptions): SessionOptions {
  return {
    providers: o.providers ?? ['cpu'],
    ...(o.threads ? { intraOpThreads: o.threads, interOpThreads: 1 } : {}),
    ...(o.spin ? { extra: { 'session.intra_op.allow_spinning': '1', 'session.inter_op.allow_spinning': '1' } } : {}),
  };
}

/** Formulations compared by `abStep`. */
export const AB_VARIANTS: Readonly<Record<string, RuleOptions>> = {
  legacy: { conv: LEGACY_CONV_GRAD, relu: 'where' },
  previous: { conv: CONCAT_GEMM_CONV_GRAD, relu: 'where' },
  current: {},
};

export interface AbResult {
  /** Median images/s (wall) per variant. */
  readonly imagesPerSec: Record<string, number>;
  /** Median process CPU ms per step per variant. */
  readonly cpuMsPerStep: Record<string, number>;
  /** Gradient-graph nodes per variant. */
  readonly nodes: Record<string, number>;
  /** current / previous by wall and by CPU time. */
  readonly speedup: { readonly wall: number; readonly cpu: number };
}

/** The variants of AB_VARIANTS on the same net and batch, alternating steps; medians of each. */
export async function abStep(o: StepBenchOptions = {}): Promise<AbResult> {
  const batch = o.batch ?? 128;
  const { model, loss, wrt, outputs, feeds } = benchNet(o.arch ?? 'resnet20', batch, o.size ?? 28);
  const names = Object.keys(AB_VARIANTS);
  const steps = new Map<string, GradientStep>();
  for (const k of names) {
    const gg = await buildGradientGraph({ model, loss, wrt, outputs, ruleOptions: AB_VARIANTS[k]! });
    steps.set(k, await GradientStep.create(gg, { session: sessionOptions(o) }));
  }
  const wall: Record<string, number[]> = {};
  const cpu: Record<string, number[]> = {};
  for (let s = 0; s < (o.steps ?? 10) + 1; s++) {
    for (const k of names) {
      const st = steps.get(k)!;
      const params = copyParams(st.graph.params);
      const t = performance.now();
      const c0 = process.cpuUsage();
      await st.run(params, feeds);
      const c = process.cpuUsage(c0);
      if (s > 0) { (wall[k] ??= []).push(performance.now() - t); (cpu[k] ??= []).push((c.user + c.system) / 1000); }
    }
  }
  const nodes = Object.fromEntries(names.map((k) => [k, steps.get(k)!.graph.model.graph.nodes.length]));
  for (const st of steps.values()) await st.release();
  const imagesPerSec = Object.fromEntries(names.map((k) => [k, (1000 * batch) / median(wall[k]!)]));
  const cpuMsPerStep = Object.fromEntries(names.map((k) => [k, median(cpu[k]!)]));
  return {
    imagesPerSec, cpuMsPerStep, nodes,
    speedup: { wall: imagesPerSec['current']! / imagesPerSec['previous']!, cpu: cpuMsPerStep['previous']! / cpuMsPerStep['current']! },
  };
}

export async function benchStep(o: StepBenchOptions = {}): Promise<StepBenchResult> {
  const arch = o.arch ?? 'resnet20';
  const batch = o.batch ?? 16;
  const size = o.size ?? 28;
  const net = buildNet({ arch, height: size, width: size, channels: 1, numClasses: 10 }, 'train');
  const t0 = performance.now();
  const { model, loss } = withSoftmaxCrossEntropy(net.model, net.output, { labels: 'int64', classes: 10 });
  const session = sessionOptions(o);
  const gg = await buildGradientGraph({ model, loss, wrt: net.params.map((p) => p.name), outputs: [net.output, ...net.bns.flatMap((b) => [b.batchMean, b.batchVar])], batchNorm: batchNormForSession(session), ...(o.ruleOptions ? { ruleOptions: o.ruleOptions } : {}) });
  const step = await GradientStep.create(gg, { session });
  const buildMs = performance.now() - t0;
  const params = copyParams(gg.params);
  const opt = new Sgd({ lr: 0.01, momentum: 0.9 });
  const x = f32([batch, 1, size, size], Array.from({ length: batch * size * size }, (_, i) => Math.sin(i * 0.1)));
  const y = i64([batch], Array.from({ length: batch }, (_, i) => i % 10));
  const total: number[] = [];
  const inside: number[] = [];
  const optMs: number[] = [];
  const steps = o.steps ?? 10;
  for (let s = 0; s < steps + 2; s++) {
    const before = step.timing.sessionMs;
    const t = performance.now();
    const r = await step.run(params, { [net.input]: x, labels: y });
    const t1 = performance.now();
    opt.step(params, r.grads);
    const t2 = performance.now();
    if (s >= 2) { total.push(t1 - t); inside.push(step.timing.sessionMs - before); optMs.push(t2 - t1); }
  }
  await step.release();
  const stepMs = median(total);
  const sessionMs = median(inside);
  const n = [...params.values()].reduce((a, t) => a + t.data.length, 0);
  return { arch, batch, params: n, buildMs, stepMs, sessionMs, optimizerMs: median(optMs), outsideShare: (stepMs - sessionMs) / stepMs };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const arg = (k: string): string | undefined => { const i = process.argv.indexOf(k); return i >= 0 ? process.argv[i + 1] : undefined; };
  const opts: StepBenchOptions = {
    arch: (arg('--arch') as Arch | undefined) ?? 'resnet20',
    batch: Number(arg('--batch') ?? (process.argv.includes('--ab') ? 128 : 16)),
    size: Number(arg('--size') ?? 28),
    steps: Number(arg('--steps') ?? 10),
    ...(arg('--threads') ? { threads: Number(arg('--threads')) } : {}),
    spin: process.argv.includes('--spin'),
  };
  const r = process.argv.includes('--ab') ? await abStep(opts) : await benchStep(opts);
  console.log(JSON.stringify(r, (_, v) => (typeof v === 'number' ? Number(v.toPrecision(4)) : v), 2));
}
