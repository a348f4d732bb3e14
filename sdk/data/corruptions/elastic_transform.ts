// elastic_transform: a small random affine warp (three anchor points around the centre each
// moved by up to `affine` px; OpenCV warpAffine) followed by a smooth random displacement field
// (uniform noise blurred by a Gaussian of `sigma` px, scaled to an RMS displacement of `rms` px,
// resampled bilinearly with reflecting borders). All random numbers are drawn identically at
// every severity; only the magnitudes change.
import { cv } from '../cv.ts';
import { gaussianBlur, level, perImage, remapBilinear, spatialScale, warpAffine, type Corruption } from './common.ts';

/**
 * [rms displacement px, field smoothness sigma px, affine anchor jitter px], pixels of a 32x32
 * image, severities 1-5. Our own table: CIFAR-10-C's (alpha, sigma, affine) lets the affine part
 * shrink while the elastic part grows, so distortion is not monotone in severity; here all three
 * grow together.
 */
export const ELASTIC = [[0.35, 2.5, 0.4], [0.5, 2.5, 0.6], [0.7, 2.5, 0.8], [0.9, 2.5, 1.0], [1.2, 2.5, 1.3]] as const;

/** The 2x3 affine matrix mapping three source points onto three destination points. */
export function affineFrom3(src: readonly number[], dst: readonly number[]): number[] {
  // Solve [x y 1] * [a b c]^T = x', per output coordinate (Cramer's rule on the 3x3 system).
  const [x0, y0, x1, y1, x2, y2] = src as [number, number, number, number, number, number];
  const det = x0 * (y1 - y2) - y0 * (x1 - x2) + (x1 * y2 - x2 * y1);
  const solve = (v0: number, v1: number, v2: number): [number, number, number] => [
    (v0 * (y1 - y2) - y0 * (v1 - v2) + (v1 * y2 - v2 * y1)) / det,
    (x0 * (v1 - v2) - v0 * (x1 - x2) + (x1 * v2 - x2 * v1)) / det,
    (x0 * (y1 * v2 - y2 * v1) - y0 * (x1 * v2 - x2 * v1) + v0 * (x1 * y2 - x2 * y1)) / det,
  ];
  const r0 = solve(dst[0]!, dst[2]!, dst[4]!);
  const r1 = solve(dst[1]!, dst[3]!, dst[5]!);
  return [...r0, ...r1];
}

export const elasticTransform: Corruption = {
  name: 'elastic_transform',
  random: true,
  apply(batch, severity, opts) {
    const [rms0, sigma0, affine0] = ELASTIC[level(severity, this.name)]!;
    const s = spatialScale(batch);
    const rms = rms0 * s;
    const sigma = sigma0 * s;
    const jitter = affine0 * s;
    return perImage(this.name, batch, opts, (x, rng, shape) => {
      const { height: H, width: W } = shape;
      const n = H * W;
      const cx = W / 2;
      const cy = H / 2;
      const sq = Math.min(H, W) / 3;
      const src = [cx + sq, cy + sq, cx + sq, cy - sq, cx - sq, cy - sq];
      const dst = src.map((v) => v + jitter * rng.range(-1, 1));
      const warped = warpAffine(x, shape, affineFrom3(src, dst), cv().BORDER_REFLECT_101);
      const one = { height: H, width: W, channels: 1 };
      const field = (): Float32Array => {
        const u = new Float32Array(n);
        rng.fillUniform(u, -1, 1);
        const f = gaussianBlur(u, one, sigma);
        let ss = 0;
        for (const v of f) ss += v * v;
        const k = rms / Math.sqrt(ss / n || 1);
        for (let p = 0; p < n; p++) f[p] = f[p]! * k;
        return f;
      };
      const dx = field();
      const dy = field();
      return remapBilinear(warped, shape, dx, dy);
    });
  },
};
