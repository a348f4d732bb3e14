// Benchmark: seconds per 1,000 reconstruction iterations of one ResNet-20 block (default the
// stride-2 block with projection shortcut, layer2.0, at batch 32 on 28x28 inputs), for the QDrop
// configuration and for TTAQ (QDrop + PEM + PCR). Timing covers the iteration loop only.
//   node --import tsx sdk/quant/bench.ts [--iterations 200] [--images 256] [--block layer2.0] [--batch 32] [--threads N] [--workers K]
//       [--variant qdrop|ttaq[:modifier...]]... [--repeat N] [--json]
// Variants given several times run in that order in one process; --repeat N runs the whole list N
// times in alternation and adds a summary of medians per variant (A/B figures on a busy machine).
import { parseArgs } from 'node:util';
import { buildNet } from '../nn/index.ts';
import { blockGraph, partitionBlocks } from './blocks.ts';
import { makePlan } from './plan.ts';
import { calibrateModel } from './ptq.ts';
import { blockSites, reconstructBlock, runOver, type ReconOptions } from './recon.ts';
import { chooseConvGrad, type ConvGradOptions, type ConvInputGrad, type ConvLayout, type ConvWeightGrad } from '../autodiff/index.ts';
import { LEGACY_RECON_FORMULATION, type ReconFormulation } from './recongraph.ts';

/**
 * A variant is 'qdrop' or 'ttaq' with optional ':'-separated modifiers for A/B runs: 'legacy' (the
 * original graph formulation, LEGACY_RECON_FORMULATION),
 * 'random=graph|fed', 'pcr=separate|batched', 'lsm=op|decomposed', 'lsq=function|ops', 'square=op|mul',
 * 'entry=linear|copy', 'reg=explog|pow', 'adaround=function|ops', 'relu=fused|separate' (one
 * ReconFormulation field each), 'wgrad=…' and 'xgrad=…' (sdk/autodiff's Conv gradient forms;
 * 'wgrad=auto' is sdk/autodiff's own per-conv choice instead of RECON_CONV_GRAD), 'w1=form[@width]'
 * (that form where sdk/autodiff's choice is a stride-1 one, 'shifted' or 'shiftmm', on images up to
 * the width),
 * 'layout=nchwc|plain' (the step's Conv layout on the CPU), 'steps=producer|consumer' (which block
 * learns the step of a quantizer between blocks).
 * E.g. --variant ttaq:legacy --variant ttaq --variant ttaq:pcr=batched.
 */
function parseVariant(v: string): { base: string; formulation?: ReconFormulation; convGrad?: ConvGradOptions; convLayout?: ConvLayout; stepOwner?: 'producer' | 'consumer' } {
  const [base, ...mods] = v.split(':');
  let f: Record<string, string> | undefined;
  let convGrad: ConvGradOptions | undefined;
  let convLayout: ConvLayout | undefined;
  let stepOwner: 'producer' | 'consumer' | undefined;
  const keys: Record<string, keyof ReconFormulation> = { random: 'random', pcr: 'pcrPass', lsm: 'logSoftmax', lsq: 'lsq', square: 'square', entry: 'pcrEntry', reg: 'roundReg', adaround: 'adaround', relu: 'reluQuant' };
  for (const m of mods) {
    if (m === 'ct') throw new Error(`bench: modifier 'ct' is gone (the step graph is no longer rewritten); use 'xgrad=convTranspose' for ConvTranspose input gradients`);
    if (m.startsWith('wgrad=')) convGrad = { ...convGrad, weight: m.slice(6) as ConvWeightGrad };
    else if (m.startsWith('w1=')) {
      // the stride-1 form only: where the automatic choice is 'shifted' or 'shiftmm', up to a width
      const [form, width] = m.slice(3).split('@') as [ConvWeightGrad, string | undefined];
      const max = width === undefined ? Infinity : Number(width);
      convGrad = { ...convGrad, weight: (c) => { const auto = chooseConvGrad(c).weight; return (auto === 'shifted' || auto === 'shiftmm') && c.x[3]! <= max ? form : auto; } };
    }
    else if (m.startsWith('xgrad=')) convGrad = { ...convGrad, input: m.slice(6) as ConvInputGrad };
    else if (m.startsWith('layout=')) convLayout = m.slice(7) as ConvLayout;
    else if (m.startsWith('steps=')) stepOwner = m.slice(6) as 'producer' | 'consumer';
    else if (m === 'legacy') f = { ...f, ...LEGACY_RECON_FORMULATION } as Record<string, string>;
    else {
      const [k, val] = m.split('=');
      if (!k || !val || !keys[k]) throw new Error(`bench: unknown variant modifier '${m}' in '${v}'`);
      f = { ...f, [keys[k]!]: val };
    }
  }
  return { base: base!, ...(f ? { formulation: f as ReconFormulation } : {}), ...(convGrad ? { convGrad } : {}), ...(convLayout ? { convLayout } : {}), ...(stepOwner ? { stepOwner } : {}) };
}

const median = (v: readonly number[]): number => { const s = [...v].sort((a, b) => a - b); return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2; };

export interface BenchResult { readonly variant: string; readonly iterations: number; readonly loopSeconds: number; readonly secondsPer1000: number;
  /** The median iteration's wall time x 1,000: the statistic of the PyTorch baseline (which times steps after warm-up). */
  readonly medianSecondsPer1000: number;
  readonly cpuSecondsPer1000: number; /** Block reconstruction error after the run (all cached images): equal formulations agree up to rounding. */ readonly mseAfter: number }

export async function benchReconstruction(o: { iterations?: number; block?: string; batch?: number; threads?: number; workers?: number; variants?: readonly string[]; repeat?: number; images?: number } = {}): Promise<BenchResult[]> {
  const model = buildNet({ arch: 'resnet20' }, 'infer').model;
  // calibration images cached per block: 256 by default; `ttaq quantize` caches 1,024, whose
  // caches no longer fit the last-level cache (each step gathers its rows from memory)
  const n = o.images ?? 256;
  const images = new Float32Array(n * 784);
  for (let i = 0; i < images.length; i++) images[i] = Math.sin(i * 0.37) + 0.3 * Math.cos(i * 1.3);
  const set = { images, dims: [n, 1, 28, 28] };
  const plan = makePlan(model.graph, { wBits: 4, aBits: 4 });
  const blocks = partitionBlocks(model.graph, new Set(plan.weights.map((w) => w.node)));
  const target = blocks.find((b) => b.name === (o.block ?? 'layer2.0'))!;
  const cal = await calibrateModel(model, plan, set, { weight: { method: 'lp' }, act: 'mse', actImages: 64 });
  let x: { data: Float32Array; dims: number[] } = { data: images, dims: set.dims };
  for (const b of blocks) {
    if (b === target) break;
    x = await runOver({ ...model, graph: blockGraph(model.graph, b) }, b.input, b.output, x.data, x.dims);
  }
  const sites = blockSites(plan, target);
  const iterations = o.iterations ?? 200;
  const out: BenchResult[] = [];
  const list = o.variants ?? ['qdrop', 'ttaq'];
  for (const variant of Array.from({ length: Math.max(1, o.repeat ?? 1) }, () => list).flat()) {
    const pv = parseVariant(variant);
    const stepTimes: number[] = [];
    const opts: ReconOptions = {
      stepTimes,
      iterations, batch: o.batch ?? 32, inputQuantProb: 0.5, learnActs: true, lrV: 1e-3, lrStep: 4e-5, roundWeight: 0.01,
      betaStart: 20, betaEnd: 2, warmup: 0.2, seed: 0,
      ...(o.threads ? { intraOpThreads: o.threads } : {}),
      ...(o.workers ? { workers: o.workers } : {}),
      ...(pv.formulation ? { formulation: pv.formulation } : {}),
      ...(pv.convGrad ? { convGrad: pv.convGrad } : {}),
      ...(pv.convLayout ? { convLayout: pv.convLayout } : {}),
      ...(pv.stepOwner ? { stepOwner: pv.stepOwner } : {}),
      ...(pv.base === 'ttaq' ? { pem: { weight: 1, coef: new Map(sites.weights.map((w) => [w.node, 1])) }, pcr: { weight: 1, gamma: 0.1, temperature: 1 } } : {}),
    };
    const r = await reconstructBlock(model, target, sites, { weights: new Map(cal.values.weights), acts: new Map(cal.values.acts) }, plan,
      { xfp: x.data, xq: x.data, dims: x.dims }, opts, () => {}, variant);
    out.push({ variant, iterations, loopSeconds: r.report.loopSeconds, secondsPer1000: (r.report.loopSeconds / iterations) * 1000, medianSecondsPer1000: stepTimes.length ? median(stepTimes) : NaN, cpuSecondsPer1000: (r.report.loopCpuSeconds / iterations) * 1000, mseAfter: r.report.mseAfter });
  }
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { iterations: { type: 'string' }, images: { type: 'string' }, block: { type: 'string' }, batch: { type: 'string' }, workers: { type: 'string' }, threads: { type: 'string' }, variant: { type: 'string', multiple: true }, repeat: { type: 'string' }, json: { type: 'boolean' } } });
  const res = await benchReconstruction({
    ...(values.iterations ? { iterations: Number(values.iterations) } : {}),
    ...(values.images ? { images: Number(values.images) } : {}),
    ...(values.block ? { block: values.block } : {}),
    ...(values.batch ? { batch: Number(values.batch) } : {}),
    ...(values.workers ? { workers: Number(values.workers) } : {}),
    ...(values.threads ? { threads: Number(values.threads) } : {}),
    ...(values.variant ? { variants: values.variant } : {}),
    ...(values.repeat ? { repeat: Number(values.repeat) } : {}),
  });
  if (values.json) process.stdout.write(JSON.stringify(res, null, 2) + '\n');
  else {
    for (const r of res) process.stdout.write(`${r.variant}: ${r.secondsPer1000.toFixed(2)} s wall (median iteration x 1000: ${r.medianSecondsPer1000.toFixed(2)} s), ${r.cpuSecondsPer1000.toFixed(2)} CPU-s per 1000 iterations (${r.iterations} timed), block MSE after ${r.mseAfter.toPrecision(6)}\n`);
    if (Number(values.repeat ?? 1) > 1) {
      process.stdout.write('medians per 1000 iterations:\n');
      for (const v of [...new Set(res.map((r) => r.variant))]) {
        const rs = res.filter((r) => r.variant === v);
        process.stdout.write(`  ${v}: ${median(rs.map((r) => r.secondsPer1000)).toFixed(2)} s wall, ${median(rs.map((r) => r.cpuSecondsPer1000)).toFixed(2)} CPU-s (${rs.length} runs)\n`);
      }
    }
  }
}
