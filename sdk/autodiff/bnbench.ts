// Batch-statistics BN, 'op' and 'fused' (closed-form backward) vs 'primitive' lowering, on a bundled CNN:
// gradient-graph node counts (with the Shape/Size/Expand nodes left and what consumes them) and
// the median training-step time of each, alternating step by step in one process.
// Run: node --import tsx sdk/autodiff/bnbench.ts [--arch resnet20|mobilenet] [--batch 128] [--size 28]
//        [--steps 10] [--threads 1] [--no-time]
import type { Arch } from '../nn/index.ts';
import type { Graph } from '../onnx/types.ts';
import type { BatchNormLowering } from './bn.ts';
import { benchNet } from './benchnet.ts';
import { buildGradientGraph, type GradientGraph } from './graph.ts';
import { copyParams, GradientStep } from './step.ts';

export interface GraphCounts {
  readonly nodes: number;
  readonly byOp: Record<string, number>;
  /** Shape/Size/Expand nodes: "op <- consumer op types" -> count. */
  readonly shapeOps: Record<string, number>;
}

export function countNodes(g: Graph): GraphCounts {
  const byOp: Record<string, number> = {};
  for (const n of g.nodes) byOp[n.opType] = (byOp[n.opType] ?? 0) + 1;
  const consumers = new Map<string, string[]>();
  for (const n of g.nodes) for (const x of n.inputs) if (x) (consumers.get(x) ?? consumers.set(x, []).get(x)!).push(n.opType);
  const shapeOps: Record<string, number> = {};
  for (const n of g.nodes) {
    if (n.opType !== 'Shape' && n.opType !== 'Size' && n.opType !== 'Expand') continue;
    const k = `${n.opType}(${n.name.replace(/_\d+$/, '')}) -> ${[...new Set(consumers.get(n.outputs[0]!) ?? [])].sort().join('/') || 'output'}`;
    shapeOps[k] = (shapeOps[k] ?? 0) + 1;
  }
  return { nodes: g.nodes.length, byOp, shapeOps };
}

export interface BnBenchOptions {
  arch?: Arch; batch?: number; size?: number; steps?: number; threads?: number; time?: boolean;
}

export interface BnBenchResult {
  readonly arch: Arch;
  readonly batch: number;
  readonly forwardNodes: number;
  readonly counts: Record<BatchNormLowering, GraphCounts>;
  /** Median wall ms per step (GradientStep.run of the whole gradient graph), when timed. */
  readonly stepMs?: Record<BatchNormLowering, number>;
  /** primitive / op and fused / op, from the medians. */
  readonly speedup?: { readonly primitive: number; readonly fused: number };
  /** Median process CPU ms per step (less sensitive than wall time to other jobs on the machine). */
  readonly cpuMs?: Record<BatchNormLowering, number>;
  /** Every timed step (wall ms), in run order. */
  readonly samples?: Record<BatchNormLowering, number[]>;
  /** max |other - primitive| / max |primitive| over all gradients and the other lowerings, first step. */
  readonly gradRelDiff: number;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export async function bnBench(o: BnBenchOptions = {}): Promise<BnBenchResult> {
  const arch = o.arch ?? 'resnet20';
  const batch = o.batch ?? 128;
  const size = o.size ?? 28;
  const { model, loss, wrt, outputs, feeds } = benchNet(arch, batch, size);
  const lowerings: BatchNormLowering[] = ['primitive', 'fused', 'op'];
  const per = <T>(f: (l: BatchNormLowering) => T): Record<BatchNormLowering, T> => Object.fromEntries(lowerings.map((l) => [l, f(l)])) as Record<BatchNormLowering, T>;
  const graphs = {} as Record<BatchNormLowering, GradientGraph>;
  for (const l of lowerings) {
    graphs[l] = await buildGradientGraph({ model, loss, wrt, outputs, batchNorm: { lowering: l } });
  }
  const counts = per((l) => countNodes(graphs[l].model.graph));
  const session = { providers: ['cpu'] as const, intraOpThreads: o.threads ?? 1, interOpThreads: 1 };
  const steps = {} as Record<BatchNormLowering, GradientStep>;
  for (const l of lowerings) steps[l] = await GradientStep.create(graphs[l], { session: { ...session, providers: ['cpu'] } });
  const ms = per((): number[] => []);
  const cpu = per((): number[] => []);
  const params = copyParams(graphs.op.params);
  let gradRelDiff = 0;
  const total = o.time === false ? 1 : (o.steps ?? 10) + 1;
  for (let s = 0; s < total; s++) {
    const res = {} as Record<BatchNormLowering, Awaited<ReturnType<GradientStep['run']>>>;
    for (const l of s % 2 ? [...lowerings].reverse() : lowerings) {
      const c0 = process.cpuUsage();
      const t = performance.now();
      res[l] = await steps[l].run(params, feeds);
      const c1 = process.cpuUsage(c0);
      if (s > 0) { ms[l].push(performance.now() - t); cpu[l].push((c1.user + c1.system) / 1000); }
    }
    if (s === 0) {
      let diff = 0;
      let mag = 0;
      for (const [w, gp] of res.primitive.grads) {
        const a = gp.data as Float32Array;
        for (const l of ['fused', 'op'] as const) {
          const f = res[l].grads.get(w)!.data as Float32Array;
          for (let i = 0; i < a.length; i++) { diff = Math.max(diff, Math.abs(a[i]! - f[i]!)); mag = Math.max(mag, Math.abs(a[i]!)); }
        }
      }
      gradRelDiff = diff / mag;
    }
  }
  for (const st of Object.values(steps)) await st.release();
  const forwardNodes = model.graph.nodes.length;
  if (o.time === false) return { arch, batch, forwardNodes, counts, gradRelDiff };
  const stepMs = per((l) => median(ms[l]));
  const cpuMs = per((l) => median(cpu[l]));
  return { arch, batch, forwardNodes, counts, stepMs, speedup: { primitive: stepMs.primitive / stepMs.op, fused: stepMs.fused / stepMs.op }, cpuMs, samples: ms, gradRelDiff };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const arg = (k: string): string | undefined => { const i = process.argv.indexOf(k); return i >= 0 ? process.argv[i + 1] : undefined; };
  const r = await bnBench({
    arch: (arg('--arch') as Arch | undefined) ?? 'resnet20',
    batch: Number(arg('--batch') ?? 128),
    size: Number(arg('--size') ?? 28),
    steps: Number(arg('--steps') ?? 10),
    threads: Number(arg('--threads') ?? 1),
    time: !process.argv.includes('--no-time'),
  });
  console.log(JSON.stringify(r, (_, v) => (typeof v === 'number' ? Number(v.toPrecision(4)) : v), 2));
}
