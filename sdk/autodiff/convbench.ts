// A/B timing of Conv's backward formulations on single convs (forward + one gradient), alternating
// the variants run by run in one process and quoting medians (the machine may be shared).
// Run: node --import tsx sdk/autodiff/convbench.ts [--batch 128] [--threads 2] [--reps 15] [--only resnet|mobilenet|dw]
//        [--dw-only] [--cpu]   (--cpu: process CPU ms instead of wall ms, steadier on a loaded machine
//        with --threads 1)
import { A, GraphBuilder } from '../onnx/builder.ts';
import { f32 } from '../onnx/tensor.ts';
import type { Model, Tensor } from '../onnx/types.ts';
import { createSession, type Session } from '../runtime/index.ts';
import { buildGradientGraph } from './graph.ts';
import type { ConvGradOptions } from './rules/convgrad.ts';

export interface ConvShape {
  readonly name: string;
  readonly cin: number;
  readonly cout: number;
  readonly size: number;
  readonly k: number;
  readonly stride: number;
  readonly group: number;
}

export const RESNET20_28: readonly ConvShape[] = [
  { name: 'r20 stem 3x3 1-16 @28', cin: 1, cout: 16, size: 28, k: 3, stride: 1, group: 1 },
  { name: 'r20 3x3 16-16 @28', cin: 16, cout: 16, size: 28, k: 3, stride: 1, group: 1 },
  { name: 'r20 3x3 16-32 s2 @28', cin: 16, cout: 32, size: 28, k: 3, stride: 2, group: 1 },
  { name: 'r20 1x1 16-32 s2 @28', cin: 16, cout: 32, size: 28, k: 1, stride: 2, group: 1 },
  { name: 'r20 3x3 32-32 @14', cin: 32, cout: 32, size: 14, k: 3, stride: 1, group: 1 },
  { name: 'r20 3x3 32-64 s2 @14', cin: 32, cout: 64, size: 14, k: 3, stride: 2, group: 1 },
  { name: 'r20 1x1 32-64 s2 @14', cin: 32, cout: 64, size: 14, k: 1, stride: 2, group: 1 },
  { name: 'r20 3x3 64-64 @7', cin: 64, cout: 64, size: 7, k: 3, stride: 1, group: 1 },
];

export const MOBILENET_28: readonly ConvShape[] = [
  { name: 'mb dw3x3 96 @14', cin: 96, cout: 96, size: 14, k: 3, stride: 1, group: 96 },
  { name: 'mb dw3x3 144 s2 @14', cin: 144, cout: 144, size: 14, k: 3, stride: 2, group: 144 },
  { name: 'mb pw1x1 24-144 @14', cin: 24, cout: 144, size: 14, k: 1, stride: 1, group: 1 },
  { name: 'mb g4 3x3 32-32 @14', cin: 32, cout: 32, size: 14, k: 3, stride: 1, group: 4 },
];

/** The depthwise 3x3 convs of the bundled MobileNet-V2-style net (sdk/nn/mobilenet.ts) at 28x28. */
export const MOBILENET_DW_28: readonly ConvShape[] = [
  { name: 'dw3x3 16 @28', cin: 16, cout: 16, size: 28, k: 3, stride: 1, group: 16 },
  { name: 'dw3x3 96 s2 @28', cin: 96, cout: 96, size: 28, k: 3, stride: 2, group: 96 },
  { name: 'dw3x3 144 @14', cin: 144, cout: 144, size: 14, k: 3, stride: 1, group: 144 },
  { name: 'dw3x3 144 s2 @14', cin: 144, cout: 144, size: 14, k: 3, stride: 2, group: 144 },
  { name: 'dw3x3 192 @7', cin: 192, cout: 192, size: 7, k: 3, stride: 1, group: 192 },
  { name: 'dw3x3 384 @7', cin: 384, cout: 384, size: 7, k: 3, stride: 1, group: 384 },
];

function convModel(s: ConvShape, batch: number): Model {
  const b = new GraphBuilder('convbench');
  b.input('x', 'float32', [batch, s.cin, s.size, s.size]);
  const n = s.cout * (s.cin / s.group) * s.k * s.k;
  b.initializer('w', f32([s.cout, s.cin / s.group, s.k, s.k], Array.from({ length: n }, (_, i) => Math.sin(i) * 0.1)));
  const pad = (s.k - 1) >> 1;
  const y = b.op1('Conv', ['x', 'w'], { kernel_shape: A.ints([s.k, s.k]), strides: A.ints([s.stride, s.stride]), pads: A.ints([pad, pad, pad, pad]), group: A.int(s.group) });
  const loss = b.op1('ReduceSum', [b.op1('Mul', [y, y])], { keepdims: A.int(0) }, { outputNames: ['loss'] });
  b.output(loss, 'float32', []);
  return { irVersion: 8, opsetImports: [{ domain: '', version: 17 }], producerName: 'bench', producerVersion: '0', metadata: {}, graph: b.build() };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Median ms of forward + the gradient of `wrt` per variant. */
export async function benchConv(s: ConvShape, wrt: 'x' | 'w', variants: Record<string, ConvGradOptions>, o: { batch: number; threads: number; reps: number; cpu?: boolean }): Promise<Record<string, number>> {
  const m = convModel(s, o.batch);
  const x = f32([o.batch, s.cin, s.size, s.size], Array.from({ length: o.batch * s.cin * s.size * s.size }, (_, i) => Math.cos(i * 0.01)));
  const sessions: [string, Session, Record<string, Tensor>][] = [];
  for (const [name, conv] of Object.entries(variants)) {
    const gg = await buildGradientGraph({ model: m, loss: 'loss', wrt: [wrt], ruleOptions: { conv }, sampleBatch: o.batch });
    const sess = await createSession(gg.model, { providers: ['cpu'], intraOpThreads: o.threads, interOpThreads: 1 });
    const feeds: Record<string, Tensor> = { x };
    for (const [k, t] of gg.params) feeds[k] = t;
    sessions.push([name, sess, feeds]);
  }
  const times: Record<string, number[]> = {};
  for (let r = 0; r < o.reps + 1; r++) {
    for (const [name, sess, feeds] of sessions) {
      const t = performance.now();
      const c0 = process.cpuUsage();
      await sess.run(feeds);
      const c = process.cpuUsage(c0);
      if (r > 0) (times[name] ??= []).push(o.cpu ? (c.user + c.system) / 1000 : performance.now() - t);
    }
  }
  for (const [, sess] of sessions) await sess.release();
  return Object.fromEntries(Object.entries(times).map(([k, v]) => [k, median(v)]));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const arg = (k: string): string | undefined => { const i = process.argv.indexOf(k); return i >= 0 ? process.argv[i + 1] : undefined; };
  const o = { batch: Number(arg('--batch') ?? 128), threads: Number(arg('--threads') ?? 2), reps: Number(arg('--reps') ?? 15), cpu: process.argv.includes('--cpu') };
  const only = arg('--only');
  const shapes = only === 'dw' ? MOBILENET_DW_28 : [...(only !== 'mobilenet' ? RESNET20_28 : []), ...(only !== 'resnet' ? MOBILENET_28 : [])];
  const fmt = (r: Record<string, number>): string => Object.entries(r).map(([k, v]) => `${k} ${v.toFixed(2)}`).join('  ');
  for (const s of shapes) {
    const depthwise = s.group === s.cin && s.cin === s.cout;
    const dx = process.argv.includes('--dw-only') ? {} : await benchConv(s, 'x', {
      convTranspose: { input: 'convTranspose', weight: 'conv' }, conv: { input: 'conv', weight: 'conv' },
      ...(s.stride > 1 && s.group === 1 && s.k > 1 ? { phase: { input: 'phase', weight: 'conv' } } : {}),
    }, o);
    const dw = await benchConv(s, 'w', depthwise
      ? { conv: { input: 'conv', weight: 'conv' }, gemm: { input: 'conv', weight: 'gemm' }, shifted: { input: 'conv', weight: 'shifted' }, rowgemm: { input: 'conv', weight: 'rowgemm' } }
      : {
        conv: { input: 'conv', weight: 'conv' }, gemm: { input: 'conv', weight: 'gemm' }, gemmsplit: { input: 'conv', weight: 'gemmsplit' },
        shifted: { input: 'conv', weight: 'shifted' }, onehot: { input: 'conv', weight: 'onehot' },
        ...(s.stride === 1 && s.k > 1 ? { shiftmm: { input: 'conv', weight: 'shiftmm' }, shiftmmb: { input: 'conv', weight: 'shiftmmb' } } : {}),
      }, o);
    console.log(`${s.name.padEnd(22)} fwd+dX: ${fmt(dx)}  |  fwd+dW: ${fmt(dw)}`);
  }
}
