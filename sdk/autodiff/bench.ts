// Time of one gradient step on a bundled CNN and the share spent outside onnxruntime's Session.run
// (feed assembly, result unpacking) and in the JavaScript optimizer update.
// Run: node --import tsx sdk/autodiff/bench.ts [--arch resnet20|mobilenet] [--batch 16] [--size 28] [--steps 10]
//        [--threads N] [--no-spin] [--ab]   (--ab: legacy vs current Conv backward, alternating step by step)
import { buildNet, type Arch } from '../nn/index.ts';
import { f32, i64 } from '../onnx/tensor.ts';
import { Sgd } from '../optim/optimizers.ts';
import { buildGradientGraph } from './graph.ts';
import { LEGACY_CONV_GRAD } from './rules/convgrad.ts';
import type { RuleOptions } from './rules/types.ts';
import type { SessionOptions } from '../runtime/index.ts';
import { withSoftmaxCrossEntropy } from './loss.ts';
import { copyParams, GradientStep } from './step.ts';

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
  threads?: number; noSpin?: boolean; ruleOptions?: RuleOptions;
}

function sessionOptions(o: StepBenchOptions): SessionOptions {
  return {
    providers: ['cpu'],
    ...(o.threads ? { intraOpThreads: o.threads, interOpThreads: 1 } : {}),
    ...(o.noSpin ? { extra: { 'session.intra_op.allow_spinning': '0', 'session.inter_op.allow_spinning': '0' } } : {}),
  };
}

/** Legacy vs current Conv backward on the same net, alternating steps; median images/s of each. */
export async function abStep(o: StepBenchOptions = {}): Promise<{ legacy: number; current: number; speedup: number }> {
  const arch = o.arch ?? 'resnet20';
  const batch = o.batch ?? 128;
  const size = o.size ?? 28;
  const net = buildNet({ arch, height: size, width: size, channels: 1, numClasses: 10 }, 'train');
  const { model, loss } = withSoftmaxCrossEntropy(net.model, net.output, { labels: 'int64', classes: 10 });
  const outputs = [net.output, ...net.bns.flatMap((b) => [b.batchMean, b.batchVar])];
  const make = async (ruleOptions: RuleOptions): Promise<GradientStep> =>
    GradientStep.create(await buildGradientGraph({ model, loss, wrt: net.params.map((p) => p.name), outputs, ruleOptions }), { session: sessionOptions(o) });
  const steps = { legacy: await make({ conv: LEGACY_CONV_GRAD }), current: await make({}) };
  const x = f32([batch, 1, size, size], Array.from({ length: batch * size * size }, (_, i) => Math.sin(i * 0.1)));
  const y = i64([batch], Array.from({ length: batch }, (_, i) => i % 10));
  const ms: Record<'legacy' | 'current', number[]> = { legacy: [], current: [] };
  for (let s = 0; s < (o.steps ?? 10) + 1; s++) {
    for (const k of ['legacy', 'current'] as const) {
      const st = steps[k];
      const params = copyParams(st.graph.params);
      const t = performance.now();
      await st.run(params, { [net.input]: x, labels: y });
      if (s > 0) ms[k].push(performance.now() - t);
    }
  }
  for (const st of Object.values(steps)) await st.release();
  const legacy = (1000 * batch) / median(ms.legacy);
  const current = (1000 * batch) / median(ms.current);
  return { legacy, current, speedup: current / legacy };
}

export async function benchStep(o: StepBenchOptions = {}): Promise<StepBenchResult> {
  const arch = o.arch ?? 'resnet20';
  const batch = o.batch ?? 16;
  const size = o.size ?? 28;
  const net = buildNet({ arch, height: size, width: size, channels: 1, numClasses: 10 }, 'train');
  const t0 = performance.now();
  const { model, loss } = withSoftmaxCrossEntropy(net.model, net.output, { labels: 'int64', classes: 10 });
  const gg = await buildGradientGraph({ model, loss, wrt: net.params.map((p) => p.name), outputs: [net.output, ...net.bns.flatMap((b) => [b.batchMean, b.batchVar])], ...(o.ruleOptions ? { ruleOptions: o.ruleOptions } : {}) });
  const step = await GradientStep.create(gg, { session: sessionOptions(o) });
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
    noSpin: process.argv.includes('--no-spin'),
  };
  const r = process.argv.includes('--ab') ? await abStep(opts) : await benchStep(opts);
  console.log(JSON.stringify(r, (_, v) => (typeof v === 'number' ? Number(v.toPrecision(4)) : v), 2));
}
