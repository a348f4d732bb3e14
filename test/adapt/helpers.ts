// Tiny models and a plain-TypeScript reference for the adaptation tests.
//
// The model: x [N, 2, 3, 3] -> BN1 -> Relu -> Flatten [N, 18] -> Gemm(W1 [18, 5], b1) -> BN2 (on
// [N, 5]) -> Relu -> Gemm(W2 [5, K], b2) -> logits [N, K]. The reference computes its forward
// pass with BN on batch statistics and the backward pass of the mean-entropy loss (TENT) to the BN
// scales and biases, in float64.
import { A, GraphBuilder } from '../../sdk/onnx/builder.ts';
import { f32 } from '../../sdk/onnx/tensor.ts';
import type { Model, TensorOf } from '../../sdk/onnx/types.ts';

export const EPS = 1e-5;
export const SHAPE = { c: 2, h: 3, w: 3, hidden: 5 } as const;

/** A small deterministic generator (mulberry32) for test data. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const randn = (r: () => number, n: number, scale = 1, offset = 0): Float32Array =>
  Float32Array.from({ length: n }, () => offset + scale * Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r()));

export interface TinyParams {
  g1: Float32Array; b1n: Float32Array; m1: Float32Array; v1: Float32Array;
  W1: Float32Array; b1: Float32Array;
  g2: Float32Array; b2n: Float32Array; m2: Float32Array; v2: Float32Array;
  W2: Float32Array; b2: Float32Array;
  classes: number;
}

export function tinyParams(seed = 1, classes = 4): TinyParams {
  const r = rng(seed);
  const { c, h, w, hidden } = SHAPE;
  return {
    g1: Float32Array.from({ length: c }, () => 0.8 + 0.4 * r()),
    b1n: randn(r, c, 0.1),
    m1: randn(r, c, 0.2),
    v1: Float32Array.from({ length: c }, () => 0.5 + r()),
    W1: randn(r, c * h * w * hidden, 0.4),
    b1: randn(r, hidden, 0.1),
    g2: Float32Array.from({ length: hidden }, () => 0.8 + 0.4 * r()),
    b2n: randn(r, hidden, 0.1),
    m2: randn(r, hidden, 0.2),
    v2: Float32Array.from({ length: hidden }, () => 0.5 + r()),
    W2: randn(r, hidden * classes, 0.8),
    b2: randn(r, classes, 0.1),
    classes,
  };
}

export function tinyModel(p: TinyParams, name = 'tiny'): Model {
  const { c, h, w, hidden } = SHAPE;
  const b = new GraphBuilder(name);
  const x = b.input('x', 'float32', ['N', c, h, w]);
  const init = (n: string, dims: number[], data: Float32Array) => b.initializer(n, f32(dims, data));
  const bn1 = b.op1('BatchNormalization', [x, init('bn1.scale', [c], p.g1), init('bn1.bias', [c], p.b1n), init('bn1.mean', [c], p.m1), init('bn1.var', [c], p.v1)], { epsilon: A.float(EPS) }, { name: 'bn1' });
  const flat = b.op1('Flatten', [b.op1('Relu', [bn1])], { axis: A.int(1) });
  const fc1 = b.op1('Gemm', [flat, init('fc1.w', [c * h * w, hidden], p.W1), init('fc1.b', [hidden], p.b1)]);
  const bn2 = b.op1('BatchNormalization', [fc1, init('bn2.scale', [hidden], p.g2), init('bn2.bias', [hidden], p.b2n), init('bn2.mean', [hidden], p.m2), init('bn2.var', [hidden], p.v2)], { epsilon: A.float(EPS) }, { name: 'bn2' });
  b.op('Gemm', [b.op1('Relu', [bn2]), init('fc2.w', [hidden, p.classes], p.W2), init('fc2.b', [p.classes], p.b2)], {}, { outputNames: ['logits'] });
  b.output('logits', 'float32', ['N', p.classes]);
  return { irVersion: 8, opsetImports: [{ domain: '', version: 17 }], producerName: 'test', producerVersion: '0', metadata: {}, graph: b.build() };
}

export function batch(seed: number, n: number, shift = 0.5, scale = 1.5): TensorOf<'float32'> {
  const { c, h, w } = SHAPE;
  return f32([n, c, h, w], randn(rng(seed), n * c * h * w, scale, shift));
}

/** BN over channel axis 1 of x viewed as [N, C, L]; batch statistics or the given ones. */
function bnForward(x: Float64Array, N: number, C: number, L: number, g: ArrayLike<number>, beta: ArrayLike<number>, stats?: { mean: ArrayLike<number>; var: ArrayLike<number> }) {
  const y = new Float64Array(x.length);
  const xhat = new Float64Array(x.length);
  const inv = new Float64Array(C);
  for (let c = 0; c < C; c++) {
    let mu = 0;
    let v = 0;
    if (stats) {
      mu = stats.mean[c]!;
      v = stats.var[c]!;
    } else {
      for (let n = 0; n < N; n++) for (let l = 0; l < L; l++) mu += x[(n * C + c) * L + l]!;
      mu /= N * L;
      for (let n = 0; n < N; n++) for (let l = 0; l < L; l++) v += (x[(n * C + c) * L + l]! - mu) ** 2;
      v /= N * L;
    }
    inv[c] = 1 / Math.sqrt(v + EPS);
    for (let n = 0; n < N; n++) for (let l = 0; l < L; l++) {
      const i = (n * C + c) * L + l;
      xhat[i] = (x[i]! - mu) * inv[c]!;
      y[i] = g[c]! * xhat[i]! + beta[c]!;
    }
  }
  return { y, xhat, inv };
}

/** dL/dx, dL/dgamma, dL/dbeta of BN on batch statistics (or on constant statistics). */
function bnBackward(dy: Float64Array, xhat: Float64Array, inv: Float64Array, N: number, C: number, L: number, g: ArrayLike<number>, constStats = false) {
  const dx = new Float64Array(dy.length);
  const dg = new Float64Array(C);
  const db = new Float64Array(C);
  const M = N * L;
  for (let c = 0; c < C; c++) {
    let sdy = 0;
    let sdyx = 0;
    for (let n = 0; n < N; n++) for (let l = 0; l < L; l++) {
      const i = (n * C + c) * L + l;
      sdy += dy[i]!;
      sdyx += dy[i]! * xhat[i]!;
    }
    dg[c] = sdyx;
    db[c] = sdy;
    for (let n = 0; n < N; n++) for (let l = 0; l < L; l++) {
      const i = (n * C + c) * L + l;
      dx[i] = constStats ? g[c]! * inv[c]! * dy[i]! : ((g[c]! * inv[c]!) / M) * (M * dy[i]! - sdy - xhat[i]! * sdyx);
    }
  }
  return { dx, dg, db };
}

/** Robust normalisation for the reference: stats = (1 - alpha) * EMA + alpha * batch, held constant in the gradient. */
export interface RobustRef {
  readonly alpha: number;
  readonly m1: ArrayLike<number>; readonly v1: ArrayLike<number>;
  readonly m2: ArrayLike<number>; readonly v2: ArrayLike<number>;
}

function batchMoments(x: Float64Array, N: number, C: number, L: number): { mean: number[]; var: number[] } {
  const mean = new Array<number>(C).fill(0);
  const vr = new Array<number>(C).fill(0);
  for (let c = 0; c < C; c++) {
    for (let n = 0; n < N; n++) for (let l = 0; l < L; l++) mean[c] = mean[c]! + x[(n * C + c) * L + l]! / (N * L);
    for (let n = 0; n < N; n++) for (let l = 0; l < L; l++) vr[c] = vr[c]! + (x[(n * C + c) * L + l]! - mean[c]!) ** 2 / (N * L);
  }
  return { mean, var: vr };
}

const mix = (alpha: number, ema: ArrayLike<number>, b: number[]): number[] => b.map((v, c) => (1 - alpha) * ema[c]! + alpha * v);

export interface RefResult {
  logits: Float64Array;
  loss: number;
  grads: { g1: Float64Array; b1: Float64Array; g2: Float64Array; b2: Float64Array };
  /** Robust mode: the mixed statistics (the next EMA). */
  stats?: { m1: number[]; v1: number[]; m2: number[]; v2: number[] };
}

/** Forward + backward of the mean-entropy loss (sum_i c_i H_i / N with constant weights c, default 1) with BN on batch statistics. */
export function referenceTent(p: TinyParams, xs: TensorOf<'float32'>, g1: ArrayLike<number>, b1: ArrayLike<number>, g2: ArrayLike<number>, b2: ArrayLike<number>, weights?: readonly number[], robust?: RobustRef): RefResult {
  const { c, h, w, hidden } = SHAPE;
  const N = xs.dims[0]!;
  const K = p.classes;
  const L1 = h * w;
  const D = c * L1;
  const x = Float64Array.from(xs.data);
  let stats1: { mean: number[]; var: number[] } | undefined;
  let stats2: { mean: number[]; var: number[] } | undefined;
  if (robust) {
    const bm = batchMoments(x, N, c, L1);
    stats1 = { mean: mix(robust.alpha, robust.m1, bm.mean), var: mix(robust.alpha, robust.v1, bm.var) };
  }
  const f1 = bnForward(x, N, c, L1, g1, b1, stats1);
  const r1 = f1.y.map((v) => Math.max(0, v));
  const z1 = new Float64Array(N * hidden);
  for (let n = 0; n < N; n++) for (let j = 0; j < hidden; j++) {
    let s = p.b1[j]!;
    for (let d = 0; d < D; d++) s += r1[n * D + d]! * p.W1[d * hidden + j]!;
    z1[n * hidden + j] = s;
  }
  if (robust) {
    const bm = batchMoments(z1, N, hidden, 1);
    stats2 = { mean: mix(robust.alpha, robust.m2, bm.mean), var: mix(robust.alpha, robust.v2, bm.var) };
  }
  const f2 = bnForward(z1, N, hidden, 1, g2, b2, stats2);
  const r2 = f2.y.map((v) => Math.max(0, v));
  const z = new Float64Array(N * K);
  for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) {
    let s = p.b2[k]!;
    for (let j = 0; j < hidden; j++) s += r2[n * hidden + j]! * p.W2[j * K + k]!;
    z[n * K + k] = s;
  }
  // loss = mean_n H(softmax(z_n)); dH/dz = -p (log p + H)
  let loss = 0;
  const dz = new Float64Array(N * K);
  for (let n = 0; n < N; n++) {
    let mx = -Infinity;
    for (let k = 0; k < K; k++) mx = Math.max(mx, z[n * K + k]!);
    let se = 0;
    for (let k = 0; k < K; k++) se += Math.exp(z[n * K + k]! - mx);
    const lse = mx + Math.log(se);
    let H = 0;
    for (let k = 0; k < K; k++) { const lp = z[n * K + k]! - lse; H -= Math.exp(lp) * lp; }
    const c = weights ? weights[n]! : 1;
    loss += (c * H) / N;
    for (let k = 0; k < K; k++) { const lp = z[n * K + k]! - lse; dz[n * K + k] = (-c * Math.exp(lp) * (lp + H)) / N; }
  }
  const dr2 = new Float64Array(N * hidden);
  for (let n = 0; n < N; n++) for (let j = 0; j < hidden; j++) {
    let s = 0;
    for (let k = 0; k < K; k++) s += dz[n * K + k]! * p.W2[j * K + k]!;
    dr2[n * hidden + j] = f2.y[n * hidden + j]! > 0 ? s : 0;
  }
  const bb2 = bnBackward(dr2, f2.xhat, f2.inv, N, hidden, 1, g2, !!robust);
  const dr1 = new Float64Array(N * D);
  for (let n = 0; n < N; n++) for (let d = 0; d < D; d++) {
    let s = 0;
    for (let j = 0; j < hidden; j++) s += bb2.dx[n * hidden + j]! * p.W1[d * hidden + j]!;
    dr1[n * D + d] = f1.y[n * D + d]! > 0 ? s : 0;
  }
  const bb1 = bnBackward(dr1, f1.xhat, f1.inv, N, c, L1, g1, !!robust);
  return { logits: z, loss, grads: { g1: bb1.dg, b1: bb1.db, g2: bb2.dg, b2: bb2.db }, ...(stats1 && stats2 ? { stats: { m1: stats1.mean, v1: stats1.var, m2: stats2.mean, v2: stats2.var } } : {}) };
}

/** Adam on float64 copies, the textbook update (for the reference trajectory). */
export class RefAdam {
  private m: Float64Array[];
  private v: Float64Array[];
  private t = 0;
  constructor(sizes: number[], private readonly lr = 1e-3, private readonly b1 = 0.9, private readonly b2 = 0.999, private readonly eps = 1e-8) {
    this.m = sizes.map((n) => new Float64Array(n));
    this.v = sizes.map((n) => new Float64Array(n));
  }
  step(params: Float64Array[], grads: Float64Array[]): void {
    this.t++;
    params.forEach((p, i) => {
      for (let j = 0; j < p.length; j++) {
        const g = grads[i]![j]!;
        this.m[i]![j] = this.b1 * this.m[i]![j]! + (1 - this.b1) * g;
        this.v[i]![j] = this.b2 * this.v[i]![j]! + (1 - this.b2) * g * g;
        const mh = this.m[i]![j]! / (1 - this.b1 ** this.t);
        const vh = this.v[i]![j]! / (1 - this.b2 ** this.t);
        p[j] = p[j]! - (this.lr * mh) / (Math.sqrt(vh) + this.eps);
      }
    });
  }
}

export { bnForward };
