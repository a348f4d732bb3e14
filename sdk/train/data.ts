// The in-memory dataset the training loop consumes, and batch assembly: random crop with zero
// padding and horizontal flip (seeded) fused with normalisation into one index copy from the
// uint8 HWC images to a float32 NCHW batch. The per-pixel work is a table lookup per element
// (256 entries per channel), the same pass the crop needs anyway.
import { TtaqError } from '../errors/index.ts';
import type { Rng } from '../nn/rng.ts';

/** Images as uint8 HWC, one after another, and their integer labels. */
export interface ImageSet {
  readonly count: number;
  readonly height: number;
  readonly width: number;
  readonly channels: number;
  /** count * height * width * channels bytes, HWC per image. */
  readonly images: Uint8Array;
  /** count labels in [0, numClasses). */
  readonly labels: ArrayLike<number>;
}

export interface Augment {
  /** Zero padding on each side before a random crop back to the input size (0: no crop). */
  readonly pad: number;
  readonly flip: boolean;
}

export function checkImageSet(s: ImageSet, what: string, numClasses: number): void {
  const per = s.height * s.width * s.channels;
  if (s.images.length !== s.count * per) {
    throw new TtaqError('DATA_BAD_FORMAT', `${what}: ${s.count} images of ${s.height}x${s.width}x${s.channels} need ${s.count * per} bytes, got ${s.images.length}; check the reader`);
  }
  if (s.labels.length !== s.count) {
    throw new TtaqError('DATA_BAD_FORMAT', `${what}: ${s.count} images but ${s.labels.length} labels; the image and label files do not belong together`);
  }
  for (let i = 0; i < s.count; i++) {
    const l = s.labels[i]!;
    if (!Number.isInteger(l) || l < 0 || l >= numClasses) {
      throw new TtaqError('DATA_BAD_FORMAT', `${what}: label ${l} of sample ${i} is outside [0, ${numClasses}); pass the right number of classes or fix the labels`);
    }
  }
}

/** The first `n` samples (for --limit). */
export function limitImageSet(s: ImageSet, n: number): ImageSet {
  if (n >= s.count) return s;
  const per = s.height * s.width * s.channels;
  return { ...s, count: n, images: s.images.subarray(0, n * per), labels: Array.prototype.slice.call(s.labels, 0, n) as number[] };
}

/** Lookup tables: pixel byte -> (v / 255 - mean[c]) / std[c], per channel. */
export function normTables(channels: number, mean: readonly number[], std: readonly number[]): Float32Array[] {
  if (mean.length !== channels || std.length !== channels) {
    throw new TtaqError('CONFIG_INVALID', `normalisation needs one mean and one std per channel (${channels}); got ${mean.length} and ${std.length}`);
  }
  return Array.from({ length: channels }, (_, c) => {
    const t = new Float32Array(256);
    for (let v = 0; v < 256; v++) t[v] = (v / 255 - mean[c]!) / std[c]!;
    return t;
  });
}

/**
 * Writes samples `indices` of `s` into `out` (float32 NCHW, indices.length images), augmented
 * when `aug` is given (one crop offset pair and one flip decision per image, drawn from `rng`
 * in that order) and normalised through `tables`. Pixels from the padding take the value of a
 * zero byte, as when padding the raw image with black.
 */
export function fillBatch(
  s: ImageSet, indices: ArrayLike<number>, out: Float32Array, tables: readonly Float32Array[],
  aug?: Augment, rng?: Rng,
): void {
  const { height: H, width: W, channels: C } = s;
  const plane = H * W;
  if (out.length < indices.length * C * plane) throw new TtaqError('INTERNAL', 'fillBatch: output buffer too small');
  const pad = aug?.pad ?? 0;
  for (let n = 0; n < indices.length; n++) {
    const src = indices[n]! * plane * C;
    let dy = 0;
    let dx = 0;
    let flip = false;
    if (aug && rng) {
      if (pad > 0) {
        dy = rng.int(2 * pad + 1) - pad;
        dx = rng.int(2 * pad + 1) - pad;
      }
      if (aug.flip) flip = rng.uniform() < 0.5;
    }
    for (let c = 0; c < C; c++) {
      const lut = tables[c]!;
      const zero = lut[0]!;
      const dst = (n * C + c) * plane;
      for (let y = 0; y < H; y++) {
        const sy = y + dy;
        const row = dst + y * W;
        if (sy < 0 || sy >= H) {
          out.fill(zero, row, row + W);
          continue;
        }
        const srow = src + sy * W * C + c;
        for (let x = 0; x < W; x++) {
          const sx = (flip ? W - 1 - x : x) + dx;
          out[row + x] = sx < 0 || sx >= W ? zero : lut[s.images[srow + sx * C]!]!;
        }
      }
    }
  }
}
