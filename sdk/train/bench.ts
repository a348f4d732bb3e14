// Throughput of one training step (forward + backward graph run, SGD, BN statistics, batch
// assembly) on generated data, and the share of step time spent outside onnxruntime.
import { Rng } from '../nn/rng.ts';
import type { SessionOptions } from '../runtime/index.ts';
import { DEFAULT_CONFIG, Trainer } from './trainer.ts';
import type { Arch } from '../nn/index.ts';

export interface BenchResult {
  readonly arch: Arch;
  readonly batch: number;
  readonly steps: number;
  readonly imagesPerSec: number;
  readonly msPerStep: number;
  /** Milliseconds per step inside Session.run. */
  readonly runtimeMsPerStep: number;
  /**
   * Process CPU milliseconds per step (all threads). Steadier than wall time on a shared machine;
   * with one intra-op thread, 1000 * batch / cpuMsPerStep is the throughput of one idle core.
   */
  readonly cpuMsPerStep: number;
  /** 1 - runtime / total: batch assembly, SGD, BN statistics, feeds and fetches. */
  readonly outsideShare: number;
  /** Nodes of the forward (training form) and of the gradient graph, by op type for the latter. */
  readonly forwardNodes: number;
  readonly gradientNodes: number;
  readonly opCounts: Readonly<Record<string, number>>;
  readonly buildSeconds: number;
}

export async function benchStep(o: { arch: Arch; batch?: number; steps?: number; warmup?: number; session?: SessionOptions; seed?: number; workers?: number }): Promise<BenchResult> {
  const batch = o.batch ?? 128;
  const steps = o.steps ?? 10;
  const warmup = o.warmup ?? 2;
  const count = batch * (steps + warmup);
  const rng = new Rng(o.seed ?? 1);
  const images = new Uint8Array(count * 28 * 28);
  for (let i = 0; i < images.length; i++) images[i] = rng.u32() & 255;
  const labels = Uint8Array.from({ length: count }, () => rng.int(10));
  const t0 = performance.now();
  const t = await Trainer.create(
    { ...DEFAULT_CONFIG, arch: o.arch, epochs: 1, batchSize: batch, numClasses: 10, channels: 1, height: 28, width: 28, mean: [0.5], std: [0.25] },
    { train: { count, height: 28, width: 28, channels: 1, images, labels } },
    { ...(o.session ? { session: o.session } : {}), ...(o.workers ? { workers: o.workers } : {}) },
  );
  const buildSeconds = (performance.now() - t0) / 1000;
  // released on every path: a failed step must not leave the slices' worker threads holding the process
  try {
    const x = new Float32Array(batch * 784);
    const lab = new BigInt64Array(batch);
    const order = Int32Array.from({ length: count }, (_, i) => i);
    let s0 = 0;
    let tStart = 0;
    let cpuStart = process.cpuUsage();
    for (let s = 0; s < steps + warmup; s++) {
      if (s === warmup) { s0 = t.timing.sessionMs; tStart = performance.now(); cpuStart = process.cpuUsage(); }
      await t.trainStep(order.subarray(s * batch, (s + 1) * batch), x, lab);
    }
    const total = performance.now() - tStart;
    const cpu = process.cpuUsage(cpuStart);
    const inside = t.timing.sessionMs - s0;
    const opCounts: Record<string, number> = {};
    for (const n of t.graph.model.graph.nodes) opCounts[n.opType] = (opCounts[n.opType] ?? 0) + 1;
    return {
      arch: o.arch, batch, steps,
      imagesPerSec: (batch * steps) / (total / 1000), msPerStep: total / steps, runtimeMsPerStep: inside / steps,
      cpuMsPerStep: (cpu.user + cpu.system) / 1000 / steps,
      outsideShare: 1 - inside / total,
      forwardNodes: t.net.model.graph.nodes.length, gradientNodes: t.graph.model.graph.nodes.length, opCounts, buildSeconds,
    };
  } finally {
    await t.release();
  }
}
