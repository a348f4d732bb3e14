// The training graph of one block's reconstruction, as plain ONNX ops that sdk/autodiff
// differentiates:
//   weights     Ŵ = s·(clip(⌊W/s⌋ + h(V) + z, qmin, qmax) − z),  h(V) = clip(σ(V)(ζ−γ)+γ, 0, 1)   (AdaRound)
//   activations x̂ = s·(clip(round(x/s) + z, qmin, qmax) − z) with Round straight-through, which
//               gives LSQ's step gradient (round(x/s) − x/s inside the range, qmin/qmax − z outside)
//   block input x_in = where(m, x̂_q, x_fp), m ~ Bernoulli(p) elementwise (QDrop; p = 1 is BRECQ)
//   loss        rec + λ_round·Σ(1 − |2h − 1|^β) + λ_PEM·L_PEM + λ_PCR·L_PCR
// Reconstruction error and PCR's KL are summed over a sample and averaged over the batch (the
// AdaRound/BRECQ convention that λ_round = 0.01 was tuned for).
// Speed (ReconFormulation, defaults measured fastest in sdk/quant/bench.ts): the QDrop mask and
// PCR's Gaussian noise are graph inputs that the caller draws (recon.ts takes windows of a pool
// drawn once per block) instead of RandomUniformLike/RandomNormalLike, which cost more than a
// convolution per step; the activation fake quantizer is one op (a model-local function) with its
// own gradient rule (lsq.ts), not four ops differentiated one by one; log-softmax is written as
// x − max − log Σ exp(x − max), since onnxruntime's LogSoftmax over the channel axis of an NCHW
// tensor is several times slower.
import { A, GraphBuilder } from '../onnx/builder.ts';
import { getOpset } from '../onnx/versions.ts';
import { removeUnused } from '../onnx/edit.ts';
import { f32, makeTensor } from '../onnx/tensor.ts';
import type { Graph, Model, Node, Tensor } from '../onnx/types.ts';
import type { Block } from './blocks.ts';
import type { ActSite, WeightSite } from './plan.ts';
import { LSQ_DOMAIN, LSQ_OP, LSQ_OP_RELU, LSQ_OP_Z, lsqFunctions } from './lsq.ts';
import { ADAROUND_GAMMA, ADAROUND_OP, ADAROUND_ZETA, adaRoundFunction } from './adaround.ts';
import { rangeOf, type QuantParams } from './quantizer.ts';

export { ADAROUND_GAMMA, ADAROUND_ZETA } from './adaround.ts';

export interface ReconGraphOptions {
  /** Probability of taking the quantized input per element (QDrop 0.5; 1 = always quantized, 0 = always FP). */
  readonly inputQuantProb: number;
  /** Learn activation steps (LSQ); otherwise they are constants. */
  readonly learnActs: boolean;
  /** The quantizer of the block's output, whose readers are in later blocks. Given, its step is a
   * parameter here and the reconstruction error is measured on the quantized output, as in QDrop
   * (docs/METHOD.md, "Who learns a quantizer's step"). */
  readonly outputSite?: ActSite;
  /** Learn the step of the block input's quantizer here (default true). False where the block
   * that produced the input learned it as its `outputSite`: the step is then a constant and the
   * graph needs no gradient with respect to the block input. */
  readonly learnInputStep?: boolean;
  /** PEM: weight and, per weighted node, the constant c_l multiplying ‖Ŵ_l‖² (ρ_l·e_l/‖W_l‖²). */
  readonly pem?: { readonly weight: number; readonly coef: ReadonlyMap<string, number> };
  /** PCR: weight, noise ratio γ and temperature T. */
  readonly pcr?: { readonly weight: number; readonly gamma: number; readonly temperature: number };
  readonly batch: number;
  /** Seed for the random ops (mask, PCR noise); a different seed per block keeps them independent. */
  readonly seed: number;
  /** Equivalent formulations (for A/B measurements); defaults are the fastest. */
  readonly formulation?: ReconFormulation;
}

/** Ways to write the same training graph; they differ in speed only (and in where random numbers come from). */
export interface ReconFormulation {
  /** 'fed' (default): the QDrop mask and PCR noise are graph inputs (ReconGraph.inputs.mask/noise);
   * 'graph': RandomUniformLike / RandomNormalLike inside the graph. */
  readonly random?: 'fed' | 'graph';
  /** 'separate' (default): a second copy of the block's nodes runs on the perturbed input;
   * 'batched': the clean pass's nodes run both inputs concatenated along the batch (when every op of
   * the block is per-sample). Batched saves per-op overhead but doubles the working set: measured
   * no faster on ResNet-20's layer2.0 and 15 % slower on layer1.0 (28x28) on one CPU thread. */
  readonly pcrPass?: 'batched' | 'separate';
  /** 'decomposed' (default): log-softmax as x − max − log Σ exp(x − max); 'op': ONNX LogSoftmax. */
  readonly logSoftmax?: 'decomposed' | 'op';
  /** 'function' (default): activation fake quantization as one op with its own gradient rule
   * (lsq.ts); 'ops': Div, Round, Clip, Mul differentiated op by op. */
  readonly lsq?: 'function' | 'ops';
  /** 'op' (default): sums of squares (reconstruction error, PEM's ‖Ŵ‖²) as ReduceSumSquare, whose
   * gradient is one Mul; 'mul': ReduceSum(Mul(d, d)), differentiated as Expand + two Muls + Sum. */
  readonly square?: 'op' | 'mul';
  /** PCR's perturbed pass with 'separate': 'linear' (default) writes each of its first Convs (those
   * reading the block input, without bias) as Conv(x_in) + Conv(ε): the clean pass's output plus a
   * Conv of the constant noise, so the input gradient of both passes is one ConvTranspose of the
   * summed output gradients instead of two; 'copy': Conv(x_in + ε). Falls back to 'copy' when a
   * consumer of the block input is not such a Conv. */
  readonly pcrEntry?: 'linear' | 'copy';
  /** AdaRound's rounding regulariser Σ 1 − |2h − 1|^β: 'explog' (default) writes the power as
   * Exp(β/2 · Log((2h − 1)² + 1e-30)), 'pow' as Pow(Abs(2h − 1), β). onnxruntime's Pow with a
   * tensor exponent is a scalar powf per element (~4.6 ns each here, twice per weight with its
   * gradient: 8 % of a layer3 step at batch 16), while Exp and Log are vectorised. The 1e-30 keeps
   * the Log finite where h = 1/2 (the value there becomes 1e-30^(β/2), i.e. 0, and so does the
   * gradient) and changes nothing measurable elsewhere. */
  readonly roundReg?: 'explog' | 'pow';
  /** 'function' (default): the block's weight quantizers and rounding regulariser as one op over
   * all its V concatenated, with its own gradient rule (adaround.ts); 'ops': per layer, plain ops
   * differentiated one by one (with `roundReg`'s choice of power). */
  readonly adaround?: 'function' | 'ops';
  /** 'fused' (default, with `lsq` 'function'): an unsigned activation quantizer (qmin 0, zero point
   * 0) of a Relu's output reads the Relu's input as one ReluLsqFakeQuant (lsq.ts), whose clipping
   * at 0 is the Relu and whose gradient carries the Relu's mask: the same values and gradients
   * without the Relu's forward pass and its backward mask; the Relu stays only where something
   * else reads its output. 'separate': Relu, then the quantizer. */
  readonly reluQuant?: 'fused' | 'separate';
}

/** The original formulation (in-graph random ops, LogSoftmax, fake quantization op by op). */
export const LEGACY_RECON_FORMULATION: ReconFormulation = { random: 'graph', pcrPass: 'separate', logSoftmax: 'op', lsq: 'ops', square: 'mul', pcrEntry: 'copy', roundReg: 'pow', adaround: 'ops', reluQuant: 'separate' };

export interface ReconGraph {
  readonly model: Model;
  readonly loss: string;
  /** Parameters: AdaRound V per node, LSQ steps per value (the learned ones: `learnedSteps`).
   * Nodes may share one V parameter (the 'function' formulation concatenates them): `vSlices`
   * says where each node's V lies in it (nodeV reads it). */
  readonly vParams: ReadonlyMap<string, string>;
  readonly vSlices: ReadonlyMap<string, { readonly offset: number; readonly length: number }>;
  readonly stepParams: ReadonlyMap<string, string>;
  /** The values of `stepParams` to differentiate (all of them unless some are constants here). */
  readonly learnedSteps: ReadonlySet<string>;
  /** Data inputs: the block inputs on both paths, the FP target, β and the rounding weight; with
   * random numbers fed, the QDrop mask (bool, true = quantized input, shaped like x) and PCR's
   * standard normal noise (float32, shaped like x). */
  readonly inputs: {
    /** The quantized path's block input, raw (absent when nothing reads it raw) and, when the input
     * quantizer's step is a constant here, after that quantizer (`xqHat`, precomputed). */
    readonly xq?: string; readonly xqHat?: string; readonly xfp: string; readonly y: string; readonly beta: string; readonly roundWeight: string;
    readonly mask?: string; readonly noise?: string;
  };
  /** Whether PCR's perturbed pass shares the clean pass's nodes (batched formulation). */
  readonly pcrBatched: boolean;
  /** Values the autodiff must treat as constants. */
  readonly stopGradient: readonly string[];
  /** Loss components, output for logging. */
  readonly parts: { readonly rec: string; readonly round: string; readonly pem?: string; readonly pcr?: string };
  /** Graph value holding the block's output on the clean branch. */
  readonly output: string;
}

/** x̂ = s·(clip(round(x/s) + z, qmin, qmax) − z) as plain ops (Div, Round, Clip, Mul; Add/Sub
 * around the Clip for z ≠ 0), in the order the LSQ function's body uses (lsq.ts). */
export function fakeQuantOps(b: GraphBuilder, x: string, s: string, z: number, qmin: number, qmax: number): string {
  let r = b.op1('Round', [b.op1('Div', [x, s])]);
  if (z !== 0) r = b.op1('Add', [r, b.scalar(z)]);
  let c = b.op1('Clip', [r, b.scalar(qmin), b.scalar(qmax)]);
  if (z !== 0) c = b.op1('Sub', [c, b.scalar(z)]);
  return b.op1('Mul', [c, s]);
}

/** Shape [1, .., C, .., 1] that broadcasts a per-channel vector along `axis` of a rank-r tensor. */
export const channelShape = (rank: number, axis: number, c: number): number[] => Array.from({ length: rank }, (_, i) => (i === axis ? c : 1));

/** A per-channel vector (along `axis` of a tensor of `dims`) repeated to one value per element. */
export function perElement(values: ArrayLike<number>, dims: readonly number[], axis: number): Float32Array {
  let inner = 1;
  for (let i = axis + 1; i < dims.length; i++) inner *= dims[i]!;
  const n = dims.reduce((a, b) => a * b, 1);
  const C = values.length;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = values[C === 1 ? 0 : Math.floor(i / inner) % C]!;
  return out;
}

/** Node `node`'s V within the values `data` of its V parameter (ReconGraph.vSlices). */
export function nodeV(rg: Pick<ReconGraph, 'vSlices'>, data: Float32Array, node: string): Float32Array {
  const s = rg.vSlices.get(node)!;
  return data.subarray(s.offset, s.offset + s.length);
}

/** V such that h(V) equals the fractional part of W/s (AdaRound's initialisation). */
export function initialV(w: Float32Array, dims: readonly number[], p: QuantParams): { v: Float32Array; floor: Float32Array } {
  const axis = p.spec.axis ?? 0;
  let inner = 1;
  for (let i = axis + 1; i < dims.length; i++) inner *= dims[i]!;
  const C = p.scale.length;
  const v = new Float32Array(w.length);
  const floor = new Float32Array(w.length);
  for (let i = 0; i < w.length; i++) {
    const c = C === 1 ? 0 : Math.floor(i / inner) % C;
    const r = Math.fround(w[i]! / p.scale[c]!);
    const f = Math.floor(r);
    floor[i] = f;
    const frac = Math.min(Math.max(r - f, 1e-4), 1 - 1e-4);
    const sig = (frac - ADAROUND_GAMMA) / (ADAROUND_ZETA - ADAROUND_GAMMA);
    v[i] = Math.log(sig / (1 - sig));
  }
  return { v, floor };
}

/** Hard rounding at the end: codes = clamp(⌊W/s⌋ + [h(V) ≥ 0.5] + z, qmin, qmax). */
export function hardCodes(floor: Float32Array, v: Float32Array, dims: readonly number[], p: QuantParams): Int32Array {
  const { qmin, qmax } = rangeOf(p.spec);
  const axis = p.spec.axis ?? 0;
  let inner = 1;
  for (let i = axis + 1; i < dims.length; i++) inner *= dims[i]!;
  const C = p.scale.length;
  const out = new Int32Array(v.length);
  for (let i = 0; i < v.length; i++) {
    const c = C === 1 ? 0 : Math.floor(i / inner) % C;
    const sig = 1 / (1 + Math.exp(-v[i]!));
    const h = Math.min(1, Math.max(0, sig * (ADAROUND_ZETA - ADAROUND_GAMMA) + ADAROUND_GAMMA));
    const q = floor[i]! + (h >= 0.5 ? 1 : 0) + p.zeroPoint[c]!;
    out[i] = q < qmin ? qmin : q > qmax ? qmax : q;
  }
  return out;
}

function reduceMean(b: GraphBuilder, x: string, axes: readonly number[], opset: number): string {
  return opset >= 18
    ? b.op1('ReduceMean', [x, b.ints(axes)], { keepdims: A.int(1) })
    : b.op1('ReduceMean', [x], { axes: A.ints(axes), keepdims: A.int(1) });
}

/** Ops that never mix samples of a batch (so two batches can run concatenated through them). */
const PER_SAMPLE_OPS = new Set([
  'Conv', 'ConvTranspose', 'Relu', 'LeakyRelu', 'PRelu', 'Clip', 'Sigmoid', 'HardSigmoid', 'HardSwish', 'Tanh', 'Elu', 'Selu',
  'Add', 'Sub', 'Mul', 'Div', 'Neg', 'Abs', 'Sqrt', 'Exp', 'Log', 'Pow', 'Identity', 'Dropout', 'MaxPool', 'AveragePool',
  'GlobalAveragePool', 'GlobalMaxPool', 'Gemm', 'MatMul', 'Flatten', 'Reshape', 'Softmax', 'LogSoftmax', 'Concat', 'Pad', 'Resize',
  'BatchNormalization',
]);

/**
 * Whether the block's nodes treat samples independently: known per-sample ops, BN in inference mode,
 * no reshape, pad, concat or softmax touching the batch axis, no constant operand with a batch axis.
 */
export function perSampleNodes(nodes: readonly Node[], g: Graph): boolean {
  const ints = (v: string | undefined): readonly bigint[] | undefined => {
    const t = v ? g.initializers.get(v) : undefined;
    return t && (t.dtype === 'int64') ? Array.from(t.data as BigInt64Array) : undefined;
  };
  const attrInt = (n: Node, k: string, d: number): number => { const a = n.attrs[k]; return a && a.kind === 'int' ? Number(a.value) : d; };
  for (const n of nodes) {
    if ((n.domain !== '' && n.domain !== 'ai.onnx') || !PER_SAMPLE_OPS.has(n.opType)) return false;
    switch (n.opType) {
      case 'BatchNormalization': if (attrInt(n, 'training_mode', 0) !== 0) return false; break;
      case 'Flatten': if (attrInt(n, 'axis', 1) < 1) return false; break;
      case 'Softmax': case 'LogSoftmax': { const a = attrInt(n, 'axis', -1); if (a === 0 || a < -1) return false; break; }
      case 'Concat': if (attrInt(n, 'axis', 0) < 1) return false; break;
      case 'Gemm': if (attrInt(n, 'transA', 0) !== 0) return false; break;
      case 'Reshape': { const s = ints(n.inputs[1]); if (!s || (s[0] !== 0n && s[0] !== -1n)) return false; if (s[0] === -1n && s.slice(1).some((d) => d === -1n || d === 0n)) return false; break; }
      case 'Pad': { const p = ints(n.inputs[1]); if (!p || p[0] !== 0n || p[p.length / 2] !== 0n || (n.inputs[3] ?? '') !== '') return false; break; }
      case 'Resize': return false;
      default: break;
    }
    // a constant operand with a leading axis > 1 could be broadcast along the batch
    if (['Add', 'Sub', 'Mul', 'Div', 'Pow', 'PRelu', 'MatMul'].includes(n.opType)) {
      for (const i of n.inputs) {
        const t = i ? g.initializers.get(i) : undefined;
        if (t && t.dims.length >= 3 && t.dims[0]! > 1) return false;
      }
    }
  }
  return true;
}

/** log-softmax over axis 1 (see the file comment); `stop` receives the max, which carries no gradient. */
function logSoftmax1(b: GraphBuilder, z: string, opset: number, form: 'decomposed' | 'op', stop: string[]): string {
  if (form === 'op') return b.op1('LogSoftmax', [z], { axis: A.int(1) });
  const m = opset >= 18
    ? b.op1('ReduceMax', [z, b.ints([1])], { keepdims: A.int(1) })
    : b.op1('ReduceMax', [z], { axes: A.ints([1]), keepdims: A.int(1) });
  stop.push(m);
  const zs = b.op1('Sub', [z, m]);
  const lse = b.op1('Log', [b.op1('ReduceSum', [b.op1('Exp', [zs]), b.ints([1])], { keepdims: A.int(1) })]);
  return b.op1('Sub', [zs, lse]);
}

export interface BlockSites {
  readonly weights: readonly WeightSite[];
  readonly acts: readonly ActSite[];
}

/**
 * Builds the reconstruction graph of `block`. `wInit` holds each weighted node's scales/zero points
 * (fixed) with its ⌊W/s⌋ and initial V; `aInit` the initial activation quantizers.
 */
export function buildReconGraph(
  full: Model,
  block: Block,
  sites: BlockSites,
  wInit: ReadonlyMap<string, { params: QuantParams; floor: Float32Array; v: Float32Array }>,
  aInit: ReadonlyMap<string, QuantParams>,
  inputShape: readonly number[],
  outputShape: readonly number[],
  opts: ReconGraphOptions,
): ReconGraph {
  const g = full.graph;
  const opset = getOpset(full) ?? 13;
  const set = new Set(block.nodes);
  const nodes = g.nodes.filter((n) => set.has(n.name));
  const form = { random: 'fed', pcrPass: 'separate', logSoftmax: 'decomposed', lsq: 'function', square: 'op', pcrEntry: 'linear', roundReg: 'explog', adaround: 'function', reluQuant: 'fused', ...opts.formulation } as Required<ReconFormulation>;
  const b = new GraphBuilder(`recon:${block.name}`, '', [...g.initializers.keys(), ...nodes.flatMap((n) => [n.name, ...n.outputs]), block.input]);
  const sumSquares = (x: string): string => form.square === 'op'
    ? b.op1('ReduceSumSquare', [x], { keepdims: A.int(0) })
    : b.op1('ReduceSum', [b.op1('Mul', [x, x])], { keepdims: A.int(0) });
  const stop: string[] = [];
  const inShape = [opts.batch, ...inputShape.slice(1)];
  const xfp = b.input('recon.x_fp', 'float32', inShape);
  const y = b.input('recon.y_fp', 'float32', [opts.batch, ...outputShape.slice(1)]);
  const beta = b.input('recon.beta', 'float32', []);
  const roundWeight = b.input('recon.round_weight', 'float32', []);
  const qdrop = opts.inputQuantProb > 0 && opts.inputQuantProb < 1;
  const pcrOn = !!opts.pcr && opts.pcr.weight > 0;
  const maskIn = qdrop && form.random === 'fed' ? b.input('recon.mask', 'bool', inShape) : undefined;
  const noiseIn = pcrOn && form.random === 'fed' ? b.input('recon.noise', 'float32', inShape) : undefined;
  // shared initializers the block reads (BN parameters, biases), except the quantized weights
  const wByInit = new Map(sites.weights.map((w) => [w.weight, w]));
  for (const n of nodes) for (const i of n.inputs) { const t = i && g.initializers.get(i); if (t && !wByInit.has(i)) b.initializers.set(i, t); }

  // activation quantizers
  const stepParams = new Map<string, string>();
  const actByValue = new Map(sites.acts.map((a) => [a.value, a]));
  const frozenSteps = new Set<string>();
  // emitted Relu outputs -> their inputs, for the fused quantizer ('reluQuant')
  const reluInput = new Map<string, string>();
  const fq = (x: string, site: ActSite): string => {
    const p = aInit.get(site.value)!;
    const { qmin, qmax } = rangeOf(p.spec);
    let s = stepParams.get(site.value);
    if (!s) {
      s = b.initializer(`recon.step:${site.value}`, f32([], [p.scale[0]!]));
      stepParams.set(site.value, s);
      if (!opts.learnActs || (site.value === block.input && opts.learnInputStep === false)) {
        stop.push(s);
        frozenSteps.add(s);
      }
    }
    const z = p.zeroPoint[0]!;
    if (form.lsq === 'function') {
      const pre = form.reluQuant === 'fused' && z === 0 && qmin === 0 ? reluInput.get(x) : undefined;
      if (pre) return b.op(LSQ_OP_RELU, [pre, s, b.scalar(qmin), b.scalar(qmax)], {}, { domain: LSQ_DOMAIN, outputs: 2 })[0]!;
      const ins = z === 0 ? [x, s, b.scalar(qmin), b.scalar(qmax)] : [x, s, b.scalar(z), b.scalar(qmin), b.scalar(qmax)];
      return b.op(z === 0 ? LSQ_OP : LSQ_OP_Z, ins, {}, { domain: LSQ_DOMAIN, outputs: 2 })[0]!;
    }
    return fakeQuantOps(b, x, s, z, qmin, qmax);
  };

  // AdaRound weights
  const vParams = new Map<string, string>();
  const vSlices = new Map<string, { offset: number; length: number }>();
  const wHat = new Map<string, string>();
  const hVals: string[] = [];
  let roundFn: string | undefined; // the regulariser, when the 'function' op computes it
  let wFlat: string | undefined; // every Ŵ concatenated, in site order ('function')
  let wTotal = 0; // its length
  // β/2, read by the Exp/Log form of the regulariser
  const halfBeta = form.roundReg === 'explog' || form.adaround === 'function' ? b.op1('Mul', [beta, b.scalar(0.5)]) : beta;
  if (form.adaround === 'function' && sites.weights.length > 0) {
    const total = sites.weights.reduce((a, w) => a + wInit.get(w.node)!.v.length, 0);
    wTotal = total;
    const v = new Float32Array(total);
    const floor = new Float32Array(total);
    const scale = new Float32Array(total);
    const zp = new Float32Array(total);
    const lo = new Float32Array(total);
    const hi = new Float32Array(total);
    let offset = 0;
    for (const site of sites.weights) {
      const init = wInit.get(site.node)!;
      const p = init.params;
      const { qmin, qmax } = rangeOf(p.spec);
      const n = init.v.length;
      v.set(init.v, offset);
      floor.set(init.floor, offset);
      scale.set(perElement(p.scale, site.dims, p.spec.axis ?? 0), offset);
      zp.set(perElement(Float32Array.from(p.zeroPoint), site.dims, p.spec.axis ?? 0), offset);
      lo.fill(qmin, offset, offset + n);
      hi.fill(qmax, offset, offset + n);
      vSlices.set(site.node, { offset, length: n });
      offset += n;
    }
    // one value for the whole vector where every element has it: a scalar
    const vec = (a: Float32Array, what: string): string => (a.every((x) => x === a[0]) ? b.scalar(a[0]!) : b.constant(makeTensor('float32', [total], a), `recon.w_${what}`));
    const vName = b.initializer('recon.v', makeTensor('float32', [total], v));
    for (const site of sites.weights) vParams.set(site.node, vName);
    const [w, reg] = b.op(ADAROUND_OP, [vName, b.constant(makeTensor('float32', [total], floor), 'recon.w_floor'), vec(scale, 'scale'), vec(zp, 'zero_point'), vec(lo, 'qmin'), vec(hi, 'qmax'), halfBeta], {}, { domain: LSQ_DOMAIN, outputs: 4 }) as [string, string];
    roundFn = reg;
    wFlat = w;
    const parts = sites.weights.length === 1 ? [w] : b.op('Split', [w, b.ints(sites.weights.map((x) => vSlices.get(x.node)!.length))], { axis: A.int(0) }, { outputs: sites.weights.length });
    sites.weights.forEach((site, i) => wHat.set(site.weight, b.op1('Reshape', [parts[i]!, b.ints(site.dims)], {}, { name: `${site.node}.w_hat` })));
  } else {
    for (const site of sites.weights) {
      const init = wInit.get(site.node)!;
      const p = init.params;
      const { qmin, qmax } = rangeOf(p.spec);
      const cs = channelShape(site.dims.length, p.spec.axis ?? 0, p.scale.length);
      const v = b.initializer(`recon.v:${site.node}`, makeTensor('float32', site.dims, Float32Array.from(init.v)));
      vParams.set(site.node, v);
      vSlices.set(site.node, { offset: 0, length: init.v.length });
      const floor = b.constant(makeTensor('float32', site.dims, init.floor), `${site.node}.w_floor`);
      const sc = b.constant(makeTensor('float32', cs, Float32Array.from(p.scale)), `${site.node}.w_scale`);
      const zp = b.constant(makeTensor('float32', cs, Float32Array.from(p.zeroPoint)), `${site.node}.w_zero_point`);
      const sig = b.op1('Sigmoid', [v]);
      const h = b.op1('Clip', [b.op1('Add', [b.op1('Mul', [sig, b.scalar(ADAROUND_ZETA - ADAROUND_GAMMA)]), b.scalar(ADAROUND_GAMMA)]), b.scalar(0), b.scalar(1)]);
      hVals.push(h);
      const q = b.op1('Clip', [b.op1('Add', [b.op1('Add', [floor, h]), zp]), b.scalar(qmin), b.scalar(qmax)]);
      wHat.set(site.weight, b.op1('Mul', [b.op1('Sub', [q, zp]), sc], {}, { name: `${site.node}.w_hat` }));
    }
  }

  // block input. QDrop mixes the two paths per element: where(mask, quantized, FP). Consumers that
  // read it through the block's input quantizer get the quantized path's value after that
  // quantizer (`xin`); consumers without one (an identity shortcut's Add) read the quantized path's
  // value as it is (`xraw`), as they do in the exported model, where only the quantized consumers
  // are rewired to the DequantizeLinear.
  // With the input quantizer's step a constant here, its output is a fixed function of the cached
  // input: it comes precomputed (`recon.x_q_hat`, recon.ts's fakeQuantize) instead of a fake
  // quantizer of seven activation-sized ops per step, and the raw value is fed only when a reader
  // without the quantizer needs it.
  const inSite = actByValue.get(block.input);
  const rawReaders = inSite ? nodes.filter((n) => n.inputs.includes(block.input) && !inSite.consumers.includes(n.name)) : [];
  const fixedInput = !!inSite && (!opts.learnActs || opts.learnInputStep === false);
  const xq = !fixedInput || rawReaders.length > 0 ? b.input('recon.x_q', 'float32', inShape) : undefined;
  const xqHatIn = fixedInput ? b.input('recon.x_q_hat', 'float32', inShape) : undefined;
  const xqHat = xqHatIn ?? (inSite ? fq(xq!, inSite) : xq!);
  let mix: (q: string) => string;
  if (opts.inputQuantProb >= 1) mix = (q) => q;
  else if (opts.inputQuantProb <= 0) mix = () => xfp;
  else if (maskIn) mix = (q) => b.op1('Where', [maskIn, q, xfp]);
  else {
    const u = b.op1('RandomUniformLike', [xfp], { seed: A.float(opts.seed), dtype: A.int(1) });
    stop.push(u);
    const mask = b.op1('Less', [u, b.scalar(opts.inputQuantProb)]);
    mix = (q) => b.op1('Where', [mask, q, xfp]);
  }
  const xin = mix(xqHat);
  const xraw = rawReaders.length > 0 ? mix(xq!) : undefined;

  // one copy of the block's nodes, reading `entry`; `override` may emit a node itself (returns its outputs)
  const emitted = new Map<string, readonly string[]>();
  // (`rawEntry`: what the block input's readers without its quantizer read instead, see `xraw`)
  const emit = (entry: string, tag: string, override?: (n: Node, ins: string[]) => string[] | undefined, rawEntry?: string): string => {
    const rename = new Map<string, string>([[block.input, entry]]);
    const fqCache = new Map<string, string>();
    for (const n of nodes) {
      const ins = n.inputs.map((v) => {
        if (!v) return v;
        const w = wHat.get(v);
        if (w) return w;
        if (v === block.input && rawEntry && rawReaders.includes(n)) return rawEntry;
        const r = rename.get(v) ?? v;
        const site = actByValue.get(v);
        if (site && v !== block.input && site.consumers.includes(n.name)) {
          let q = fqCache.get(v);
          if (!q) { q = fq(r, site); fqCache.set(v, q); }
          return q;
        }
        return r;
      });
      const own = override?.(n, ins);
      if (own) {
        n.outputs.forEach((o, i) => o && rename.set(o, own[i]!));
        continue;
      }
      const outs = n.outputs.map((o) => (o ? b.fresh(`${o}${tag}`) : o));
      n.outputs.forEach((o, i) => o && rename.set(o, outs[i]!));
      if (tag === '') emitted.set(n.name, outs);
      const node: Node = { ...n, name: b.fresh(`${n.name}${tag}`), inputs: ins, outputs: outs };
      if (n.opType === 'Relu' && (n.domain === '' || n.domain === 'ai.onnx') && ins[0] && outs[0]) reluInput.set(outs[0], ins[0]);
      b.nodes.push(node);
    }
    return rename.get(block.output)!;
  };
  // PCR's perturbed input x_in + ε, ε = γ·σ_c·n with σ_c the per-channel std of x_in (a constant)
  let xPert: string | undefined;
  let eps: string | undefined;
  if (pcrOn) {
    const rank = inShape.length;
    const axes = [0, ...Array.from({ length: rank - 2 }, (_, i) => i + 2)];
    const xs = b.op1('Identity', [xin]);
    stop.push(xs);
    const mean = reduceMean(b, xs, axes, opset);
    const dev = b.op1('Sub', [xs, mean]);
    const std = b.op1('Sqrt', [b.op1('Add', [reduceMean(b, b.op1('Mul', [dev, dev]), axes, opset), b.scalar(1e-12)])]);
    const noise = noiseIn ?? b.op1('RandomNormalLike', [xs], { seed: A.float(opts.seed + 0.5), dtype: A.int(1) });
    eps = b.op1('Mul', [noise, b.op1('Mul', [std, b.scalar(opts.pcr!.gamma)])]);
    stop.push(eps);
  }
  const pcrBatched = pcrOn && form.pcrPass === 'batched' && perSampleNodes(nodes, g);
  // 'linear' PCR entry: every consumer of the block input is a bias-free Conv reading it as X
  const entryConvs = nodes.filter((n) => n.inputs.includes(block.input));
  const pcrLinear = pcrOn && !pcrBatched && form.pcrEntry === 'linear' && entryConvs.every((n) =>
    n.opType === 'Conv' && (n.domain === '' || n.domain === 'ai.onnx') && n.inputs[0] === block.input && n.inputs.indexOf(block.input, 1) < 0 && !n.inputs[2]);
  if (pcrOn && !pcrLinear) xPert = b.op1('Add', [xin, eps!]);
  let yhat: string;
  let yt: string | undefined;
  if (pcrBatched) {
    const cat = (a: string, c: string): string => b.op1('Concat', [a, c], { axis: A.int(0) });
    const both = emit(cat(xin, xPert!), '', undefined, xraw ? cat(xraw, b.op1('Add', [xraw, eps!])) : undefined);
    [yhat, yt] = b.op('Split', [both, b.ints([opts.batch, opts.batch])], { axis: A.int(0) }, { outputs: 2 }) as [string, string];
  } else {
    yhat = emit(xin, '', undefined, xraw);
    if (pcrOn && pcrLinear) {
      yt = emit(eps!, '.pcr', (n, ins) => {
        if (!entryConvs.includes(n)) return undefined;
        // Conv(x_in + ε) = Conv(x_in) + Conv(ε): ins[0] is ε here, ins[1] the (quantized) weight
        const noiseOut = b.op1('Conv', [ins[0]!, ins[1]!], n.attrs, { name: `${n.name}.pcr_noise` });
        return [b.op1('Add', [emitted.get(n.name)![0]!, noiseOut], {}, { name: `${n.name}.pcr` })];
      });
    } else if (pcrOn) yt = emit(xPert!, '.pcr', undefined, xraw ? b.op1('Add', [xraw, eps!]) : undefined);
  }
  const invB = b.scalar(1 / opts.batch);
  const yq = opts.outputSite ? fq(yhat, opts.outputSite) : yhat;
  const d = b.op1('Sub', [yq, y]);
  const rec = b.op1('Mul', [sumSquares(d), invB], {}, { outputNames: ['recon.loss_rec'] });
  // rounding regulariser
  let round = roundFn ?? b.scalar(0);
  for (const h of hVals) {
    const c = b.op1('Sub', [b.op1('Mul', [h, b.scalar(2)]), b.scalar(1)]);
    const t = form.roundReg === 'explog'
      ? b.op1('Exp', [b.op1('Mul', [b.op1('Log', [b.op1('Add', [b.op1('Mul', [c, c]), b.scalar(1e-30)])]), halfBeta])])
      : b.op1('Pow', [b.op1('Abs', [c]), beta]);
    round = b.op1('Add', [round, b.op1('ReduceSum', [b.op1('Sub', [b.scalar(1), t])], { keepdims: A.int(0) })]);
  }
  round = b.op1('Identity', [round], {}, { outputNames: ['recon.loss_round'] });
  let loss = b.op1('Add', [rec, b.op1('Mul', [round, roundWeight])]);
  let pem: string | undefined;
  if (opts.pem && opts.pem.weight > 0) {
    let acc = b.scalar(0);
    if (wFlat) {
      // Σ_l c_l ‖Ŵ_l‖² over the concatenated Ŵ: ‖Ŵ ⊙ √c‖² with c per element
      const coef = new Float32Array(wTotal);
      for (const site of sites.weights) { const sl = vSlices.get(site.node)!; coef.fill(Math.sqrt(opts.pem.coef.get(site.node) ?? 0), sl.offset, sl.offset + sl.length); }
      const root = coef.every((x) => x === coef[0]) ? b.scalar(coef[0]!) : b.constant(makeTensor('float32', [coef.length], coef), 'recon.pem_root_coef');
      acc = sumSquares(b.op1('Mul', [wFlat, root]));
    } else {
      for (const site of sites.weights) {
        const c = opts.pem.coef.get(site.node) ?? 0;
        if (c === 0) continue;
        const wh = wHat.get(site.weight)!;
        acc = b.op1('Add', [acc, b.op1('Mul', [sumSquares(wh), b.scalar(c)])]);
      }
    }
    pem = b.op1('Identity', [acc], {}, { outputNames: ['recon.loss_pem'] });
    loss = b.op1('Add', [loss, b.op1('Mul', [pem, b.scalar(opts.pem.weight)])]);
  }
  let pcr: string | undefined;
  if (pcrOn && yt) {
    const T = opts.pcr!.temperature;
    const clean = b.op1('Identity', [yhat]);
    stop.push(clean);
    const zc = T === 1 ? clean : b.op1('Div', [clean, b.scalar(T)]);
    const zt = T === 1 ? yt : b.op1('Div', [yt, b.scalar(T)]);
    const logp = logSoftmax1(b, zc, opset, form.logSoftmax, stop);
    const p = b.op1('Exp', [logp]);
    const logq = logSoftmax1(b, zt, opset, form.logSoftmax, stop);
    const kl = b.op1('ReduceSum', [b.op1('Mul', [p, b.op1('Sub', [logp, logq])])], { keepdims: A.int(0) });
    pcr = b.op1('Mul', [kl, invB], {}, { outputNames: ['recon.loss_pcr'] });
    loss = b.op1('Add', [loss, b.op1('Mul', [pcr, b.scalar(opts.pcr!.weight)])]);
  }
  const lossName = b.op1('Identity', [loss], {}, { outputNames: ['recon.loss'] });
  b.output(lossName, 'float32', []);
  b.output(rec, 'float32', []);
  b.output(round, 'float32', []);
  if (pem) b.output(pem, 'float32', []);
  if (pcr) b.output(pcr, 'float32', []);
  // a Relu whose every reader became a fused quantizer is left without readers
  const graph: Graph = removeUnused(b.build());
  const lsqUsed = graph.nodes.some((n) => n.domain === LSQ_DOMAIN && n.opType !== ADAROUND_OP);
  const adaUsed = !!wFlat;
  return {
    model: {
      ...full,
      graph,
      metadata: {},
      ...(lsqUsed || adaUsed ? {
        opsetImports: [...full.opsetImports.filter((o) => o.domain !== LSQ_DOMAIN), { domain: LSQ_DOMAIN, version: 1 }],
        functions: [...(full.functions ?? []), ...(lsqUsed ? lsqFunctions(opset) : []), ...(adaUsed ? [adaRoundFunction(opset)] : [])],
      } : {}),
    },
    loss: lossName,
    vParams,
    vSlices,
    stepParams,
    learnedSteps: new Set([...stepParams.values()].filter((v) => !frozenSteps.has(v))),
    inputs: { ...(xq ? { xq } : {}), ...(xqHatIn ? { xqHat: xqHatIn } : {}), xfp, y, beta, roundWeight, ...(maskIn ? { mask: maskIn } : {}), ...(noiseIn ? { noise: noiseIn } : {}) },
    pcrBatched,
    stopGradient: stop,
    parts: { rec, round, ...(pem ? { pem } : {}), ...(pcr ? { pcr } : {}) },
    output: yhat,
  };
}

export type { Tensor };
