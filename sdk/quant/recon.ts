// Block reconstruction: blocks are reconstructed in order; each block's FP inputs, FP targets and
// quantized-path inputs are cached for all calibration images, so a block costs only its own
// forward and backward passes. After a block, AdaRound's soft rounding is hardened into integer
// codes and the block is run quantized (QDQ, 8-bit containers) to give the next block's inputs.
import { TtaqError } from '../errors/index.ts';
import { buildGradientGraph, chooseWorkersFor, DataParallelStep, GradientStep, type ConvGradOptions, type ConvLayout, type RowFeed, threadsPerSlice } from '../autodiff/index.ts';
import { makeTensor } from '../onnx/tensor.ts';
import type { Model, Tensor } from '../onnx/types.ts';
import type { ProgressFn } from '../progress/index.ts';
import { createSession } from '../runtime/index.ts';
import { blockGraph, type Block } from './blocks.ts';
import { qdqGraph, type QuantValues } from './export.ts';
import { fakeQuantOps, hardCodes, initialV, nodeV, buildReconGraph, type ReconFormulation, type ReconGraphOptions } from './recongraph.ts';
import type { ActSite, WeightSite } from './plan.ts';
import { rangeOf, type QuantParams } from './quantizer.ts';
import { GraphBuilder } from '../onnx/builder.ts';
import { getOpset } from '../onnx/versions.ts';
import type { CalibSet } from './stats.ts';
import { Adam } from '../optim/index.ts';
import { mix32, Xoshiro128 } from '../random/index.ts';

/**
 * Reconstruction's Conv gradient choice: sdk/autodiff's own per-conv choice. It used to override the
 * weight gradient of stride-1 3x3 convs; since the eighteenth session the automatic choice there is
 * the form reconstruction measured fastest, 'shiftmmk' (per-sample contraction, X's column shifts
 * offset-major). Seconds per 1,000 iterations, medians of alternating runs (`node --import tsx
 * sdk/quant/bench.ts --block <b> --workers auto --iterations 300 --images 1024 --variant qdrop
 * --variant qdrop:w1=shiftmmk --repeat 5`) against the previous choice ('shiftmmb' at 28x28,
 * 'shiftmm' below), the same block error:
 *   layer1.1 (28x28, two slices)   13.24 -> 11.90 wall, 24.63 -> 21.61 CPU
 *   layer2.0 (14x14, repeat 3)      9.19 ->  8.24 wall, 14.20 -> 12.47 CPU
 *   layer2.1 (14x14, two slices)   10.30 ->  8.99 wall, 18.44 -> 16.11 CPU
 *   layer3.1 (7x7, one session)    10.75 ->  9.93 wall, 16.90 -> 14.95 CPU
 * Before it, 'shiftmmb' (the same contraction with a Transpose of the shifted X) had replaced
 * 'shifted' at 28x28: layer1.0 19.82 -> 17.12, layer1.1 21.80 -> 17.82, layer1.2 19.36 -> 16.02.
 */
export const RECON_CONV_GRAD: ConvGradOptions = {};

export interface ReconOptions {
  readonly iterations: number;
  readonly batch: number;
  /** Per element probability of the quantized block input (QDrop 0.5, BRECQ 1). */
  readonly inputQuantProb: number;
  readonly learnActs: boolean;
  readonly lrV: number;
  readonly lrStep: number;
  readonly roundWeight: number;
  readonly betaStart: number;
  readonly betaEnd: number;
  /** Fraction of iterations without the rounding regulariser. */
  readonly warmup: number;
  readonly pem?: { readonly weight: number; readonly coef: ReadonlyMap<string, number> };
  readonly pcr?: { readonly weight: number; readonly gamma: number; readonly temperature: number };
  readonly seed: number;
  /** onnxruntime threads of the step's session (default: all cores, shared among slices). */
  readonly intraOpThreads?: number;
  /** Let onnxruntime's worker threads spin between ops (default false: on shared CPUs spinning
   * threads fight other processes; measured 56 vs 105 ms per step on the loaded 2-core box). */
  readonly spinning?: boolean;
  /** Data-parallel worker threads for the reconstruction steps (each runs batch/workers samples in
   * its own session; must divide the batch; default 1 = one session on this thread); 'auto' slices
   * the steps of blocks whose output is large enough to gain from it, one per core (chooseWorkersFor). */
  readonly workers?: number | 'auto';
  /** Equivalent graph formulations (A/B measurements); default the fastest. */
  readonly formulation?: ReconFormulation;
  /** Conv gradient formulations passed to sdk/autodiff, over RECON_CONV_GRAD (a field left out keeps
   * its value there). */
  readonly convGrad?: ConvGradOptions;
  /** Layout of the step's Convs on the CPU (sdk/autodiff's StepOptions.convLayout; default 'nchwc'). */
  readonly convLayout?: ConvLayout;
  /** Which block learns the step of a quantizer between two blocks: 'producer' (default, as QDrop:
   * the block whose output it quantizes, on the error of its quantized output; the next block
   * takes it as a constant) or 'consumer' (the block it feeds, which then needs the gradient with
   * respect to its input: one more convolution per step). docs/METHOD.md has the ablation. */
  readonly stepOwner?: 'producer' | 'consumer';
  /** Receives each iteration's wall milliseconds (benchmarks: a median comparable with PyTorch's). */
  readonly stepTimes?: number[];
}

export interface BlockReport {
  readonly block: string;
  readonly iterations: number;
  readonly seconds: number;
  /** Seconds inside the iteration loop only (no graph building, caching or evaluation). */
  readonly loopSeconds: number;
  /** CPU seconds (user + system, all threads) of the process inside the loop: robust to other load. */
  readonly loopCpuSeconds: number;
  /** Data-parallel slices the step ran in (1 = one session). */
  readonly slices: number;
  /** Reconstruction error (per-sample sum, batch mean) of nearest rounding and of the result, on all calibration images. */
  readonly mseBefore: number;
  readonly mseAfter: number;
  readonly finalLoss: Readonly<Record<string, number>>;
}

/** Mutable per-model quantizer values, updated block by block. */
export interface MutableValues {
  readonly weights: Map<string, { params: QuantParams; codes: Int32Array }>;
  readonly acts: Map<string, QuantParams>;
}

const poolSize = (window: number): number => window + Math.max(window, 1 << 16);

class SeededRandom extends Xoshiro128 {
  constructor(seed: number) {
    super();
    this.setWords(mix32(seed), mix32(seed ^ 0x5bd1e995), mix32(seed + 0x27d4eb2f), mix32(~seed));
  }
}

/**
 * A pool of random values drawn once per block (the window plus max(window, 65,536) values), from
 * which each step takes a window at a random offset: the elements of a window are independent draws
 * of the distribution, and consecutive windows are shifted against each other (and against freshly
 * sampled batch rows). Drawing per step, in JavaScript or with onnxruntime's RandomUniformLike /
 * RandomNormalLike, cost more than a convolution of the block (sdk/quant/bench.ts: 'random=graph').
 */
export class RandomPool<T extends Uint8Array | Float32Array> {
  private readonly rng: SeededRandom;
  private constructor(private readonly pool: T, private readonly window: number, seed: number) {
    this.rng = new SeededRandom(mix32(seed) ^ 0x6a09e667);
  }
  /** `shared`: the pool lives in a SharedArrayBuffer, so windows reach worker threads uncopied. */
  static bernoulli(window: number, p: number, seed: number, shared = false): RandomPool<Uint8Array> {
    const r = new SeededRandom(seed);
    const a = shared ? new Uint8Array(new SharedArrayBuffer(poolSize(window))) : new Uint8Array(poolSize(window));
    for (let i = 0; i < a.length; i++) a[i] = r.uniform() < p ? 1 : 0;
    return new RandomPool(a, window, seed);
  }
  static normal(window: number, seed: number, shared = false): RandomPool<Float32Array> {
    const r = new SeededRandom(seed);
    const a = shared ? new Float32Array(new SharedArrayBuffer(4 * poolSize(window))) : new Float32Array(poolSize(window));
    for (let i = 0; i < a.length; i++) a[i] = r.normal();
    return new RandomPool(a, window, seed);
  }
  next(): T {
    const o = this.rng.int(this.pool.length - this.window + 1);
    return this.pool.subarray(o, o + this.window) as T;
  }
}

class Rand {
  private s: number;
  constructor(seed: number) { this.s = (seed >>> 0) || 1; }
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
}

/** Runs a single-input single-output graph over a cached [N, ...] array in batches; `shared`
 * puts the result in shared memory (a cache that worker threads read). */
export async function runOver(
  model: Model, input: string, output: string, data: Float32Array, dims: readonly number[],
  o: { readonly batch?: number; readonly threads?: number; readonly shared?: boolean } = {},
): Promise<{ data: Float32Array; dims: number[] }> {
  const batch = o.batch ?? 64;
  const s = await createSession(model, { source: `block '${model.graph.name}'`, ...(o.threads ? { intraOpThreads: o.threads } : {}) });
  const n = dims[0]!;
  const per = dims.slice(1).reduce((a, b) => a * b, 1);
  let out: Float32Array | undefined;
  let outDims: number[] = [];
  try {
    for (let start = 0; start < n; start += batch) {
      const m = Math.min(batch, n - start);
      // onnxruntime-node refuses views of shared memory: those chunks are copied
      const chunk = data.buffer instanceof SharedArrayBuffer ? data.slice(start * per, (start + m) * per) : data.subarray(start * per, (start + m) * per);
      const x = makeTensor('float32', [m, ...dims.slice(1)], chunk);
      const y = (await s.run({ [input]: x }, [output]))[output]!;
      const yd = y.data as Float32Array;
      if (!out) {
        outDims = [n, ...y.dims.slice(1)];
        out = o.shared ? sharedFloats(n * (yd.length / m)) : new Float32Array(n * (yd.length / m));
      }
      out.set(yd, start * (yd.length / m));
    }
  } finally {
    await s.release();
  }
  return { data: out!, dims: outDims };
}

const sharedFloats = (n: number): Float32Array => new Float32Array(new SharedArrayBuffer(4 * n));

/** `a` in shared memory: itself when it is there, else a copy. */
function inShared(a: Float32Array): Float32Array {
  if (a.buffer instanceof SharedArrayBuffer) return a;
  const out = sharedFloats(a.length);
  out.set(a);
  return out;
}

function blockModel(full: Model, b: Block): Model {
  return { ...full, graph: blockGraph(full.graph, b), metadata: {} };
}

/** The quantized forward of one block (QDQ, int8 containers, identical numerics to the export). */
export function quantizedBlock(full: Model, b: Block, values: QuantValues): Model {
  const bm = blockModel(full, b);
  const opset = getOpset(full) ?? 13;
  return { ...bm, graph: qdqGraph(bm.graph, values, 'int8-container', opset, Math.max(opset, 13)) };
}

const mseOf = (a: Float32Array, b: Float32Array, n: number): number => {
  let e = 0;
  for (let i = 0; i < a.length; i++) { const d = a[i]! - b[i]!; e += d * d; }
  return e / n;
};

export interface BlockCaches {
  xfp: Float32Array;
  xq: Float32Array;
  dims: number[];
}

/**
 * Reconstructs one block in place: updates `values` (codes of its weights, steps of its
 * activations) and returns the caches for the next block.
 */
export async function reconstructBlock(
  full: Model,
  block: Block,
  sites: { weights: readonly WeightSite[]; acts: readonly ActSite[]; /** the quantizer of the block's output (read by later blocks) */ output?: ActSite },
  values: MutableValues,
  plan: QuantValues['plan'],
  caches: BlockCaches,
  opts: ReconOptions,
  progress: ProgressFn,
  stage: string,
): Promise<{ report: BlockReport; next: BlockCaches }> {
  const t0 = performance.now();
  const N = caches.dims[0]!;
  const B = Math.min(opts.batch, N);
  const fp = blockModel(full, block);
  const fpOut = await runOver(fp, block.input, block.output, caches.xfp, caches.dims);
  // the slice count follows the size of the block's output, where most of a step's work is
  const K = chooseWorkersFor(opts.workers ?? 1, B, fpOut.dims.slice(1).reduce((a, x) => a * x, 1));
  // With slices, every cache the steps read lives in shared memory: each worker gathers its rows
  // there itself. Caches made by the previous block already do; the others are copied once.
  if (K > 1) {
    const xq = inShared(caches.xq);
    caches = { xq, xfp: caches.xfp === caches.xq ? xq : inShared(caches.xfp), dims: caches.dims };
  }
  const yfp = K > 1 ? { ...fpOut, data: inShared(fpOut.data) } : fpOut;
  const snapshot = (): QuantValues => ({ plan, weights: values.weights, acts: values.acts });
  const before = await runOver(quantizedBlock(full, block, snapshot()), block.input, block.output, caches.xq, caches.dims);
  const mseBefore = mseOf(before.data, yfp.data, N);

  const wInit = new Map<string, { params: QuantParams; floor: Float32Array; v: Float32Array }>();
  for (const w of sites.weights) {
    const t = full.graph.initializers.get(w.weight)!;
    const cur = values.weights.get(w.node)!;
    const { v, floor } = initialV(t.data as Float32Array, w.dims, cur.params);
    wInit.set(w.node, { params: cur.params, floor, v });
  }
  const producerSteps = (opts.stepOwner ?? 'producer') === 'producer' && opts.learnActs;
  const outputSite = producerSteps ? sites.output : undefined;
  const inputSite = sites.acts.find((a) => a.value === block.input);
  // the activation quantizers this block's graph holds: the ones its nodes read, and its output's
  const actSites = [...sites.acts, ...(outputSite ? [outputSite] : [])];
  const aInit = new Map(actSites.map((a) => [a.value, values.acts.get(a.value)!]));
  // With K workers the step graph is built for one worker's slice; the full batch is fed and split.
  const gopts: ReconGraphOptions = {
    inputQuantProb: opts.inputQuantProb,
    learnActs: opts.learnActs,
    ...(outputSite ? { outputSite } : {}),
    // the network input has no producing block: its quantizer is learned by the block it feeds
    learnInputStep: !producerSteps || !inputSite || inputSite.isNetworkInput,
    batch: B / K,
    seed: opts.seed + block.index * 7919,
    ...(opts.formulation ? { formulation: opts.formulation } : {}),
    ...(opts.pem ? { pem: opts.pem } : {}),
    ...(opts.pcr ? { pcr: opts.pcr } : {}),
  };
  let finalLoss: Record<string, number> = {};
  let loopSeconds = 0;
  let loopCpuSeconds = 0;
  if (opts.iterations > 0 && (sites.weights.length > 0 || (opts.learnActs && (sites.acts.length > 0 || outputSite)))) {
    const rg = buildReconGraph(full, block, sites, wInit, aInit, caches.dims, yfp.dims, gopts);
    const wrt = [...new Set(rg.vParams.values()), ...(opts.learnActs ? [...rg.learnedSteps] : [])];
    const partNames = Object.entries(rg.parts).filter(([, v]) => v) as [string, string][];
    const zeros = (dims: readonly number[]): Tensor => makeTensor('float32', dims, new Float32Array(dims.reduce((a, b) => a * b, 1)));
    const xShape = [B, ...caches.dims.slice(1)];
    const xSlice = [B / K, ...caches.dims.slice(1)];
    const ySlice = [B / K, ...yfp.dims.slice(1)];
    const gg = await buildGradientGraph({
      model: rg.model,
      loss: rg.loss,
      wrt,
      outputs: partNames.map(([, v]) => v),
      stopGradient: rg.stopGradient,
      ruleOptions: { conv: { ...RECON_CONV_GRAD, ...opts.convGrad } },
      sampleBatch: B / K,
      sampleFeeds: {
        ...(rg.inputs.xq ? { [rg.inputs.xq]: zeros(xSlice) } : {}),
        ...(rg.inputs.xqHat ? { [rg.inputs.xqHat]: zeros(xSlice) } : {}),
        [rg.inputs.xfp]: zeros(xSlice), [rg.inputs.y]: zeros(ySlice),
        [rg.inputs.beta]: makeTensor('float32', [], Float32Array.of(opts.betaStart)),
        [rg.inputs.roundWeight]: makeTensor('float32', [], Float32Array.of(0)),
        ...(rg.inputs.mask ? { [rg.inputs.mask]: makeTensor('bool', xSlice, new Uint8Array(xSlice.reduce((a, b) => a * b, 1))) } : {}),
        ...(rg.inputs.noise ? { [rg.inputs.noise]: zeros(xSlice) } : {}),
      },
    });
    // the block input after its quantizer, when that quantizer's step is a constant here
    const fqModel = rg.inputs.xqHat ? fakeQuantModel(full, values.acts.get(block.input)!, caches.dims) : undefined;
    const xqHat = fqModel ? (await runOver(fqModel, 'x', fqModel.graph.outputs[0]!.name, caches.xq, caches.dims, { shared: K > 1 })).data : undefined;
    const session = {
      source: `reconstruction of block '${block.name}'`,
      ...(opts.intraOpThreads ? { intraOpThreads: opts.intraOpThreads } : K > 1 ? { intraOpThreads: threadsPerSlice(K) } : {}),
      extra: { 'session.intra_op.allow_spinning': opts.spinning ? '1' : '0' },
    };
    const layout = opts.convLayout ? { convLayout: opts.convLayout } : {};
    const step = K > 1 ? await DataParallelStep.create(gg, { workers: K, session, ...layout }) : await GradientStep.create(gg, { session, ...layout });
    const params = new Map<string, Tensor>(gg.params);
    // inputs the loss does not depend on are gone from the gradient graph (the FP block input when
    // the input is always quantized, as in AdaRound and BRECQ; β in a block without weights)
    const graphInputs = new Set(gg.model.graph.inputs.map((v) => v.name));
    const fed = (name: string | undefined): boolean => !!name && graphInputs.has(name);
    const vNames = new Set(rg.vParams.values());
    // Adam with two learning rates: AdaRound's V and the LSQ steps
    const adamV = new Adam({ lr: opts.lrV });
    const adamS = new Adam({ lr: opts.lrStep });
    const gV = new Map<string, Tensor>();
    const gS = new Map<string, Tensor>();
    const rand = new Rand(opts.seed * 31 + block.index);
    const perm = Int32Array.from({ length: N }, (_, i) => i);
    let pos = N;
    const idx = new Int32Array(B);
    // the batch goes as rows of the caches, gathered by whichever thread runs them; with workers
    // the caches and random pools are shared memory, so each worker reads its slice in place
    // (a copy per step cost as much as the step saved)
    const rowsOf = (table: Float32Array, dims: readonly number[]): RowFeed => ({ rowsOf: table, rowDims: dims.slice(1), rows: idx });
    const beta = new Float32Array(1);
    const rw = new Float32Array(1);
    const warm = Math.floor(opts.iterations * opts.warmup);
    const xSize = xShape.reduce((a, b) => a * b, 1);
    const maskPool = rg.inputs.mask ? RandomPool.bernoulli(xSize, opts.inputQuantProb, gopts.seed * 2 + 1, K > 1) : undefined;
    const noisePool = rg.inputs.noise ? RandomPool.normal(xSize, gopts.seed * 2 + 2, K > 1) : undefined;
    const tl = performance.now();
    const cpu0 = process.cpuUsage();
    try {
      let tIt = performance.now();
      for (let it = 0; it < opts.iterations; it++) {
        for (let i = 0; i < B; i++) {
          if (pos >= N) {
            for (let k = N - 1; k > 0; k--) { const j = Math.floor(rand.next() * (k + 1)); const t = perm[k]!; perm[k] = perm[j]!; perm[j] = t; }
            pos = 0;
          }
          idx[i] = perm[pos++]!;
        }
        const rel = it < warm ? 0 : (it - warm) / Math.max(1, opts.iterations - warm);
        beta[0] = opts.betaEnd + (opts.betaStart - opts.betaEnd) * (1 - rel);
        rw[0] = it < warm ? 0 : opts.roundWeight;
        const r = await step.run(params, {
          ...(fed(rg.inputs.xq) ? { [rg.inputs.xq!]: rowsOf(caches.xq, caches.dims) } : {}),
          ...(fed(rg.inputs.xqHat) ? { [rg.inputs.xqHat!]: rowsOf(xqHat!, caches.dims) } : {}),
          ...(fed(rg.inputs.xfp) ? { [rg.inputs.xfp]: rowsOf(caches.xfp, caches.dims) } : {}),
          [rg.inputs.y]: rowsOf(yfp.data, yfp.dims),
          ...(fed(rg.inputs.beta) ? { [rg.inputs.beta]: makeTensor('float32', [], beta) } : {}),
          ...(fed(rg.inputs.roundWeight) ? { [rg.inputs.roundWeight]: makeTensor('float32', [], rw) } : {}),
          ...(maskPool ? { [rg.inputs.mask!]: makeTensor('bool', xShape, maskPool.next()) } : {}),
          ...(noisePool ? { [rg.inputs.noise!]: makeTensor('float32', xShape, noisePool.next()) } : {}),
        });
        gV.clear();
        gS.clear();
        for (const [k, g] of r.grads) (vNames.has(k) ? gV : gS).set(k, g);
        adamV.step(params, gV);
        if (gS.size) adamS.step(params, gS);
        if (it % 50 === 0 || it === opts.iterations - 1) {
          finalLoss = { loss: r.loss, ...Object.fromEntries(partNames.map(([k, v]) => [k, Number(r.outputs[v]!.data[0])])) };
          progress({ stage, done: it + 1, total: opts.iterations, info: `loss ${r.loss.toFixed(4)}` });
        }
        if (opts.stepTimes) { const t = performance.now(); opts.stepTimes.push(t - tIt); tIt = t; }
      }
    } finally {
      loopSeconds = (performance.now() - tl) / 1000;
      const cpu = process.cpuUsage(cpu0);
      loopCpuSeconds = (cpu.user + cpu.system) / 1e6;
      await step.release();
    }
    for (const w of sites.weights) {
      const v = nodeV(rg, params.get(rg.vParams.get(w.node)!)!.data as Float32Array, w.node);
      const cur = values.weights.get(w.node)!;
      values.weights.set(w.node, { params: cur.params, codes: hardCodes(wInit.get(w.node)!.floor, v, w.dims, cur.params) });
    }
    if (opts.learnActs) {
      for (const a of actSites) {
        if (!rg.learnedSteps.has(rg.stepParams.get(a.value)!)) continue;
        const s = Number(params.get(rg.stepParams.get(a.value)!)!.data[0]);
        const cur = values.acts.get(a.value)!;
        if (!(s > 0) || !Number.isFinite(s)) {
          throw new TtaqError('INTERNAL', `block '${block.name}': the learned step of '${a.value}' became ${s}; lower the activation learning rate (lrStep)`);
        }
        values.acts.set(a.value, { ...cur, scale: Float32Array.of(s) });
      }
    }
  } else {
    progress({ stage, done: 1, total: 1 });
  }
  const after = await runOver(quantizedBlock(full, block, snapshot()), block.input, block.output, caches.xq, caches.dims, { shared: K > 1 });
  const report: BlockReport = {
    block: block.name,
    iterations: opts.iterations,
    seconds: (performance.now() - t0) / 1000,
    loopSeconds,
    loopCpuSeconds,
    slices: K,
    mseBefore,
    mseAfter: mseOf(after.data, yfp.data, N),
    finalLoss,
  };
  return { report, next: { xfp: yfp.data, xq: after.data, dims: yfp.dims } };
}

/** The fake quantizer of `p` as its own model (input 'x', one output), with the reconstruction
 * graph's ops in the same order (recongraph.ts's fakeQuantOps): the same values to the bit. */
export function fakeQuantModel(full: Model, p: QuantParams, dims: readonly number[]): Model {
  const opset = getOpset(full) ?? 13;
  const { qmin, qmax } = rangeOf(p.spec);
  const b = new GraphBuilder('fake-quant');
  b.input('x', 'float32', ['N', ...dims.slice(1)]);
  b.output(fakeQuantOps(b, 'x', b.scalar(p.scale[0]!), p.zeroPoint[0]!, qmin, qmax), 'float32', undefined);
  return { irVersion: full.irVersion, opsetImports: [{ domain: '', version: Math.max(opset, 13) }], producerName: 'ttaq', producerVersion: '0', metadata: {}, graph: b.build() };
}

/** A block's quantizer sites: its weights, the activations its nodes read, and the quantizer of
 * its output that later blocks read (learned here when steps belong to the producing block). */
export function blockSites(plan: QuantValues['plan'], b: Block): { weights: WeightSite[]; acts: ActSite[]; output?: ActSite } {
  const nodes = new Set(b.nodes);
  const output = plan.acts.find((a) => a.value === b.output && !a.consumers.some((c) => nodes.has(c)));
  return {
    weights: plan.weights.filter((w) => nodes.has(w.node)),
    acts: plan.acts.filter((a) => a.consumers.some((c) => nodes.has(c))),
    ...(output ? { output } : {}),
  };
}

/** Caches for the first block: the calibration images on both paths. */
export function initialCaches(set: CalibSet, n: number): BlockCaches {
  const per = set.dims.slice(1).reduce((a, b) => a * b, 1);
  const x = set.images.subarray(0, n * per);
  return { xfp: x, xq: x, dims: [n, ...set.dims.slice(1)] };
}
