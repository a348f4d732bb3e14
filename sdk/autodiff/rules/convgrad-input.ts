// Conv's input gradient dX in the 'conv' and 'phase' formulations (convgrad.ts describes each
// formulation and chooses between them; 'convTranspose' needs no emitter).
import { A } from '../../onnx/builder.ts';
import { allocArray, makeTensor } from '../../onnx/tensor.ts';
import type { Tensor } from '../../onnx/types.ts';
import type { ConvCase } from './convgrad-options.ts';
import { prod, range } from './dims.ts';
import type { RuleContext } from './types.ts';

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
