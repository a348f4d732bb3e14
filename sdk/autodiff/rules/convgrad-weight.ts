// Conv's weight gradient dW in the 'gemm', 'gemmsplit', 'shifted', 'shiftmm', 'shiftmmb',
// 'shiftmmk', 'onehot' and 'rowgemm' formulations and the depthwise forms (convgrad.ts describes
// each formulation and chooses between them; 'conv' is emitted by rules/Conv.ts itself).
import { A } from '../../onnx/builder.ts';
import { allocArray, makeTensor } from '../../onnx/tensor.ts';
import type { Tensor } from '../../onnx/types.ts';
import type { ConvCase } from './convgrad-options.ts';
import { prod, range } from './dims.ts';
import type { RuleContext } from './types.ts';

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
