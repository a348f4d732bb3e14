// Shared plumbing for the corruption files: batch iteration with one generator per image, float
// conversion, and thin wrappers over the OpenCV calls the corruptions use (blur, convolution,
// affine warps, resizing). Images inside a corruption are float32 HWC in [0, 1].
import { TtaqError } from '../../errors/index.ts';
import { cv, f32Of, matFromF32, type Mat } from '../cv.ts';
import { DataRng, hash32 } from '../rng.ts';

export type Severity = 1 | 2 | 3 | 4 | 5;

/** The image part of a Dataset: what corruptions read. */
export interface Batch {
  readonly count: number;
  readonly height: number;
  readonly width: number;
  readonly channels: number;
  readonly images: Uint8Array;
}

export interface CorruptOptions {
  /** Seed of every random choice (default 0). */
  readonly seed?: number;
  /** Index of the batch's first image in the whole dataset (default 0): image i draws from the
   *  generator of (seed, corruption, offset + i), so cutting a dataset into batches does not change
   *  the result. */
  readonly offset?: number;
  /** The dataset index of every image of the batch (overrides `offset`): streams that pick
   *  samples out of order still corrupt sample k the same way as the whole-dataset pass. */
  readonly indices?: ArrayLike<number>;
}

export interface ImageShape {
  readonly height: number;
  readonly width: number;
  readonly channels: number;
}

export interface Corruption {
  readonly name: string;
  /** True when the output depends on the seed. */
  readonly random: boolean;
  /** Corrupts every image of the batch; returns new HWC uint8 bytes of the same size. */
  apply(batch: Batch, severity: Severity, opts?: CorruptOptions): Uint8Array;
}

/**
 * Spatial parameters in the tables are in pixels of a 32x32 image (CIFAR-10-C's scale); they are
 * multiplied by this factor, so a 28x28 image gets 0.875 of them and a 224x224 one 7 times.
 */
export const spatialScale = (s: ImageShape): number => Math.min(s.height, s.width) / 32;

/** Severity as a 0-based table index, checked. */
export function level(severity: number, name: string): number {
  if (!Number.isInteger(severity) || severity < 1 || severity > 5) {
    throw new TtaqError('DATA_BAD_SPEC', `${name}: severity ${severity} is not one of 1, 2, 3, 4, 5`);
  }
  return severity - 1;
}

/**
 * Runs `fn` on every image as float32 HWC in [0, 1] with that image's generator, writing the result
 * rounded and clipped to uint8. `fn` may return its input array modified in place.
 */
export function perImage(
  name: string, batch: Batch, opts: CorruptOptions | undefined,
  fn: (x: Float32Array, rng: DataRng, shape: ImageShape, i: number) => Float32Array,
): Uint8Array {
  const shape: ImageShape = { height: batch.height, width: batch.width, channels: batch.channels };
  const per = batch.height * batch.width * batch.channels;
  if (batch.images.length !== batch.count * per) {
    throw new TtaqError('DATA_BAD_FORMAT', `${name}: batch of ${batch.count} images of ${batch.height}x${batch.width}x${batch.channels} needs ${batch.count * per} bytes, got ${batch.images.length}`);
  }
  if (batch.channels !== 1 && batch.channels !== 3) {
    throw new TtaqError('DATA_BAD_FORMAT', `${name}: ${batch.channels}-channel images; corruptions take 1 (gray) or 3 (RGB) channels`);
  }
  const seed = opts?.seed ?? 0;
  const offset = opts?.offset ?? 0;
  if (opts?.indices && opts.indices.length !== batch.count) {
    throw new TtaqError('INTERNAL', `${name}: ${opts.indices.length} indices for a batch of ${batch.count}`);
  }
  const id = hash32(name);
  const out = new Uint8Array(batch.images.length);
  const x = new Float32Array(per);
  for (let i = 0; i < batch.count; i++) {
    const src = batch.images.subarray(i * per, (i + 1) * per);
    for (let k = 0; k < per; k++) x[k] = src[k]! / 255;
    const y = fn(x, new DataRng(seed, id, opts?.indices ? opts.indices[i]! : offset + i), shape, i);
    storeU8(y, out, i * per);
  }
  return out;
}

/** Writes [0, 1] floats as rounded, clipped bytes at `at`. */
export function storeU8(y: Float32Array, out: Uint8Array, at: number): void {
  for (let k = 0; k < y.length; k++) {
    const v = y[k]! * 255 + 0.5;
    out[at + k] = v <= 0 ? 0 : v >= 255 ? 255 : v; // Uint8Array assignment truncates
  }
}

export function clip01(x: Float32Array): Float32Array {
  for (let k = 0; k < x.length; k++) {
    const v = x[k]!;
    x[k] = v < 0 ? 0 : v > 1 ? 1 : v;
  }
  return x;
}

const mat = (x: Float32Array, s: ImageShape): Mat => matFromF32(x, s.height, s.width, s.channels);

/** Gaussian blur with standard deviation `sigma` px (kernel covers +-3 sigma; reflect border). */
export function gaussianBlur(x: Float32Array, s: ImageShape, sigma: number): Float32Array {
  if (sigma <= 0.01) return x;
  const c = cv();
  const k = 2 * Math.max(1, Math.ceil(3 * sigma)) + 1;
  return f32Of(mat(x, s).gaussianBlur(new c.Size(k, k), sigma, sigma, c.BORDER_REFLECT));
}

/** Correlation with a float kernel (rows x cols, anchor at the centre). */
export function convolve(x: Float32Array, s: ImageShape, kernel: Float32Array, rows: number, cols: number, border?: number): Float32Array {
  const c = cv();
  const k = matFromF32(kernel, rows, cols, 1);
  return f32Of(mat(x, s).filter2D(c.CV_32F, k, new c.Point2(-1, -1), 0, border ?? c.BORDER_REFLECT));
}

/** Affine warp: output(p) = input(M^-1 p) with M the 2x3 forward matrix (bilinear). */
export function warpAffine(x: Float32Array, s: ImageShape, m: readonly number[], border?: number): Float32Array {
  const c = cv();
  const M = new c.Mat([[m[0]!, m[1]!, m[2]!], [m[3]!, m[4]!, m[5]!]], c.CV_64F);
  return f32Of(mat(x, s).warpAffine(M, new c.Size(s.width, s.height), c.INTER_LINEAR, border ?? c.BORDER_REFLECT));
}

/** Resizes to height x width with `interp` (an OpenCV INTER_* constant; default linear). */
export function resize(x: Float32Array, s: ImageShape, height: number, width: number, interp?: number): Float32Array {
  const c = cv();
  return f32Of(mat(x, s).resize(new c.Size(width, height), 0, 0, interp ?? c.INTER_LINEAR));
}

/** Zooms about the centre by `z` (>= 1), keeping the size: the centre 1/z of the image filling it. */
export function centreZoom(x: Float32Array, s: ImageShape, z: number): Float32Array {
  const cx = (s.width - 1) / 2;
  const cy = (s.height - 1) / 2;
  return warpAffine(x, s, [z, 0, (1 - z) * cx, 0, z, (1 - z) * cy], cv().BORDER_REPLICATE);
}

/** Luminance (Rec. 601) of an HWC image, one value per pixel. */
export function luminance(x: Float32Array, s: ImageShape): Float32Array {
  if (s.channels === 1) return x;
  const n = s.height * s.width;
  const g = new Float32Array(n);
  for (let p = 0; p < n; p++) g[p] = 0.299 * x[3 * p]! + 0.587 * x[3 * p + 1]! + 0.114 * x[3 * p + 2]!;
  return g;
}

/** Reflect-101 index into [0, n). */
export const reflect = (i: number, n: number): number => {
  if (n === 1) return 0;
  const period = 2 * n - 2;
  let j = ((i % period) + period) % period;
  if (j >= n) j = period - j;
  return j;
};

/**
 * Bilinear resampling: out(y, x) = in(y + dy(y, x), x + dx(y, x)) with reflecting borders (the
 * remap OpenCV's binding does not expose).
 */
export function remapBilinear(x: Float32Array, s: ImageShape, dx: Float32Array, dy: Float32Array): Float32Array {
  const { height: H, width: W, channels: C } = s;
  const out = new Float32Array(x.length);
  for (let y = 0; y < H; y++) {
    for (let xx = 0; xx < W; xx++) {
      const p = y * W + xx;
      const sy = y + dy[p]!;
      const sx = xx + dx[p]!;
      const y0 = Math.floor(sy);
      const x0 = Math.floor(sx);
      const fy = sy - y0;
      const fx = sx - x0;
      const ya = reflect(y0, H) * W;
      const yb = reflect(y0 + 1, H) * W;
      const xa = reflect(x0, W);
      const xb = reflect(x0 + 1, W);
      for (let c = 0; c < C; c++) {
        const v00 = x[(ya + xa) * C + c]!;
        const v01 = x[(ya + xb) * C + c]!;
        const v10 = x[(yb + xa) * C + c]!;
        const v11 = x[(yb + xb) * C + c]!;
        out[p * C + c] = (v00 * (1 - fx) + v01 * fx) * (1 - fy) + (v10 * (1 - fx) + v11 * fx) * fy;
      }
    }
  }
  return out;
}

/** Blends a one-channel layer into every channel: x + w * layer (tinted per channel when given). */
export function addLayer(x: Float32Array, s: ImageShape, layer: Float32Array, w: number, tint?: readonly number[]): Float32Array {
  const C = s.channels;
  const n = s.height * s.width;
  for (let p = 0; p < n; p++) {
    const v = w * layer[p]!;
    for (let c = 0; c < C; c++) x[p * C + c] = x[p * C + c]! + v * (tint && C === 3 ? tint[c]! : 1);
  }
  return x;
}
