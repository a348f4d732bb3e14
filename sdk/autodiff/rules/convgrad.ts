// The two costly parts of Conv's backward pass, each in several formulations, and the decision
// function that picks one per conv (rules/Conv.ts calls it, then the emitters: convgrad-input.ts
// for dX, convgrad-weight.ts for dW). All work for any spatial rank r, groups G (depthwise
// included), strides s, dilations d and explicit pads p.
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
import type { ConvCase, ConvGradOptions, ConvInputGrad, ConvWeightGrad } from './convgrad-options.ts';
import { prod } from './dims.ts';

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
