// Emitters for the two costly parts of Conv's backward pass, each in several formulations, and the
// decision function that picks one per conv (rules/Conv.ts calls them). All work for any spatial
// rank r, groups G (depthwise included), strides s, dilations d and explicit pads p.
//
// Input gradient dX
//   'convTranspose'  ConvTranspose(dY, W) with output_padding (the textbook form; onnxruntime's CPU
//                    ConvTranspose is GEMM + col2im and 2-3x slower than a Conv of the same size).
//   'conv'           the same sum as a Conv with flipped, group-transposed weights
//                      W'[g*Cg + i, o, j] = W[g*Og + o, i, k-1-j]      (built in-graph from W)
//                    over dY with (s-1) zeros inserted between its elements along each strided axis
//                    (Reshape/Pad/Reshape, no copy of W-sized data), pads d(k-1)-p_begin at the
//                    start and what makes the extent X's at the end. Stride 1 needs no insertion.
//                    For 1x1 kernels without pads the Conv runs on the small grid and the zeros are
//                    inserted into its result instead.
//   'phase'          strided 2-D ungrouped convs with K > 1: X's positions split by their phase
//                    modulo the stride; each phase is a stride-1 correlation of dY with the taps of
//                    W that land on it: one Conv per row phase with (column phase, Cin) output
//                    channels and a small kernel, a Transpose and a Concat to interleave the phases
//                    onto X's grid (inputGradByPhase).
// Weight gradient dW (per group g, K = prod(k), L = output positions):
//   'conv'           Conv of X by dY over batch-transposed tensors (a very thin GEMM inside MLAS).
//   'gemm'           im2col + one GEMM: X is laid out [G, Cg, N, S] (one Transpose), padded, and
//                    each of the K kernel offsets is one strided Slice; the slices are concatenated to
//                    P [G, K*Cg, N*L] and dW[g] = dY[g] [Og, N*L] x P[g]^T, one Gemm (G = 1) or a
//                    batched MatMul (G > 1); depthwise (Cg = Og = 1) uses Mul + ReduceSum. 1x1
//                    kernels without pads skip the slices (P is X, strided if s > 1).
//   'gemmsplit'      'gemm' without the Concat (G = 1): one Gemm dY [Co, N*L] x S_j^T per kernel
//                    offset j on its slice S_j [Cg, N*L], the K small [Co, Cg] results concatenated.
//                    The Concat copied K times X's size; the per-offset Gemms read dY K times but
//                    stay as fast as the one wide Gemm once Cg >= 8.
//   'shifted'        stride 1, G = 1: one Gemm per offset like 'gemmsplit', but with no patches at
//                    all: the last axis' shift moves X, the other axes' shifts move dY onto X's grid
//                    (Pads with negative pads), so a 3x3 kernel needs 2 shifted copies of X and 2
//                    of dY instead of a padded X and 9 strided slices (weightGradShifted).
//                    Depthwise (multiplier 1, any stride): one Mul + ReduceSum per offset over the
//                    same shifted copies (stride 1) or strided Slices of the padded X
//                    (weightGradDepthwise).
//   'shiftmm'        stride 1, G = 1, 2-D: every shift of X and of dY by one MatMul with a constant
//                    0/1 matrix each, then one Gemm for all K offsets (weightGradShiftMatmul). The
//                    automatic choice for images up to 14 wide until 'shiftmmk' (twelfth session:
//                    reconstruction 7x7 12.9 -> 10.6 s per 1,000 iterations against 'shifted', 14x14
//                    10.5 -> 10.3, 28x28 13.0 -> 13.8).
//   'shiftmmb'       'shiftmm' contracted per sample: the shifted X and dY need no Transpose moving the
//                    batch axis inside, a batched MatMul and a ReduceSum over the batch instead of one
//                    Gemm (weightGradShiftMatmulBatched). Not chosen automatically; reconstruction
//                    used it on images wider than 14 (steps 1.16-1.22x faster)
//                    until 'shiftmmk' replaced it.
//   'shiftmmk'       'shiftmmb' with X's column shifts kernel-column-major: one broadcast MatMul of X
//                    as [1, N*Ci*H, W] by kw constant [W, Wo] matrices gives each offset's copy
//                    whole, in X's own layout, so nothing moves it before the per-sample contraction
//                    (weightGradShiftMatmulKernelMajor). The automatic choice for stride-1 2-D
//                    convs with Cg >= 8.
//   'onehot'         the patches from one Conv with K fixed one-hot kernels over X as [N*Cin, 1, S]
//                    (strides, pads and dilations handled by the Conv kernel), contracted with dY per
//                    sample (a batched MatMul) or, below 128 output positions, in one Gemm
//                    (weightGradOneHot). The automatic choice for strided kernels and few channels.
//   'rowgemm'        depthwise (multiplier 1) only: per channel, batched GEMMs X_a^T dY over the
//                    rows each leading-axis offset a reads, then the last axis' offsets as fixed
//                    diagonals of the [W, Wo] results (one MatMul with a 0/1 matrix)
//                    (weightGradRowGemm). Other convs get the 'conv' form.
import { A } from '../../onnx/builder.ts';
import { allocArray, makeTensor } from '../../onnx/tensor.ts';
import type { Tensor } from '../../onnx/types.ts';
import type { ConvCase, ConvGradOptions, ConvInputGrad, ConvWeightGrad } from './convgrad-options.ts';
import type { RuleContext } from './types.ts';

export type { ConvCase, ConvGradOptions, ConvInputGrad, ConvWeightGrad } from './convgrad-options.ts';

/** The formulation before the fast paths existed (for A/B comparisons). */
export const LEGACY_CONV_GRAD: ConvGradOptions = { input: 'convTranspose', weight: 'conv' };

/**
 * The choice before 'gemmsplit' (for A/B comparisons): one Gemm over concatenated patches for
 * ungrouped convs that are 1x1 or stride 1 on at least 14x14 outputs, the batch-transposed Conv
 * otherwise.
 */
export const CONCAT_GEMM_CONV_GRAD: ConvGradOptions = {
  weight: (c) => (c.group === 1 && (prod(c.w.slice(2)) === 1 || (c.strides.every((s) => s === 1) && prod(c.y.slice(2)) >= 196)) ? 'gemm' : 'conv'),
};

/**
 * Ungrouped stride-1 convs with at most this many input channels take dX as ConvTranspose: the Conv
 * form's GEMM then has only Cin output rows (one for a grayscale stem), while ConvTranspose's has
 * Cin*K. The Conv form's time over ConvTranspose's (process CPU ms of forward + dX, 3x3 to 16
 * channels, one thread, medians of 15 alternating runs; batch 16 at 28 / 32 px, batch 64 in
 * brackets): 1 input channel 1.68 / 1.68 (1.40 / 1.46), 2: 1.34 / 1.37, 3: 1.30 / 1.35 (1.26 /
 * 1.17), 4: 1.09 / 1.19 (1.16 / 1.15), 8: 0.85 / 0.94 (0.86 / 0.85), 16: 0.64 / 0.73 (convbench.ts's
 * benchConv on these shapes, --cpu). ResNet-20's stem block, whose step needs dX for the learned step
 * of the network input's quantizer: 3.62 -> 2.68 s per 1,000 reconstruction iterations (CPU 6.59 ->
 * 4.71 s; `sdk/quant/bench.ts --block stem --workers 2 --images 1024 --variant qdrop:xgrad=conv
 * --variant qdrop --repeat 3`, medians), the same block error up to summation order.
 * Depthwise convs keep the Conv form (it wins there: chooseConvGrad's table).
 */
export const CONV_TRANSPOSE_MAX_INPUT_CHANNELS = 4;

/**
 * Picks the formulation of each gradient. Figures: `node --import tsx sdk/autodiff/convbench.ts`,
 * ms per forward + one gradient, median of 9 alternating runs, batch 128, onnxruntime 1.30 CPU,
 * 2 intra-op threads on a shared 2-core machine (load 5-8, so +-20% noise):
 *
 *   conv                   fwd+dX convT / conv     fwd+dW conv / gemm / onehot
 *   3x3 16-16 @28          43.4 / 23.7             141 / 85 (79) / 96
 *   3x3 16-32 s2 @28       28.0 / 65.8             43 / 44 (49) / 45
 *   1x1 16-32 s2 @28       12.2 / 15.6             25 / 9.6 (13) / 16
 *   3x3 32-32 @14          24.5 / 16.7             69 / 52 (54) / 61
 *   3x3 32-64 s2 @14       17.2 / 40.2             18 / 20 (30) / 28
 *   1x1 32-64 s2 @14        3.8 /  9.8             15 / 7.7 (3.0) / 4.0
 *   3x3 64-64 @7           19.0 / 14.3             34 / 39 (47) / 48
 *   dw3x3 96 @14           55.6 / 25.3             140 / 112 (175) / 231
 *   dw3x3 144 s2 @14       34.2 / 53.5             53 / 66 (121) / 114
 *   pw1x1 24-144 @14       35.6 / 41.4             76 / 40 (31) / 35
 *   g4 3x3 32-32 @14       41.9 / 38.1             55 / 58 (51) / 64
 *
 * The per-offset forms were timed later as process CPU ms (steadier than wall time on the loaded
 * machine) per forward + dW, 1 intra-op thread, median of 9 alternating runs
 * (`convbench.ts --only resnet --dw-only --cpu --threads 1 --reps 9`):
 *
 *   conv                   fwd+dW conv / gemm / gemmsplit / shifted / onehot
 *   3x3 1-16 @28 (stem)     5.6 /  5.1 / 10.3 / 11.7 /  4.5
 *   3x3 16-16 @28          45.9 / 35.1 / 28.3 / 24.5 / 34.9
 *   3x3 16-32 s2 @28       18.0 / 19.4 / 18.4 / (gemmsplit) / 16.7
 *   1x1 16-32 s2 @28       11.3 /  4.6 /  4.4 / (gemm) / 7.9
 *   3x3 32-32 @14          27.8 / 25.8 / 19.1 / 19.1 / 26.4
 *   3x3 32-64 s2 @14       12.6 / 13.9 / 12.9 / (gemmsplit) / 12.3
 *   1x1 32-64 s2 @14        7.7 /  2.7 /  2.9 / (gemm) / 3.9
 *   3x3 64-64 @7           23.7 / 21.4 / 17.7 / 17.2 / 22.6
 *
 * The depthwise convs of the MobileNet-style net (sdk/nn), same conditions, median of 5
 * (`convbench.ts --only dw --threads 1 --reps 5 --cpu`, load ~3 from a training run):
 *
 *   conv                   fwd+dX convT / conv     fwd+dW conv / gemm / shifted / rowgemm
 *   dw3x3 16 @28           16.6 /  9.2             28.7 / 23.7 / 18.7 / 15.7
 *   dw3x3 96 s2 @28        58.0 / 97.9             53.9 / 84.4 / 92.7 / 53.3
 *   dw3x3 144 @14          46.7 / 27.0             65.2 / 63.2 / 52.0 / 37.4
 *   dw3x3 144 s2 @14       19.1 / 25.7             22.8 / 36.7 / 32.0 / 17.8
 *   dw3x3 192 @7           13.1 /  4.7             29.6 / 31.4 / 23.8 / 15.5
 *   dw3x3 384 @7           28.5 / 10.9             54.6 / 62.6 / 55.2 / 32.2
 *
 * (the forward alone is 3-13 ms of these. Here the weights are constant, so onnxruntime turns the
 * forward Conv into its NCHWc kernel; in a training graph they are inputs and every depthwise Conv
 * runs as one tiny GEMM per channel and image: ~1 GMAC/s, the bulk of MobileNet's step.)
 * Strided depthwise dX stays ConvTranspose: a stride-phase form (one grouped Conv with s*s
 * sub-kernels + DepthToSpace) was tried and lost (82 vs 58 and 23 vs 19 ms above; onnxruntime's
 * DepthToSpace alone cost more than the ConvTranspose).
 *
 * At the batch sizes of a reconstruction slice (16) and of a training slice (64), one thread,
 * wall ms, median of 25 / 9 alternating runs (`convbench.ts --only resnet --dw-only --threads 1
 * --reps 25 --batch 16`, then `--reps 9 --batch 64`), after the one-hot form's contraction was
 * rewritten (a per-sample MatMul against the transposed dY, or one Gemm at few output positions):
 *
 *   conv                   fwd+dW gemm / gemmsplit / shifted / onehot, batch 16 | batch 64
 *   3x3 1-16 @28 (stem)    0.54 / 1.19 / 1.26 / 0.50  |  3.24 / 6.53 / 7.33 / 2.82
 *   3x3 16-16 @28          4.51 / 3.63 / 3.47 / 4.90  |
 *   3x3 16-32 s2 @28       2.48 / 2.28 / (gemmsplit) / 1.99  |  8.76 / 7.86 / (gemmsplit) / 7.72
 *   3x3 32-32 @14          3.35 / 2.97 / 2.77 / 3.99  |
 *   3x3 32-64 s2 @14       1.90 / 1.82 / (gemmsplit) / 1.40  |  6.38 / 6.20 / (gemmsplit) / 5.06
 *   3x3 64-64 @7           3.08 / 2.94 / 2.73 / 2.84  |
 *
 * So: dX as a Conv when no axis is strided, except from at most 4 input channels (ConvTranspose,
 * CONV_TRANSPOSE_MAX_INPUT_CHANNELS; zero insertion makes strided ones 1.3-2.5x slower than
 * ConvTranspose, depthwise included), by output phase for strided ungrouped 2-D convs with kernels
 * larger than 1x1 (fifteenth session, see inputGradByPhase), ConvTranspose for the other strided
 * ones; dW of ungrouped convs by GEMM: for stride 1 with Cg >= 8 'shiftmmk' on 2-D images
 * (eighteenth session; it replaced 'shifted' above 14 px and 'shiftmm' up to 14: a whole ResNet-20
 * training step at batch 64 on one thread 1.05 / 1.07 / 1.23 / 1.08x faster in four runs of the
 * dumped graphs alternating, reconstruction blocks 1.08-1.15x, see sdk/quant's RECON_CONV_GRAD),
 * 'shifted' on other ranks, 'onehot' for
 * strided ones and for few input channels (the patches come from one Conv
 * instead of K strided Slices), one Gemm ('gemm') for 1x1 kernels.
 * Depthwise convs (multiplier 1) use 'rowgemm' (fastest or tied on every shape: 1.7-2.3x less
 * dW time than the Conv form at stride 1, a tie at the large strided one); the elementwise
 * 'shifted' form (a Mul + ReduceSum per offset) is memory-bound and loses at 7 px and with strides.
 * Other grouped convs keep the batch-transposed Conv.
 */
export function chooseConvGrad(c: ConvCase, o: ConvGradOptions = {}): { input: ConvInputGrad; weight: ConvWeightGrad } {
  const strided = c.strides.some((s) => s > 1);
  const k = prod(c.w.slice(2));
  const cg = c.x[1]! / c.group;
  const depthwise = c.group === c.x[1] && c.group === c.w[0];
  const input: ConvInputGrad = o.input && o.input !== 'auto' ? o.input
    : !strided ? (c.group === 1 && c.x[1]! <= CONV_TRANSPOSE_MAX_INPUT_CHANNELS ? 'convTranspose' : 'conv')
    : c.group === 1 && k > 1 && c.x.length === 4 ? 'phase' : 'convTranspose';
  const weight: ConvWeightGrad = typeof o.weight === 'function'
    ? o.weight(c)
    : o.weight && o.weight !== 'auto'
    ? o.weight
    : c.group !== 1 ? (depthwise ? 'rowgemm' : 'conv') : k === 1 ? 'gemm' : strided || cg < 8 ? 'onehot'
    : c.x.length === 4 ? 'shiftmmk' : 'shifted';
  return { input, weight };
}

const range = (a: number, b: number): number[] => Array.from({ length: b - a }, (_, i) => a + i);
const prod = (xs: readonly number[]): number => xs.reduce((a, b) => a * b, 1);
const BIG = 2 ** 62;

/** W' of the file comment, [G*Cg, Og, k...], flipped along every spatial axis. */
function flippedWeights(ctx: RuleContext, w: string, ws: readonly number[], group: number): string {
  const { b } = ctx;
  const r = ws.length - 2;
  const [co, cg] = [ws[0]!, ws[1]!];
  const og = co / group;
  const k = ws.slice(2);
  const K = prod(k);
  const dtype = ctx.dtype(ctx.node.inputs[1]!); // w may be a scaled copy made in the backward pass
  if (group === 1 && K > 1 && (dtype === 'float32' || dtype === 'float64')) {
    // onnxruntime runs a 4-D Transpose and a reversing Slice at 4-9 ns per value (270 µs for a
    // 64x64x3x3 weight, one thread); this chain takes 74 µs: the kernel offsets reversed by one
    // small MatMul with the K x K anti-identity (flipping every spatial axis reverses the flattened
    // offset), then O and I swapped by a 2-D transpose and a swap of the last two axes, the two
    // fast kinds (see runtime/nchwc.ts)
    const anti = allocArray(dtype, K * K) as Float32Array | Float64Array;
    for (let i = 0; i < K; i++) anti[i * K + K - 1 - i] = 1;
    const flip = b.constant(makeTensor(dtype, [K, K], anti) as Tensor, 'bw_kernel_flip');
    const rev = b.op1('MatMul', [b.op1('Reshape', [w, ctx.ints([co * cg, K])]), flip], {}, { name: `${ctx.node.name}.grad_input_wflip` });
    const t2 = b.op1('Transpose', [b.op1('Reshape', [rev, ctx.ints([co, cg * K])])], { perm: A.ints([1, 0]) }, { name: `${ctx.node.name}.grad_input_wswap` });
    const t3 = b.op1('Transpose', [b.op1('Reshape', [t2, ctx.ints([cg, K, co])])], { perm: A.ints([0, 2, 1]) }, { name: `${ctx.node.name}.grad_input_wswap_k` });
    return b.op1('Reshape', [t3, ctx.ints([cg, co, ...k])]);
  }
  let t: string;
  if (group === 1) t = b.op1('Transpose', [w], { perm: A.ints([1, 0, ...range(2, r + 2)]) });
  else if (og === 1 || cg === 1) t = b.op1('Reshape', [w, ctx.ints([group * cg, og, ...k])]);
  else {
    const w5 = b.op1('Reshape', [w, ctx.ints([group, og, cg, ...k])]);
    const t5 = b.op1('Transpose', [w5], { perm: A.ints([0, 2, 1, ...range(3, r + 3)]) });
    t = b.op1('Reshape', [t5, ctx.ints([group * cg, og, ...k])]);
  }
  const axes = range(2, r + 2).filter((a) => ws[a]! > 1);
  if (axes.length === 0) return t;
  return b.op1('Slice', [t, ctx.ints(axes.map(() => -1)), ctx.ints(axes.map(() => -BIG)), ctx.ints(axes), ctx.ints(axes.map(() => -1))], {}, { name: `${ctx.node.name}.grad_input_wflip` });
}

/** flippedWeights, times `scale` along W's output channels (its axis 1 there when ungrouped). */
function scaledFlippedWeights(ctx: RuleContext, w: string, c: ConvCase, scale: string | undefined): string {
  const { b } = ctx;
  if (scale === undefined) return flippedWeights(ctx, w, c.w, c.group);
  const ones = c.w.slice(2).map(() => 1);
  const name = { name: `${ctx.node.name}.grad_weight_scaled` };
  if (c.group === 1) return b.op1('Mul', [flippedWeights(ctx, w, c.w, 1), b.op1('Reshape', [scale, ctx.ints([c.w[0]!, ...ones])])], {}, name);
  return flippedWeights(ctx, b.op1('Mul', [w, b.op1('Reshape', [scale, ctx.ints([c.w[0]!, 1, ...ones])])], {}, name), c.w, c.group);
}

/** Inserts (s-1) zeros after every element along each spatial axis: [N, C, S] -> [N, C, S*s]. */
function insertZeros(ctx: RuleContext, v: string, dims: readonly number[], strides: readonly number[]): string {
  const { b } = ctx;
  const r = dims.length - 2;
  const sp = dims.slice(2);
  const split = [0, dims[1]!, ...sp.flatMap((n) => [n, 1])];
  const u = b.op1('Reshape', [v, ctx.ints(split)]);
  const pads = new Array<number>(2 * (2 + 2 * r)).fill(0);
  for (let i = 0; i < r; i++) pads[2 + 2 * r + 2 + 2 * i + 1] = strides[i]! - 1;
  const z = b.op1('Pad', [u, ctx.ints(pads)]);
  return b.op1('Reshape', [z, ctx.ints([0, dims[1]!, ...sp.map((n, i) => n * strides[i]!)])]);
}

/** Pads (>0) or slices (<0) the end of each spatial axis by `delta`. */
function fitEnd(ctx: RuleContext, v: string, rank: number, delta: readonly number[]): string {
  const r = rank - 2;
  let out = v;
  if (delta.some((d) => d < 0)) {
    const axes = range(0, r).filter((i) => delta[i]! < 0);
    out = ctx.b.op1('Slice', [out, ctx.ints(axes.map(() => 0)), ctx.ints(axes.map((i) => delta[i]!)), ctx.ints(axes.map((i) => i + 2))]);
  }
  if (delta.some((d) => d > 0)) {
    const pads = new Array<number>(2 * rank).fill(0);
    for (let i = 0; i < r; i++) if (delta[i]! > 0) pads[rank + 2 + i] = delta[i]!;
    out = ctx.b.op1('Pad', [out, ctx.ints(pads)]);
  }
  return out;
}

/**
 * Input gradient as a Conv (see the file comment), or null when the pads make it impossible
 * (pads larger than the dilated kernel); the caller then uses ConvTranspose. With `scale` ([Co]),
 * the gradient of dY = scale * gy per channel: the scale multiplies the flipped weight (after the
 * flip, so that a constant W's flip stays a constant onnxruntime folds).
 */
export function inputGradAsConv(ctx: RuleContext, gy: string, w: string, c: ConvCase, scale?: string): string | null {
  const { b, node } = ctx;
  const r = c.x.length - 2;
  const k = c.w.slice(2);
  const ys = c.y;
  const strided = c.strides.some((s) => s > 1);
  const wf = scaledFlippedWeights(ctx, w, c, scale);
  const pointwise = k.every((v) => v === 1) && c.padsBegin.every((p) => p === 0) && c.padsEnd.every((p) => p === 0);
  if (pointwise) {
    // dX on the output grid, then spread onto X's grid.
    let z = b.op1('Conv', [gy, wf], { group: A.int(c.group), kernel_shape: A.ints(k) }, { name: `${node.name}.grad_input` });
    if (!strided) return z;
    z = insertZeros(ctx, z, [ys[0]!, c.x[1]!, ...ys.slice(2)], c.strides);
    return fitEnd(ctx, z, r + 2, range(0, r).map((i) => c.x[i + 2]! - ys[i + 2]! * c.strides[i]!));
  }
  const p0 = range(0, r).map((i) => c.dilations[i]! * (k[i]! - 1) - c.padsBegin[i]!);
  // End pad for an upsampled dY of extent (Ho-1)s+1.
  const p1 = range(0, r).map((i) => c.x[i + 2]! - (ys[i + 2]! - 1) * c.strides[i]! - 1 + c.padsBegin[i]!);
  if (p0.some((p) => p < 0) || p1.some((p) => p < 0)) return null;
  let u = gy;
  let end = p1;
  if (strided) {
    u = insertZeros(ctx, gy, ys, c.strides);
    // The upsampled tensor carries s-1 trailing zeros; trim them if the end pad cannot absorb them.
    const extra = range(0, r).map((i) => c.strides[i]! - 1);
    const trim = range(0, r).map((i) => Math.min(0, p1[i]! - extra[i]!));
    if (trim.some((t) => t < 0)) u = fitEnd(ctx, u, r + 2, trim);
    end = range(0, r).map((i) => p1[i]! - extra[i]! - trim[i]!);
  }
  return b.op1('Conv', [u, wf], {
    group: A.int(c.group), kernel_shape: A.ints(k), dilations: A.ints(c.dilations), pads: A.ints([...p0, ...end]),
  }, { name: `${node.name}.grad_input` });
}

/**
 * One spatial axis of a strided conv seen from X's grid: X's position s*q + a (phase a) gets
 * dY[q + t] * W[j] for the taps j with s*(q + t) - pb + d*j = s*q + a, i.e. t = (a + pb - d*j) / s
 * where that is an integer. A phase's taps form a stride-1 correlation over dY whose kernel spans
 * t in [lo, hi]; the span is widened to include 0 and Ho - Q (with zero taps) so that its Conv
 * needs no crop: pads lo' = -lo >= 0 at the start and Q + hi - Ho >= 0 at the end give Q outputs.
 */
interface PhaseSpan {
  readonly lo: number;
  /** Kernel extent, hi - lo + 1. */
  readonly kp: number;
  /** tap[u]: W's kernel index at the span's offset u, or -1. */
  readonly tap: Int32Array;
  readonly padEnd: number;
}

interface PhaseAxis {
  readonly s: number;
  /** Positions per phase, ceil(X / s). */
  readonly q: number;
  /** taps[a] = [t, j] pairs of phase a. */
  readonly taps: readonly (readonly [number, number])[][];
}

function phaseAxis(x: number, k: number, s: number, d: number, pb: number): PhaseAxis {
  const taps = Array.from({ length: s }, (_, a) => {
    const out: [number, number][] = [];
    for (let j = 0; j < k; j++) if ((a + pb - d * j) % s === 0) out.push([(a + pb - d * j) / s, j]);
    return out;
  });
  return { s, q: Math.ceil(x / s), taps };
}

/** tap[u] = W's kernel index at offset u of a span starting at lo, or -1. */
function tapTable(taps: readonly (readonly [number, number])[], lo: number, kp: number): Int32Array {
  const tap = new Int32Array(kp).fill(-1);
  for (const [t, j] of taps) tap[t - lo] = j;
  return tap;
}

function phaseSpan(ax: PhaseAxis, yo: number, taps: readonly (readonly [number, number])[]): PhaseSpan {
  const ts = taps.map(([t]) => t);
  const lo = Math.min(0, ...ts);
  const hi = Math.max(lo, yo - ax.q, ...ts);
  const kp = hi - lo + 1;
  return { lo, kp, tap: tapTable(taps, lo, kp), padEnd: ax.q + hi - yo };
}

/**
 * Input gradient of a strided 2-D ungrouped conv split by phase (see PhaseAxis): one Conv over dY
 * per row phase a0, whose output channels are (column phase a1, Cin) and whose kernel holds the
 * taps of W landing on (a0, a1), zero where a column phase has fewer:
 *   Wp[a0][(a1, ci), co, u0, u1] = W[co, ci, j0, j1],
 * built in-graph from W by one MatMul with a constant 0/1 matrix (folded once for a constant W).
 * A Transpose interleaves each output's column phases ([N, s1, Cin*Q0*Q1] -> [N, Cin*Q0*Q1, s1];
 * 1.2-1.5 ns per value on two threads, the dearest part after the Convs), a Concat the row
 * phases, and a Slice drops positions past X's extent. A 3x3 kernel at stride 2 becomes a 1x2 and
 * a 2x2 Conv: 12 multiply-adds per four X positions and channel pair where ConvTranspose does 9,
 * but ConvTranspose then scatters its
 * columns back (GEMM + col2im; in the TENT step's profile its four nodes, two of them the 1x1
 * shortcuts', took 8.1 ms in all on one thread and 10.0 on two); one Conv for all four phases
 * would do 16. Forward + dX, median ms at batch 64
 * (`node --import tsx sdk/autodiff/convbench.ts --only resnet --batch 64 --threads 2 --reps 41`):
 * ResNet-20's layer2.0 conv1 (16-32 @28) ConvTranspose 5.73, phases 5.09; layer3.0's (32-64 @14)
 * 3.53 / 2.77; at one thread 5.97 / 6.59 and 3.59 / 3.30. Four phases in one Conv then two
 * Transposes took 2.87 ms where the row phases apart took 2.73 (layer2.0's dX alone, 2 threads).
 * Returns null unless 2-D, ungrouped and float.
 */
export function inputGradByPhase(ctx: RuleContext, gy: string, w: string, c: ConvCase, scale?: string): string | null {
  const { b, node } = ctx;
  if (c.group !== 1 || c.x.length !== 4) return null;
  const dt = ctx.dtype(node.inputs[1]!);
  if (dt !== 'float32' && dt !== 'float64') return null;
  const [co, ci, kh, kw] = c.w as [number, number, number, number];
  const [rows, cols] = [0, 1].map((i) => phaseAxis(c.x[i + 2]!, c.w[i + 2]!, c.strides[i]!, c.dilations[i]!, c.padsBegin[i]!)) as [PhaseAxis, PhaseAxis];
  const [ho, wo] = [c.y[2]!, c.y[3]!];
  // the column span is shared by all column phases, so they fit one Conv's output channels
  const colSpan = phaseSpan(cols, wo, cols.taps.flat());
  const colTaps = cols.taps.map((taps) => tapTable(taps, colSpan.lo, colSpan.kp));
  const w2 = b.op1('Reshape', [w, ctx.ints([co * ci, kh * kw])]);
  const scaleRow = scale === undefined ? undefined : b.op1('Reshape', [scale, ctx.ints([1, co, 1, 1])]);
  const parts: string[] = [];
  for (let a0 = 0; a0 < rows.s; a0++) {
    const rs = phaseSpan(rows, ho, rows.taps[a0]!);
    const kp = rs.kp * colSpan.kp;
    const P = cols.s;
    // Sel [kh*kw, P*kp]: W's kernel offset -> (column phase, kernel offset of this Conv)
    const sel = allocArray(dt, kh * kw * P * kp) as Float32Array | Float64Array;
    for (let a1 = 0; a1 < P; a1++) for (let u0 = 0; u0 < rs.kp; u0++) for (let u1 = 0; u1 < colSpan.kp; u1++) {
      const [j0, j1] = [rs.tap[u0]!, colTaps[a1]![u1]!];
      if (j0 >= 0 && j1 >= 0) sel[(j0 * kw + j1) * P * kp + a1 * kp + u0 * colSpan.kp + u1] = 1;
    }
    const selC = b.constant(makeTensor(dt, [kh * kw, P * kp], sel) as Tensor, `${node.name}.grad_input_phase${a0}_taps`);
    const wt = b.op1('MatMul', [w2, selC], {}, { name: `${node.name}.grad_input_phase${a0}_w` }); // [Co, Ci, P, kp]
    // -> [P, Ci, Co, kp] by the fast kinds of Transpose: 2-D, a swap of the last two axes, and
    // one moving blocks of Co*kp values
    const t1 = b.op1('Transpose', [b.op1('Reshape', [wt, ctx.ints([co, ci * P * kp])])], { perm: A.ints([1, 0]) }); // [Ci, P, kp, Co]
    const t2 = b.op1('Transpose', [b.op1('Reshape', [t1, ctx.ints([ci * P, kp, co])])], { perm: A.ints([0, 2, 1]) }); // [Ci, P, Co, kp]
    const t3 = P === 1 ? t2 : b.op1('Transpose', [b.op1('Reshape', [t2, ctx.ints([ci, P, co * kp])])], { perm: A.ints([1, 0, 2]) }); // [P, Ci, Co*kp]
    let wp = b.op1('Reshape', [t3, ctx.ints([P * ci, co, rs.kp, colSpan.kp])]);
    if (scaleRow) wp = b.op1('Mul', [wp, scaleRow], {}, { name: `${node.name}.grad_weight_scaled` });
    let z = b.op1('Conv', [gy, wp], {
      kernel_shape: A.ints([rs.kp, colSpan.kp]), pads: A.ints([-rs.lo, -colSpan.lo, rs.padEnd, colSpan.padEnd]),
    }, { name: `${node.name}.grad_input` }); // [N, (a1, ci), Q0, Q1]
    if (P > 1) z = b.op1('Transpose', [b.op1('Reshape', [z, ctx.ints([0, P, ci * rows.q * cols.q])])], { perm: A.ints([0, 2, 1]) }, { name: `${node.name}.grad_input_phase_cols` });
    parts.push(b.op1('Reshape', [z, ctx.ints([0, ci, rows.q, 1, cols.q * P])]));
  }
  const z = parts.length === 1 ? parts[0]! : b.op1('Concat', parts, { axis: A.int(3) }, { name: `${node.name}.grad_input_phase_rows` });
  const full = b.op1('Reshape', [z, ctx.ints([0, ci, rows.q * rows.s, cols.q * cols.s])]);
  const [xh, xw] = [c.x[2]!, c.x[3]!];
  if (rows.q * rows.s === xh && cols.q * cols.s === xw) return full;
  return b.op1('Slice', [full, ctx.ints([0, 0]), ctx.ints([xh, xw]), ctx.ints([2, 3])]);
}

/** The sizes both weight-gradient emitters start from. */
interface WeightGradDims {
  /** Spatial rank. */
  readonly r: number;
  readonly G: number;
  readonly cin: number;
  /** Input channels per group. */
  readonly cg: number;
  readonly co: number;
  /** Output channels per group. */
  readonly og: number;
  /** Kernel extent per spatial axis and its product. */
  readonly k: readonly number[];
  readonly K: number;
}

/** The shapes both depthwise weight-gradient forms start from; null unless depthwise with multiplier 1. */
function depthwiseDims(c: ConvCase): { r: number; co: number; k: readonly number[]; K: number; rank: number; last: number; xsp: readonly number[]; ysp: readonly number[] } | null {
  const { r, G, cin, co, k, K } = weightGradDims(c);
  if (G === 1 || G !== cin || co !== cin) return null;
  return { r, co, k, K, rank: r + 2, last: r - 1, xsp: c.x.slice(2), ysp: c.y.slice(2) };
}

function weightGradDims(c: ConvCase): WeightGradDims {
  const G = c.group;
  const cin = c.x[1]!;
  const co = c.w[0]!;
  const k = c.w.slice(2);
  return { r: c.x.length - 2, G, cin, cg: cin / G, co, og: co / G, k, K: prod(k) };
}

/** Weight gradient as im2col + GEMM (see the file comment). */
export function weightGradAsGemm(ctx: RuleContext, x: string, gy: string, c: ConvCase, split = false): string {
  const { b, node } = ctx;
  const { r, G, cg, co, og, k, K } = weightGradDims(c);
  const ys = c.y.slice(2);
  const xsp = c.x.slice(2);
  const sp = range(0, r);

  const pointwise = K === 1 && c.padsBegin.every((p) => p === 0) && c.padsEnd.every((p) => p === 0);
  // A strided 1x1 kernel reads a subsampled X: subsampled first (NCHW), so the Transpose below
  // moves only what the kernel reads (a quarter of X at stride 2).
  let xs = x;
  let xsp2 = xsp;
  if (pointwise) {
    const ends = sp.map((i) => (ys[i]! - 1) * c.strides[i]! + 1);
    const cut = sp.filter((i) => c.strides[i]! > 1 || ends[i]! !== xsp[i]);
    if (cut.length > 0) {
      xs = b.op1('Slice', [x, ctx.ints(cut.map(() => 0)), ctx.ints(cut.map((i) => ends[i]!)), ctx.ints(cut.map((i) => i + 2)), ctx.ints(cut.map((i) => c.strides[i]!))]);
      xsp2 = ys;
    }
  }
  // X -> [G, Cg, N, S] (G dropped when 1). Axis of the spatial dims: a0.
  let xt: string;
  let a0: number;
  if (G === 1) {
    xt = b.op1('Transpose', [xs], { perm: A.ints([1, 0, ...range(2, r + 2)]) }, { name: `${node.name}.grad_weight_xt` });
    a0 = 2;
  } else {
    const x5 = b.op1('Reshape', [xs, ctx.ints([0, G, cg, ...xsp2])]);
    xt = b.op1('Transpose', [x5], { perm: A.ints([1, 2, 0, ...range(3, r + 3)]) }, { name: `${node.name}.grad_weight_xt` });
    a0 = 3;
  }
  // Patches: [.., K*Cg, N, So...] with (kernel offset, channel) order.
  let p: string;
  if (pointwise) {
    p = xt;
  } else {
    const rank = a0 + r;
    let xp = xt;
    if (c.padsBegin.some((v) => v > 0) || c.padsEnd.some((v) => v > 0)) {
      const pads = new Array<number>(2 * rank).fill(0);
      for (const i of sp) { pads[a0 + i] = c.padsBegin[i]!; pads[rank + a0 + i] = c.padsEnd[i]!; }
      xp = b.op1('Pad', [xt, ctx.ints(pads)]);
    }
    const parts: string[] = [];
    for (let j = 0; j < K; j++) {
      // Row-major kernel offset j -> per-axis index.
      const idx: number[] = [];
      let rem = j;
      for (let i = r - 1; i >= 0; i--) { idx[i] = rem % k[i]!; rem = Math.floor(rem / k[i]!); }
      const starts = sp.map((i) => idx[i]! * c.dilations[i]!);
      const ends = sp.map((i) => starts[i]! + (ys[i]! - 1) * c.strides[i]! + 1);
      parts.push(b.op1('Slice', [xp, ctx.ints(starts), ctx.ints(ends), ctx.ints(sp.map((i) => i + a0)), ctx.ints(sp.map((i) => c.strides[i]!))]));
    }
    if (split && G === 1) {
      const gt = b.op1('Transpose', [gy], { perm: A.ints([1, 0, ...range(2, r + 2)]) });
      const g2 = b.op1('Reshape', [gt, ctx.ints([co, -1])]);
      const outs = parts.map((q) => b.op1('Reshape', [b.op1('Gemm', [g2, b.op1('Reshape', [q, ctx.ints([cg, -1])])], { transB: A.int(1) }, { name: `${node.name}.grad_weight` }), ctx.ints([co, cg, 1])]));
      return b.op1('Reshape', [outs.length === 1 ? outs[0]! : b.op1('Concat', outs, { axis: A.int(2) }), ctx.ints(c.w)]);
    }
    p = parts.length === 1 ? parts[0]! : b.op1('Concat', parts, { axis: A.int(a0 - 2) }, { name: `${node.name}.grad_weight_patches` });
  }

  const depthwise = cg === 1 && og === 1;
  let dw: string; // [G, Og, K*Cg] or [Co, K*Cg]
  if (G === 1) {
    const p2 = b.op1('Reshape', [p, ctx.ints([K * cg, -1])]);
    const gt = b.op1('Transpose', [gy], { perm: A.ints([1, 0, ...range(2, r + 2)]) });
    const g2 = b.op1('Reshape', [gt, ctx.ints([co, -1])]);
    dw = b.op1('Gemm', [g2, p2], { transB: A.int(1) }, { name: `${node.name}.grad_weight` });
  } else {
    const p3 = b.op1('Reshape', [p, ctx.ints([G, K * cg, -1])]);
    const g4 = b.op1('Reshape', [gy, ctx.ints([0, G, og, -1])]);
    const gt = b.op1('Transpose', [g4], { perm: A.ints([1, 2, 0, 3]) });
    const g3 = b.op1('Reshape', [gt, ctx.ints([G, og, -1])]);
    if (depthwise) {
      dw = ctx.reduceSum(b.op1('Mul', [p3, g3], {}, { name: `${node.name}.grad_weight` }), [2], false); // [G, K]
    } else {
      const pT = b.op1('Transpose', [p3], { perm: A.ints([0, 2, 1]) });
      dw = b.op1('MatMul', [g3, pT], {}, { name: `${node.name}.grad_weight` });
    }
  }
  // [Co, K, Cg] -> [Co, Cg, K] -> W's shape.
  if (cg === 1 || K === 1) return b.op1('Reshape', [dw, ctx.ints(c.w)]);
  const t = b.op1('Transpose', [b.op1('Reshape', [dw, ctx.ints([co, K, cg])])], { perm: A.ints([0, 2, 1]) });
  return b.op1('Reshape', [t, ctx.ints(c.w)]);
}

/**
 * Weight gradient with per-sample patches from a fixed one-hot Conv: X as [N*Cin, 1, S] convolved
 * with K one-hot kernels gives P [N, Cin*K, L] in W's (channel, offset) order, every strided or
 * padded read done by the Conv kernel itself. Ungrouped convs then contract P with dY:
 *   L >= ONEHOT_BATCHED_MIN_L: per sample, P[n] [Cin*K, L] x dY[n]^T [L, Co] (a batched MatMul; dY
 *     is the smaller tensor to transpose), a ReduceSum over the batch and one small Transpose;
 *   smaller L: P as [Cin*K, N*L] (one Transpose) and one Gemm with dY [Co, N*L], since the
 *     per-sample products would be GEMMs with an inner dimension of only L.
 * Grouped convs use a batched MatMul dY[n] [Og, L] x P[n]^T per sample and group.
 */
/** Output positions from which weightGradOneHot contracts per sample (a batched MatMul) rather
 * than in one Gemm over the batch (see there; figures at chooseConvGrad). */
export const ONEHOT_BATCHED_MIN_L = 128;

export function weightGradOneHot(ctx: RuleContext, x: string, gy: string, c: ConvCase): string {
  const { b, node } = ctx;
  const { G, cin, cg, co, og, k, K } = weightGradDims(c);
  const L = prod(c.y.slice(2));
  const pointwise = K === 1 && c.padsBegin.every((p) => p === 0) && c.padsEnd.every((p) => p === 0) && c.strides.every((s) => s === 1);
  let p: string;
  if (pointwise) p = x;
  else {
    const dt = ctx.dtype(x);
    const data = allocArray(dt, K * K);
    for (let j = 0; j < K; j++) (data as Float32Array)[j * K + j] = 1;
    const eye = b.constant(makeTensor(dt, [K, 1, ...k], data) as Tensor, `${node.name}.onehot`);
    const x1 = b.op1('Reshape', [x, ctx.ints([-1, 1, ...c.x.slice(2)])]);
    p = b.op1('Conv', [x1, eye], {
      kernel_shape: A.ints(k), strides: A.ints(c.strides), dilations: A.ints(c.dilations), pads: A.ints([...c.padsBegin, ...c.padsEnd]),
    }, { name: `${node.name}.grad_weight_patches` });
  }
  const depthwise = cg === 1 && og === 1;
  let dw: string;
  if (G === 1 && L >= ONEHOT_BATCHED_MIN_L) {
    const p3 = b.op1('Reshape', [p, ctx.ints([-1, cin * K, L])]);
    const gT = b.op1('Transpose', [b.op1('Reshape', [gy, ctx.ints([0, co, L])])], { perm: A.ints([0, 2, 1]) });
    const dwT = ctx.reduceSum(b.op1('MatMul', [p3, gT], {}, { name: `${node.name}.grad_weight` }), [0], false); // [Cin*K, Co]
    dw = b.op1('Transpose', [dwT], { perm: A.ints([1, 0]) });
  } else if (G === 1) {
    const pt = b.op1('Transpose', [b.op1('Reshape', [p, ctx.ints([-1, cin * K, L])])], { perm: A.ints([1, 0, 2]) });
    const gt = b.op1('Transpose', [b.op1('Reshape', [gy, ctx.ints([0, co, L])])], { perm: A.ints([1, 0, 2]) });
    dw = b.op1('Gemm', [b.op1('Reshape', [gt, ctx.ints([co, -1])]), b.op1('Reshape', [pt, ctx.ints([cin * K, -1])])], { transB: A.int(1) }, { name: `${node.name}.grad_weight` });
  } else if (depthwise) {
    const p4 = b.op1('Reshape', [p, ctx.ints([-1, G, K, L])]);
    const g4 = b.op1('Reshape', [gy, ctx.ints([0, G, 1, L])]);
    dw = ctx.reduceSum(b.op1('Mul', [p4, g4], {}, { name: `${node.name}.grad_weight` }), [0, 3], false);
  } else {
    const p4 = b.op1('Reshape', [p, ctx.ints([-1, G, cg * K, L])]);
    const g4 = b.op1('Reshape', [gy, ctx.ints([0, G, og, L])]);
    const pT = b.op1('Transpose', [p4], { perm: A.ints([0, 1, 3, 2]) });
    dw = ctx.reduceSum(b.op1('MatMul', [g4, pT], {}, { name: `${node.name}.grad_weight` }), [0], false);
  }
  return b.op1('Reshape', [dw, ctx.ints(c.w)]);
}


/**
 * Weight gradient for stride-1 ungrouped convs with one Gemm per kernel offset and no patch
 * matrix: offset j = (j_0, .., j_last) reads X at y + s with s_i = j_i * d_i - p_i. The last axis'
 * shift moves X (Q_j_last: X^T [Cin, N, S] cropped/zero-padded along the last axis to the output
 * width, a Pad with negative pads), the other axes' shifts move dY onto X's grid (D_j_rest: dY^T
 * [Co, N, So] padded/cropped along those axes to X's extent). Then
 *   dW[:, :, j] = D_j_rest [Co, N*P] x Q_j_last [Cin, N*P]^T,   P = X's extent with So's last axis,
 * with no wasted products. Q and D tensors are shared between offsets: k_last shifted copies of X and
 * prod(k_rest) of dY (a zero shift needs no copy), instead of K strided slices of a padded X.
 * Returns null when it does not apply (strides, groups, 1x1, or pads beyond an axis' extent).
 */
export function weightGradShifted(ctx: RuleContext, x: string, gy: string, c: ConvCase): string | null {
  const { b, node } = ctx;
  const { r, G, cin, co, k, K } = weightGradDims(c);
  if (G !== 1 || K === 1 || c.strides.some((s) => s !== 1)) return null;
  const rank = r + 2;
  const last = r - 1;
  const xsp = c.x.slice(2);
  const ysp = c.y.slice(2);
  const shift = (i: number, j: number): number => j * c.dilations[i]! - c.padsBegin[i]!;
  // Pad [begin, end] of an axis of extent n; usable when the crops leave something of the axis.
  const fits = (begin: number, end: number, n: number): boolean => Math.max(0, -begin) + Math.max(0, -end) < n;
  for (let j = 0; j < k[last]!; j++) if (!fits(-shift(last, j), ysp[last]! - xsp[last]! + shift(last, j), xsp[last]!)) return null;
  for (let i = 0; i < last; i++) for (let j = 0; j < k[i]!; j++) if (!fits(shift(i, j), xsp[i]! - ysp[i]! - shift(i, j), ysp[i]!)) return null;
  const perm = A.ints([1, 0, ...range(2, rank)]);
  const xt = b.op1('Transpose', [x], { perm }, { name: `${node.name}.grad_weight_xt` });
  const gt = b.op1('Transpose', [gy], { perm }, { name: `${node.name}.grad_weight_gt` });
  const padded = (v: string, axisPads: readonly (readonly [number, number])[], what: string): string => {
    if (axisPads.every(([p, q]) => p === 0 && q === 0)) return v;
    const pads = new Array<number>(2 * rank).fill(0);
    axisPads.forEach(([p, q], i) => { pads[2 + i] = p; pads[rank + 2 + i] = q; });
    return b.op1('Pad', [v, ctx.ints(pads)], {}, { name: `${node.name}.grad_weight_${what}` });
  };
  const qs = new Map<number, string>();
  const q = (j: number): string => {
    let v = qs.get(j);
    if (!v) {
      const s = shift(last, j);
      const pads = range(0, r).map((i): [number, number] => (i === last ? [-s, ysp[last]! - xsp[last]! + s] : [0, 0]));
      v = b.op1('Reshape', [padded(xt, pads, 'xshift'), ctx.ints([cin, -1])]);
      qs.set(j, v);
    }
    return v;
  };
  const ds = new Map<string, string>();
  const d = (idx: readonly number[]): string => {
    const key = idx.slice(0, last).join(',');
    let v = ds.get(key);
    if (!v) {
      const pads = range(0, r).map((i): [number, number] => (i === last ? [0, 0] : [shift(i, idx[i]!), xsp[i]! - ysp[i]! - shift(i, idx[i]!)]));
      v = b.op1('Reshape', [padded(gt, pads, 'gshift'), ctx.ints([co, -1])]);
      ds.set(key, v);
    }
    return v;
  };
  const parts: string[] = [];
  for (let j = 0; j < K; j++) {
    const idx: number[] = [];
    let rem = j;
    for (let i = r - 1; i >= 0; i--) { idx[i] = rem % k[i]!; rem = Math.floor(rem / k[i]!); }
    const g = b.op1('Gemm', [d(idx), q(idx[last]!)], { transB: A.int(1) }, { name: `${node.name}.grad_weight` });
    parts.push(b.op1('Reshape', [g, ctx.ints([co, cin, 1])]));
  }
  return b.op1('Reshape', [b.op1('Concat', parts, { axis: A.int(2) }), ctx.ints(c.w)]);
}


/**
 * How S holds the column shifts: one [W, Wo*kw] matrix with columns in (wo, b) order ('interleaved')
 * or (b, wo) order ('byOffset'), or kw matrices [kw, W, Wo] ('perOffset').
 */
type ColumnShiftLayout = 'interleaved' | 'byOffset' | 'perOffset';

/**
 * The constant 0/1 shift matrices of the 'shiftmm' forms for a stride-1 2-D conv: S moves X's
 * columns onto each kernel column offset b (zero where the kernel reads padding), laid out as
 * `layout` says; M [kh*H, Ho] moves dY's rows onto X's for each kernel row offset a.
 */
function shiftMatrices(ctx: RuleContext, x: string, c: ConvCase, layout: ColumnShiftLayout): { sm: string; mm: string } {
  const { b, node } = ctx;
  const [h, w] = [c.x[2]!, c.x[3]!];
  const [ho, wo] = [c.y[2]!, c.y[3]!];
  const [kh, kw] = c.w.slice(2) as [number, number];
  const dt = ctx.dtype(x);
  const s = allocArray(dt, w * wo * kw) as Float32Array;
  const at = (src: number, j: number, q: number): number =>
    layout === 'perOffset' ? (j * w + src) * wo + q : src * wo * kw + (layout === 'byOffset' ? j * wo + q : q * kw + j);
  for (let j = 0; j < kw; j++) for (let q = 0; q < wo; q++) {
    const src = q + j * c.dilations[1]! - c.padsBegin[1]!;
    if (src >= 0 && src < w) s[at(src, j, q)] = 1;
  }
  const m = allocArray(dt, kh * h * ho) as Float32Array;
  for (let a = 0; a < kh; a++) for (let row = 0; row < h; row++) {
    const src = row - a * c.dilations[0]! + c.padsBegin[0]!;
    if (src >= 0 && src < ho) m[(a * h + row) * ho + src] = 1;
  }
  const sDims = layout === 'perOffset' ? [kw, w, wo] : [w, wo * kw];
  const suffix = { interleaved: '', byOffset: '_b', perOffset: '_k' }[layout];
  return {
    sm: b.constant(makeTensor(dt, sDims, s) as Tensor, `${node.name}.grad_weight_colshift${suffix}`),
    mm: b.constant(makeTensor(dt, [kh * h, ho], m) as Tensor, `${node.name}.grad_weight_rowshift`),
  };
}

/**
 * Weight gradient for stride-1 ungrouped 2-D convs with the shifts done by two small MatMuls with
 * constant 0/1 matrices and the contraction by one Gemm:
 *   Q = X [N, Ci, H, W] x S [W, Wo*kw], S[w, wo*kw + b] = 1 iff w = wo + b*dw - pw: every column
 *       shift of X at once (zeros where the kernel reads padding), then as [kw*Ci, N*H*Wo];
 *   D = M [kh*H, Ho] x dY [N, Co, Ho, Wo], M[a*H + h, ho] = 1 iff ho = h - a*dh + ph: every row
 *       shift of dY onto X's rows, then as [kh*Co, N*H*Wo];
 *   D x Q^T = [kh*Co, kw*Ci], whose (a, co, b, ci) entry is dW[co, ci, a, b].
 * The shift MatMuls cost W*kw (and H*kh) multiply-adds per value, so this pays only on small
 * images: it replaces weightGradShifted's four cropping Pads and K small Gemms, whose per-op costs
 * dominate at 7x7. Returns null unless 2-D, stride 1 and G = 1 with K > 1.
 */
export function weightGradShiftMatmul(ctx: RuleContext, x: string, gy: string, c: ConvCase): string | null {
  const { b, node } = ctx;
  const { r, G, cin, co, k, K } = weightGradDims(c);
  if (r !== 2 || G !== 1 || K === 1 || c.strides.some((s) => s !== 1)) return null;
  const h = c.x[2]!; // the batch may differ from c.x's (a graph with a symbolic batch)
  const wo = c.y[3]!;
  const [kh, kw] = k as [number, number];
  // S's columns in (wo, b) order: the offsets b come out as X·S's last axis (see below)
  const { sm, mm } = shiftMatrices(ctx, x, c, 'interleaved');
  // X·S is [N, Ci, H, Wo, kw]; [kw, Ci, N, H·Wo] from it in two Transposes onnxruntime runs fast
  // (a swap of the last two axes, then one that moves blocks of H·Wo floats; NCHWC_SESSION_EXTRA in
  // sdk/runtime/nchwc.ts, ~0.6 ns per value each on one thread): the one 5-D Transpose moving
  // blocks of Wo floats it replaces took 1.7 ns per value (onnxruntime's profiler, 32x64x7x3x7)
  const xs = b.op1('MatMul', [x, sm], {}, { name: `${node.name}.grad_weight_xshift` });
  const qk = b.op1('Transpose', [b.op1('Reshape', [xs, ctx.ints([-1, kw])])], { perm: A.ints([1, 0]) }, { name: `${node.name}.grad_weight_kw_first` });
  const qn = b.op1('Transpose', [b.op1('Reshape', [qk, ctx.ints([kw, -1, cin, h * wo])])], { perm: A.ints([0, 2, 1, 3]) }, { name: `${node.name}.grad_weight_batch_inner` });
  const qt = b.op1('Reshape', [qn, ctx.ints([kw * cin, -1])]);
  const d5 = b.op1('Reshape', [b.op1('MatMul', [mm, gy], {}, { name: `${node.name}.grad_weight_gshift` }), ctx.ints([-1, co, kh, h, wo])]);
  const dtr = b.op1('Reshape', [b.op1('Transpose', [d5], { perm: A.ints([2, 1, 0, 3, 4]) }), ctx.ints([kh * co, -1])]);
  const all = b.op1('Gemm', [dtr, qt], { transB: A.int(1) }, { name: `${node.name}.grad_weight` });
  // [kh, co, kw, cin] -> [co, cin, kh, kw] as two Transposes onnxruntime runs fast (swaps of the
  // last two axes; see NCHWC_SESSION_EXTRA in sdk/runtime/nchwc.ts): one 4-D permutation took
  // 0.2-0.3 ms on a 64x64x3x3 weight: [kh, co·kw·cin] -> [co·kw·cin, kh], then per co
  // [kw, cin·kh] -> [cin·kh, kw]
  const t1 = b.op1('Transpose', [b.op1('Reshape', [all, ctx.ints([kh, co * kw * cin])])], { perm: A.ints([1, 0]) }, { name: `${node.name}.grad_weight_kh_last` });
  const t2 = b.op1('Transpose', [b.op1('Reshape', [t1, ctx.ints([co, kw, cin * kh])])], { perm: A.ints([0, 2, 1]) }, { name: `${node.name}.grad_weight_kw_last` });
  return b.op1('Reshape', [t2, ctx.ints([co, cin, kh, kw])]);
}

/**
 * 'shiftmmb': weightGradShiftMatmul's two shift MatMuls, contracted per sample instead of over the
 * batch, so neither operand has to move the batch axis inside: with S's columns in (b, wo) order
 *   Q = X x S [N, Ci, H, kw, Wo] -> [N, Ci*kw, H*Wo] (one Transpose moving blocks of Wo values),
 *   D = M x dY [N, Co, kh*H, Wo] = [N, Co*kh, H*Wo] as it comes out,
 *   dW = sum over n of D[n] x Q[n]^T (a batched MatMul with the transpose folded in, then a
 *        ReduceSum over the batch of [N, Co*kh, Ci*kw]) -> [co, a, ci, b] -> W's layout.
 * Returns null unless 2-D, stride 1 and G = 1 with K > 1.
 */
export function weightGradShiftMatmulBatched(ctx: RuleContext, x: string, gy: string, c: ConvCase): string | null {
  const { b, node } = ctx;
  const { r, G, cin, co, k, K } = weightGradDims(c);
  if (r !== 2 || G !== 1 || K === 1 || c.strides.some((s) => s !== 1)) return null;
  const h = c.x[2]!;
  const wo = c.y[3]!;
  const [kh, kw] = k as [number, number];
  const { sm, mm } = shiftMatrices(ctx, x, c, 'byOffset');
  const xs = b.op1('MatMul', [x, sm], {}, { name: `${node.name}.grad_weight_xshift` }); // [N, Ci, H, kw*Wo]
  const q4 = b.op1('Transpose', [b.op1('Reshape', [xs, ctx.ints([-1, h, kw, wo])])], { perm: A.ints([0, 2, 1, 3]) }, { name: `${node.name}.grad_weight_kw_rows` });
  const q = b.op1('Reshape', [q4, ctx.ints([-1, cin * kw, h * wo])]);
  const d = b.op1('Reshape', [b.op1('MatMul', [mm, gy], {}, { name: `${node.name}.grad_weight_gshift` }), ctx.ints([-1, co * kh, h * wo])]);
  const qt = b.op1('Transpose', [q], { perm: A.ints([0, 2, 1]) });
  const per = b.op1('MatMul', [d, qt], {}, { name: `${node.name}.grad_weight` }); // [N, Co*kh, Ci*kw]
  const all = ctx.reduceSum(per, [0], false);
  const t = b.op1('Transpose', [b.op1('Reshape', [all, ctx.ints([co, kh, cin, kw])])], { perm: A.ints([0, 2, 1, 3]) }, { name: `${node.name}.grad_weight_order` });
  return b.op1('Reshape', [t, ctx.ints([co, cin, kh, kw])]);
}

/**
 * 'shiftmmk': 'shiftmmb' with X's column shifts kernel-column-major, so the shifted X needs no
 * Transpose at all:
 *   Q = X [1, N*Ci*H, W] x S3 [kw, W, Wo] = [kw, N, Ci, H*Wo], S3[b, w, wo] = 1 iff w = wo + b*dw - pw
 *       (one MatMul broadcasting X over the kw offsets: each offset's copy in X's own layout);
 *   D = M x dY = [N, Co*kh, H*Wo] as in 'shiftmmb';
 *   dW = sum over n of D[n] x Q[b, n]^T = [kw, Co*kh, Ci] (the batched MatMul broadcasts D over the
 *        offsets; onnxruntime folds Q's transpose into it), then [kw, co, a, ci] -> W's layout.
 * Against 'shiftmmb' (its [N*Ci, H, kw, Wo] -> [N*Ci, kw, H, Wo] Transpose moves three copies of X):
 * dW alone at 16x16x28x28 2.32 -> 1.92 ms, at 16x32x14x14 1.65 -> 1.19 ms (onnxruntime's profiler,
 * one thread, the two graphs alternating, same values up to summation order).
 * Returns null unless 2-D, stride 1 and G = 1 with K > 1.
 */
export function weightGradShiftMatmulKernelMajor(ctx: RuleContext, x: string, gy: string, c: ConvCase): string | null {
  const { b, node } = ctx;
  const { r, G, cin, co, k, K } = weightGradDims(c);
  if (r !== 2 || G !== 1 || K === 1 || c.strides.some((s) => s !== 1)) return null;
  const [h, w] = [c.x[2]!, c.x[3]!];
  const wo = c.y[3]!;
  const [kh, kw] = k as [number, number];
  const { sm, mm } = shiftMatrices(ctx, x, c, 'perOffset');
  const q3 = b.op1('MatMul', [b.op1('Reshape', [x, ctx.ints([1, -1, w])]), sm], {}, { name: `${node.name}.grad_weight_xshift` }); // [kw, N*Ci*H, Wo]
  const qt = b.op1('Transpose', [b.op1('Reshape', [q3, ctx.ints([kw, -1, cin, h * wo])])], { perm: A.ints([0, 1, 3, 2]) }); // [kw, N, H*Wo, Ci]
  const d = b.op1('Reshape', [b.op1('MatMul', [mm, gy], {}, { name: `${node.name}.grad_weight_gshift` }), ctx.ints([1, -1, co * kh, h * wo])]);
  const per = b.op1('MatMul', [d, qt], {}, { name: `${node.name}.grad_weight` }); // [kw, N, Co*kh, Ci]
  const all = ctx.reduceSum(per, [1], false); // [kw, Co*kh, Ci]
  // [kw, co, kh, ci] -> [co, ci, kh, kw] as two swaps of the last two axes, which onnxruntime runs
  // fast on one thread: 36 + 30 us against 223 us for the one 4-D permutation on a 3x64x3x64 dW
  // (onnxruntime's profiler, 300 runs). On two threads all of them take 0.21-0.27 ms, the cost of
  // waking the second thread without spinning, so two-thread sessions gain nothing either way.
  const t1 = b.op1('Transpose', [b.op1('Reshape', [all, ctx.ints([kw * co, kh, cin])])], { perm: A.ints([0, 2, 1]) }, { name: `${node.name}.grad_weight_kh_last` });
  const t2 = b.op1('Transpose', [b.op1('Reshape', [t1, ctx.ints([kw, co * cin * kh])])], { perm: A.ints([1, 0]) }, { name: `${node.name}.grad_weight_kw_last` });
  return b.op1('Reshape', [t2, ctx.ints([co, cin, kh, kw])]);
}

/**
 * Depthwise weight gradient (G = Cin = Co, multiplier 1) without patch matrices: column j of dW
 * [C, K] is sum over batch and output positions of X at the offset's positions times dY, one Mul
 * and one ReduceSum per kernel offset, all memory-bound elementwise work.
 *   stride 1 ('shifted copies'): the last axis' shift moves X, the other axes' shifts move dY onto
 *     X's grid (Pads with negative pads, as in weightGradShifted), so a 3x3 kernel reads 2 shifted
 *     copies of X and 2 of dY (zero shifts need none).
 *   strided: X padded once, one strided Slice per offset onto dY's grid.
 * Returns null unless the conv is depthwise with multiplier 1.
 */
export function weightGradDepthwise(ctx: RuleContext, x: string, gy: string, c: ConvCase): string | null {
  const { b, node } = ctx;
  const d = depthwiseDims(c);
  if (!d) return null;
  const { r, co, k, K, rank, last, xsp, ysp } = d;
  const sp = range(0, r);
  const offset = (j: number): number[] => {
    const idx: number[] = [];
    let rem = j;
    for (let i = r - 1; i >= 0; i--) { idx[i] = rem % k[i]!; rem = Math.floor(rem / k[i]!); }
    return idx;
  };
  const padNode = (v: string, axisPads: readonly (readonly [number, number])[], what: string): string => {
    if (axisPads.every(([p, q]) => p === 0 && q === 0)) return v;
    const pads = new Array<number>(2 * rank).fill(0);
    axisPads.forEach(([p, q], i) => { pads[2 + i] = p; pads[rank + 2 + i] = q; });
    return b.op1('Pad', [v, ctx.ints(pads)], {}, { name: `${node.name}.grad_weight_${what}` });
  };
  const shift = (i: number, j: number): number => j * c.dilations[i]! - c.padsBegin[i]!;
  const fits = (begin: number, end: number, n: number): boolean => Math.max(0, -begin) + Math.max(0, -end) < n;
  let shiftOk = c.strides.every((s) => s === 1);
  for (let j = 0; shiftOk && j < k[last]!; j++) shiftOk = fits(-shift(last, j), ysp[last]! - xsp[last]! + shift(last, j), xsp[last]!);
  for (let i = 0; shiftOk && i < last; i++) for (let j = 0; shiftOk && j < k[i]!; j++) shiftOk = fits(shift(i, j), xsp[i]! - ysp[i]! - shift(i, j), ysp[i]!);

  const redAxes = [0, ...range(2, rank)];
  const column = (xv: string, gv: string): string =>
    b.op1('Reshape', [ctx.reduceSum(b.op1('Mul', [xv, gv], {}, { name: `${node.name}.grad_weight` }), redAxes, false), ctx.ints([co, 1])]);
  const cols: string[] = [];
  if (shiftOk) {
    const qs = new Map<number, string>();
    const ds = new Map<string, string>();
    for (let j = 0; j < K; j++) {
      const idx = offset(j);
      let q = qs.get(idx[last]!);
      if (!q) {
        const s = shift(last, idx[last]!);
        q = padNode(x, sp.map((i): [number, number] => (i === last ? [-s, ysp[last]! - xsp[last]! + s] : [0, 0])), 'xshift');
        qs.set(idx[last]!, q);
      }
      const key = idx.slice(0, last).join(',');
      let d = ds.get(key);
      if (!d) {
        d = padNode(gy, sp.map((i): [number, number] => (i === last ? [0, 0] : [shift(i, idx[i]!), xsp[i]! - ysp[i]! - shift(i, idx[i]!)])), 'gshift');
        ds.set(key, d);
      }
      cols.push(column(q, d));
    }
  } else {
    const xp = padNode(x, sp.map((i): [number, number] => [c.padsBegin[i]!, c.padsEnd[i]!]), 'xpad');
    for (let j = 0; j < K; j++) {
      const idx = offset(j);
      const starts = sp.map((i) => idx[i]! * c.dilations[i]!);
      const ends = sp.map((i) => starts[i]! + (ysp[i]! - 1) * c.strides[i]! + 1);
      const sl = b.op1('Slice', [xp, ctx.ints(starts), ctx.ints(ends), ctx.ints(sp.map((i) => i + 2)), ctx.ints(c.strides)], {}, { name: `${node.name}.grad_weight_slice` });
      cols.push(column(sl, gy));
    }
  }
  return b.op1('Reshape', [cols.length === 1 ? cols[0]! : b.op1('Concat', cols, { axis: A.int(1) }), ctx.ints(c.w)]);
}

/**
 * Depthwise weight gradient (multiplier 1) as small batched GEMMs over rows. X and dY are put
 * channel-first (X^T [C, N, S], dY^T [C, N, So]; block copies). For each offset a along the leading
 * spatial axes (all but the last), the rows of X it reads (a strided Slice of X^T; where the offset
 * reads padding, dY^T's rows are cropped to the ones that read X instead) give
 *   T_a[c] = X_a,c^T [W, N*R] x dY_a,c [N*R, Wo]                   -> [C, W, Wo]
 * (every product of an input column with an output column), and the last axis' offsets are fixed
 * diagonals of T: dW[c, a, b] = sum_w T_a[c, w*s + b*d - p, w] (terms outside X are padding).
 * The T_a are concatenated and one MatMul with a constant 0/1 matrix [W*Wo, kw] picks the
 * diagonals. W/kw times the multiply-adds of the elementwise form, but inside GEMM kernels, and X
 * is copied about once per leading-axis offset instead of once per kernel offset.
 * Returns null unless the conv is depthwise with multiplier 1.
 */
export function weightGradRowGemm(ctx: RuleContext, x: string, gy: string, c: ConvCase): string | null {
  const { b, node } = ctx;
  const d = depthwiseDims(c);
  if (!d) return null;
  const { co, k, rank, last, xsp, ysp } = d;
  const rest = range(0, last);
  const wx = xsp[last]!;
  const wo = ysp[last]!;
  const kw = k[last]!;
  const perm = A.ints([1, 0, ...range(2, rank)]);
  const xt = b.op1('Transpose', [x], { perm }, { name: `${node.name}.grad_weight_xt` });
  const gt = b.op1('Transpose', [gy], { perm }, { name: `${node.name}.grad_weight_gt` });
  const kRest = prod(k.slice(0, last));
  const ts: string[] = [];
  for (let j = 0; j < kRest; j++) {
    const idx: number[] = [];
    let rem = j;
    for (let i = last - 1; i >= 0; i--) { idx[i] = rem % k[i]!; rem = Math.floor(rem / k[i]!); }
    // Output rows [lo, hi] whose input row h*s + a*d - p lies inside X, per leading axis.
    const lo: number[] = [];
    const hi: number[] = [];
    for (const i of rest) {
      const off = idx[i]! * c.dilations[i]! - c.padsBegin[i]!;
      const s = c.strides[i]!;
      lo.push(Math.max(0, Math.ceil(-off / s)));
      hi.push(Math.min(ysp[i]! - 1, Math.floor((xsp[i]! - 1 - off) / s)));
    }
    if (rest.some((i) => hi[i]! < lo[i]!)) { // the offset reads only padding
      ts.push(b.constant(makeTensor(ctx.dtype(x), [co, 1, wx * wo], allocArray(ctx.dtype(x), co * wx * wo)) as Tensor, `${node.name}.grad_weight_zero`));
      continue;
    }
    const xCut = rest.filter((i) => !(c.strides[i]! === 1 && lo[i]! + idx[i]! * c.dilations[i]! - c.padsBegin[i]! === 0 && hi[i]! - lo[i]! + 1 === xsp[i]!));
    let xa = xt;
    if (xCut.length > 0) {
      const starts = xCut.map((i) => lo[i]! * c.strides[i]! + idx[i]! * c.dilations[i]! - c.padsBegin[i]!);
      const ends = xCut.map((i, n) => starts[n]! + (hi[i]! - lo[i]!) * c.strides[i]! + 1);
      xa = b.op1('Slice', [xt, ctx.ints(starts), ctx.ints(ends), ctx.ints(xCut.map((i) => i + 2)), ctx.ints(xCut.map((i) => c.strides[i]!))], {}, { name: `${node.name}.grad_weight_rows` });
    }
    const gCut = rest.filter((i) => lo[i]! !== 0 || hi[i]! !== ysp[i]! - 1);
    let ga = gt;
    if (gCut.length > 0) {
      ga = b.op1('Slice', [gt, ctx.ints(gCut.map((i) => lo[i]!)), ctx.ints(gCut.map((i) => hi[i]! + 1)), ctx.ints(gCut.map((i) => i + 2))], {}, { name: `${node.name}.grad_weight_grows` });
    }
    const xaT = b.op1('Transpose', [b.op1('Reshape', [xa, ctx.ints([co, -1, wx])])], { perm: A.ints([0, 2, 1]) });
    const t = b.op1('MatMul', [xaT, b.op1('Reshape', [ga, ctx.ints([co, -1, wo])])], {}, { name: `${node.name}.grad_weight` });
    ts.push(b.op1('Reshape', [t, ctx.ints([co, 1, wx * wo])]));
  }
  const tAll = b.op1('Reshape', [ts.length === 1 ? ts[0]! : b.op1('Concat', ts, { axis: A.int(1) }), ctx.ints([co * kRest, wx * wo])]);
  // Diagonal picker [W*Wo, kw]: (w', w) -> b where w' = w*s + b*d - p inside X.
  const dt = ctx.dtype(x);
  const mask = allocArray(dt, wx * wo * kw) as Float32Array;
  for (let w = 0; w < wo; w++) {
    for (let bb = 0; bb < kw; bb++) {
      const w1 = w * c.strides[last]! + bb * c.dilations[last]! - c.padsBegin[last]!;
      if (w1 >= 0 && w1 < wx) mask[(w1 * wo + w) * kw + bb] = 1;
    }
  }
  const m = b.constant(makeTensor(dt, [wx * wo, kw], mask) as Tensor, `${node.name}.grad_weight_diag`);
  return b.op1('Reshape', [b.op1('MatMul', [tAll, m], {}, { name: `${node.name}.grad_weight_pick` }), ctx.ints(c.w)]);
}
