// Time of one gradient step on a bundled CNN and the share spent outside onnxruntime's Session.run
// (feed assembly, result unpacking) and in the JavaScript optimizer update.
// Run: node --import tsx sdk/autodiff/bench.ts [--arch resnet20|mobilenet] [--batch 16] [--size 28] [--steps 10]
import { buildNet, type Arch } from '../nn/index.ts';
import { f32, i64 } from '../onnx/tensor.ts';
import { Sgd } from '../optim/optimizers.ts';
import { buildGradientGraph } from './graph.ts';
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

export async function benchStep(o: { arch?: Arch; batch?: number; size?: number; steps?: number } = {}): Promise<StepBenchResult> {
  const arch = o.arch ?? 'resnet20';
  const batch = o.batch ?? 16;
  const size = o.size ?? 28;
  const net = buildNet({ arch, height: size, width: size, channels: 1, numClasses: 10 }, 'train');
  const t0 = performance.now();
  const { model, loss } = withSoftmaxCrossEntropy(net.model, net.output, { labels: 'int64', classes: 10 });
  const gg = await buildGradientGraph({ model, loss, wrt: net.params.map((p) => p.name), outputs: [net.output, ...net.bns.flatMap((b) => [b.batchMean, b.batchVar])] });
  const step = await GradientStep.create(gg, { session: { providers: ['cpu'] } });
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
  const r = await benchStep({
    arch: (arg('--arch') as Arch | undefined) ?? 'resnet20',
    batch: Number(arg('--batch') ?? 16),
    size: Number(arg('--size') ?? 28),
    steps: Number(arg('--steps') ?? 10),
  });
  console.log(JSON.stringify(r, (_, v) => (typeof v === 'number' ? Number(v.toPrecision(4)) : v), 2));
}
